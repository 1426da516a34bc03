/**
 * The view state (schemas/view-state.json) and its patches, as plain data: no DOM, no Cornerstone.
 */

/** @typedef {'1x1' | '1x2' | '2x2'} Layout */
/** @typedef {'Length' | 'Angle' | 'EllipticalROI' | 'ArrowAnnotate'} AnnotationTool */
/** @typedef {[number, number, number]} WorldPoint */

/**
 * Window centre and width; null in a viewport means the image's own default.
 * @typedef {{center: number, width: number}} Voi
 */

/**
 * Zoom, pan, rotation and flips, independent of the canvas size. `zoom` 1 fits the image to the
 * cell; `pan` moves the image centre by these fractions of the image's displayed size (canvas
 * axes, x right, y down); `rotation` in degrees clockwise, 0 ≤ rotation < 360.
 * @typedef {object} Presentation
 * @property {number} zoom
 * @property {[number, number]} pan
 * @property {number} rotation
 * @property {boolean} flipHorizontal
 * @property {boolean} flipVertical
 */

/**
 * One cell of the layout; `series` null is an empty cell.
 * @typedef {object} Viewport
 * @property {string | null} series alias
 * @property {number} index image index in the series' canonical order
 * @property {Voi | null} voi
 * @property {boolean} invert
 * @property {Presentation} presentation
 */

/**
 * A measurement or arrow, in world coordinates (mm, patient space) of the series' frame of
 * reference, on image `index` of series `series`.
 * @typedef {object} Annotation
 * @property {string} id
 * @property {AnnotationTool} tool
 * @property {string} series alias
 * @property {number} index
 * @property {number[][]} points each [x, y, z]
 * @property {string} [text]
 */

/**
 * @typedef {object} ViewState
 * @property {Layout} layout
 * @property {number} active the cell that keyboard and toolbar act on
 * @property {Viewport[]} viewports always one per cell of the largest layout (4); the layout decides which show
 * @property {Annotation[]} annotations
 */

/**
 * A change to the view state: top-level keys replace; `viewports` replaces whole cells, keyed by
 * cell number ("0".."3").
 * @typedef {object} ViewPatch
 * @property {Layout} [layout]
 * @property {number} [active]
 * @property {Record<string, Viewport>} [viewports]
 * @property {Annotation[]} [annotations]
 */

export const LAYOUTS = /** @type {const} */ (['1x1', '1x2', '2x2']);
export const CELLS = 4;

/** @param {Layout} layout how many cells the layout shows */
export function cellCount(layout) {
  return layout === '2x2' ? 4 : layout === '1x2' ? 2 : 1;
}

/** @returns {Presentation} */
export function defaultPresentation() {
  return { zoom: 1, pan: [0, 0], rotation: 0, flipHorizontal: false, flipVertical: false };
}

/**
 * @param {string | null} series
 * @param {number} [index]
 * @returns {Viewport}
 */
export function emptyViewport(series = null, index = 0) {
  return { series, index, voi: null, invert: false, presentation: defaultPresentation() };
}

/** @returns {ViewState} */
export function emptyState() {
  return {
    layout: '1x1',
    active: 0,
    viewports: Array.from({ length: CELLS }, () => emptyViewport()),
    annotations: [],
  };
}

/**
 * A state from the wire made whole: missing cells filled in, unknown layouts refused.
 * @param {Partial<ViewState>} state
 * @returns {ViewState}
 */
export function normalizeState(state) {
  const base = emptyState();
  const layout = state.layout && LAYOUTS.includes(state.layout) ? state.layout : base.layout;
  const viewports = base.viewports.map((empty, i) => state.viewports?.[i] ?? empty);
  const active = Math.min(cellCount(layout) - 1, Math.max(0, state.active ?? 0));
  return { layout, active, viewports, annotations: state.annotations ?? [] };
}

/**
 * `state` with `patch` applied (a new object; `state` is not changed).
 * @param {ViewState} state
 * @param {ViewPatch} patch
 * @returns {ViewState}
 */
export function applyPatch(state, patch) {
  const viewports = [...state.viewports];
  for (const [cell, viewport] of Object.entries(patch.viewports ?? {})) {
    const i = Number(cell);
    if (Number.isInteger(i) && i >= 0 && i < CELLS) viewports[i] = viewport;
  }
  return normalizeState({
    layout: patch.layout ?? state.layout,
    active: patch.active ?? state.active,
    viewports,
    annotations: patch.annotations ?? state.annotations,
  });
}

/**
 * What changed from `before` to `after`, or null when nothing did.
 * @param {ViewState} before
 * @param {ViewState} after
 * @returns {ViewPatch | null}
 */
export function diffState(before, after) {
  /** @type {ViewPatch} */
  const patch = {};
  if (before.layout !== after.layout) patch.layout = after.layout;
  if (before.active !== after.active) patch.active = after.active;
  for (const [i, viewport] of after.viewports.entries()) {
    if (!sameJson(before.viewports[i], viewport)) (patch.viewports ??= {})[String(i)] = viewport;
  }
  if (!sameJson(before.annotations, after.annotations)) patch.annotations = after.annotations;
  return Object.keys(patch).length > 0 ? patch : null;
}

/**
 * @param {unknown} a
 * @param {unknown} b
 */
function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * A float without the noise of camera arithmetic (1.0000000000002 → 1), so an unchanged view
 * gives an unchanged state.
 * @param {number} value
 */
export function tidy(value) {
  if (Math.abs(value) < 1e-9) return 0;
  return Number(value.toPrecision(10));
}

/**
 * An angle in degrees, in [0, 360).
 * @param {number} degrees
 */
export function normalizeRotation(degrees) {
  const r = tidy(((degrees % 360) + 360) % 360);
  return r >= 360 ? 0 : r;
}
