/**
 * The room's few icons, drawn as inline SVG so they look the same without an emoji font (many
 * hospital workstations and headless browsers have none).
 */

const SVG = 'http://www.w3.org/2000/svg';

/** Stroke paths on a 24×24 grid. */
const PATHS = {
  mic: ['M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z', 'M5 11a7 7 0 0 0 14 0', 'M12 18v3'],
  'mic-off': ['M9 9V6a3 3 0 0 1 5.8-1.1', 'M15 10v2a3 3 0 0 1-4.6 2.5', 'M5 11a7 7 0 0 0 11.5 5.4', 'M19 11a7 7 0 0 1-.6 2.8', 'M12 18v3', 'M3 3l18 18'],
  camera: ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3z'],
  'camera-off': ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3z', 'M2 2l20 20'],
  screen: ['M3 4h18v12H3z', 'M8 20h8', 'M12 16v4'],
  hand: ['M8 12V5.5a1.5 1.5 0 0 1 3 0V11', 'M11 10.5V4a1.5 1.5 0 0 1 3 0v6.5', 'M14 10.5V5.5a1.5 1.5 0 0 1 3 0V14', 'M8 12.5V10a1.5 1.5 0 0 0-3 0v4a7 7 0 0 0 7 7h.5a4.5 4.5 0 0 0 4.5-4.5V14'],
};

/** @typedef {keyof typeof PATHS} IconName */

/**
 * An icon; with `text` it is announced as that text, without it hidden from assistive technology
 * (the control next to it says what it means).
 * @param {IconName} name
 * @param {string} [text]
 */
export function icon(name, text) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', `icon icon-${name}`);
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  if (text) {
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', text);
    const title = document.createElementNS(SVG, 'title');
    title.textContent = text;
    svg.append(title);
  } else {
    svg.setAttribute('aria-hidden', 'true');
  }
  for (const d of PATHS[name]) {
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}
