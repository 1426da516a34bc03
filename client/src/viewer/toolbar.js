/**
 * The viewer's controls: mode buttons, layout, mouse tool, window presets, view actions and the
 * series picker with thumbnails. It only draws and reports clicks; the viewer acts on them.
 */

import { t } from '../i18n/index.js';
import { h } from '../ui.js';

/** @typedef {import('./state.js').Layout} Layout */
/** @typedef {import('./series.js').SeriesInfo} SeriesInfo */
/** @typedef {import('../i18n/index.js').MessageKey} MessageKey */
/** @typedef {'present' | 'follow' | 'free'} Mode */
/** @typedef {'WindowLevel' | 'Pan' | 'Zoom' | 'Length' | 'Angle' | 'EllipticalROI' | 'ArrowAnnotate' | 'Pointer'} MouseTool */
/** @typedef {'rotate' | 'flipHorizontal' | 'flipVertical' | 'invert' | 'reset'} ViewAction */

/**
 * Window presets (centre, width in HU).
 * @type {Record<string, {center: number, width: number}>}
 */
export const PRESETS = {
  lung: { center: -600, width: 1500 },
  mediastinum: { center: 50, width: 350 },
  bone: { center: 500, width: 2000 },
  brain: { center: 40, width: 80 },
  abdomen: { center: 40, width: 400 },
};

/** @type {Array<[MouseTool, MessageKey]>} */
const TOOLS = [
  ['WindowLevel', 'viewer.tool.window_level'],
  ['Pan', 'viewer.tool.pan'],
  ['Zoom', 'viewer.tool.zoom'],
  ['Length', 'viewer.tool.length'],
  ['Angle', 'viewer.tool.angle'],
  ['EllipticalROI', 'viewer.tool.ellipse'],
  ['ArrowAnnotate', 'viewer.tool.arrow'],
  ['Pointer', 'viewer.tool.pointer'],
];

/** @type {Array<[ViewAction, MessageKey]>} */
const ACTIONS = [
  ['rotate', 'viewer.rotate'],
  ['flipHorizontal', 'viewer.flip_horizontal'],
  ['flipVertical', 'viewer.flip_vertical'],
  ['invert', 'viewer.invert'],
  ['reset', 'viewer.reset'],
];

/** @type {Array<[Layout, string]>} */
const LAYOUT_LABELS = [['1x1', '1×1'], ['1x2', '1×2'], ['2x2', '2×2']];

/**
 * What the toolbar reports.
 * @typedef {object} ToolbarActions
 * @property {(layout: Layout) => void} layout
 * @property {(tool: MouseTool) => void} tool
 * @property {(preset: string) => void} preset a key of PRESETS, or "default" for the image's own window
 * @property {(action: ViewAction) => void} action
 * @property {(mode: Mode) => void} mode the user asked for "follow" or "free"
 * @property {(alias: string) => void} series show this series in the active cell
 */

export class Toolbar {
  /** @param {ToolbarActions} actions */
  constructor(actions) {
    this._actions = actions;
    this.lookAround = h('button', {
      type: 'button', class: 'viewer-mode-button', 'data-testid': 'viewer-look-around', hidden: true,
      onclick: () => actions.mode('free'),
    }, t('viewer.look_around'));
    this.follow = h('button', {
      type: 'button', class: 'viewer-mode-button', 'data-testid': 'viewer-follow', hidden: true,
      onclick: () => actions.mode('follow'),
    }, t('viewer.follow'));
    this.modeText = h('span', { class: 'viewer-mode-text', 'data-testid': 'viewer-mode-text' });
    /** @type {Map<Layout, HTMLButtonElement>} */
    this.layouts = new Map(LAYOUT_LABELS.map(([layout, text]) => [layout, h('button', {
      type: 'button', 'data-layout': layout, 'data-testid': `viewer-layout-${layout}`,
      title: t('viewer.layout_named', { layout: text }), 'aria-pressed': 'false',
      onclick: () => actions.layout(layout),
    }, text)]));
    /** @type {Map<MouseTool, HTMLButtonElement>} */
    this.tools = new Map(TOOLS.map(([tool, key]) => [tool, h('button', {
      type: 'button', 'data-tool': tool, 'data-testid': `viewer-tool-${tool}`, 'aria-pressed': 'false',
      onclick: () => actions.tool(tool),
    }, t(key))]));
    this.preset = h('select', {
      'data-testid': 'viewer-preset', 'aria-label': t('viewer.preset'),
      onchange: () => { actions.preset(this.preset.value); this.preset.value = ''; },
    },
    h('option', { value: '' }, t('viewer.preset')),
    h('option', { value: 'default' }, t('viewer.preset.default')),
    Object.keys(PRESETS).map((name) => h('option', { value: name },
      t(/** @type {MessageKey} */ (`viewer.preset.${name}`)))));
    const actionButtons = ACTIONS.map(([action, key]) => h('button', {
      type: 'button', 'data-action': action, 'data-testid': `viewer-action-${action}`,
      onclick: () => actions.action(action),
    }, t(key)));
    this.seriesList = h('div', { class: 'viewer-series', role: 'list', 'aria-label': t('viewer.series'), 'data-testid': 'viewer-series' });
    /** @type {HTMLElement[]} controls that change the view, disabled while following */
    this._controls = [...this.layouts.values(), ...this.tools.values(), this.preset, ...actionButtons];
    this._following = false;
    this.el = h('div', { class: 'viewer-toolbar', role: 'toolbar', 'aria-label': t('viewer.toolbar') },
      h('div', { class: 'viewer-group viewer-modes' }, this.modeText, this.lookAround, this.follow),
      h('div', { class: 'viewer-group', role: 'group', 'aria-label': t('viewer.layout') }, ...this.layouts.values()),
      h('div', { class: 'viewer-group', role: 'group', 'aria-label': t('viewer.tools') }, ...this.tools.values()),
      h('div', { class: 'viewer-group' }, this.preset, ...actionButtons));
  }

  /**
   * @param {Mode} mode
   * @param {boolean} canFollow there is a presenter to go back to
   */
  setMode(mode, canFollow) {
    this.lookAround.hidden = mode !== 'follow';
    this.follow.hidden = mode !== 'free' || !canFollow;
    this.modeText.textContent = mode === 'follow' ? t('viewer.following')
      : mode === 'present' ? t('viewer.presenting')
        : canFollow ? t('viewer.looking_around') : '';
    this._following = mode === 'follow';
    for (const control of this._controls) /** @type {HTMLButtonElement} */ (control).disabled = this._following;
    this._disableSeries();
    this.tools.get('Pointer')?.toggleAttribute('hidden', mode !== 'present');
  }

  /** @param {Layout} layout */
  setLayout(layout) {
    for (const [value, button] of this.layouts) button.setAttribute('aria-pressed', String(value === layout));
  }

  /** @param {MouseTool} tool */
  setTool(tool) {
    for (const [value, button] of this.tools) button.setAttribute('aria-pressed', String(value === tool));
  }

  /**
   * The series picker: one button per series, with a thumbnail canvas the caller draws into.
   * @param {SeriesInfo[]} series
   * @returns {Map<string, HTMLCanvasElement>} thumbnail canvas by alias
   */
  setSeries(series) {
    /** @type {Map<string, HTMLCanvasElement>} */
    const canvases = new Map();
    this.seriesList.replaceChildren(...series.map((info) => {
      const canvas = h('canvas', { class: 'viewer-thumbnail', width: '96', height: '96', 'aria-hidden': 'true' });
      canvases.set(info.alias, canvas);
      return h('button', {
        type: 'button', role: 'listitem', class: 'viewer-series-item', draggable: 'true',
        'data-alias': info.alias, 'data-testid': 'viewer-series-item',
        title: t('viewer.series_hint'),
        onclick: () => this._actions.series(info.alias),
        ondragstart: (/** @type {DragEvent} */ event) => event.dataTransfer?.setData('application/x-eboard-series', info.alias),
      },
      canvas,
      h('span', { class: 'viewer-series-text' },
        h('strong', null, info.description || info.modality),
        h('span', null, [info.modality, t('viewer.images', { count: info.instances })].filter(Boolean).join(' · ')),
        info.withheld && h('span', { class: 'viewer-withheld', 'data-testid': 'viewer-series-withheld' }, t('viewer.withheld'))));
    }));
    this._disableSeries();
    return canvases;
  }

  /**
   * Mark the series shown in the active cell.
   * @param {string | null} alias
   */
  setActiveSeries(alias) {
    for (const item of this.seriesList.querySelectorAll('[data-alias]')) {
      item.setAttribute('aria-current', String(item.getAttribute('data-alias') === alias));
    }
  }

  _disableSeries() {
    for (const item of this.seriesList.querySelectorAll('button')) item.disabled = this._following;
  }
}
