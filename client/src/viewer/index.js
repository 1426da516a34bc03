/**
 * The diagnostic viewer: up to four Cornerstone3D stack viewports over a case's series, driven by
 * the user ('present', 'free') or by the presenter's view state ('follow').
 */

import { Enums as csEnums, eventTarget, RenderingEngine, utilities as csUtilities } from '@cornerstonejs/core';
import * as csTools from '@cornerstonejs/tools';
import { t } from '../i18n/index.js';
import { h } from '../ui.js';
import { Annotations } from './annotations.js';
import { Cell } from './cell.js';
import { Feed } from './feed.js';
import { GridInput } from './input.js';
import { SeriesLibrary } from './library.js';
import { MouseTools } from './mouse.js';
import { TextPrompt } from './prompt.js';
import { startCornerstone, webglReleaser } from './setup.js';
import { applyPatch, cellCount, emptyViewport, normalizeRotation, normalizeState } from './state.js';
import { PRESETS, Toolbar } from './toolbar.js';
import './viewer.css';

/** @typedef {import('./series.js').SeriesInfo} SeriesInfo */
/** @typedef {import('./series.js').Series} Series */
/** @typedef {import('./state.js').ViewState} ViewState */
/** @typedef {import('./state.js').ViewPatch} ViewPatch */
/** @typedef {import('./state.js').Viewport} Viewport */
/** @typedef {import('./state.js').Annotation} Annotation */
/** @typedef {import('./state.js').Layout} Layout */
/** @typedef {import('./state.js').WorldPoint} WorldPoint */
/** @typedef {import('./toolbar.js').Mode} Mode */
/** @typedef {import('./toolbar.js').MouseTool} MouseTool */
/** @typedef {import('./toolbar.js').ViewAction} ViewAction */

/**
 * @typedef {object} ViewerOptions
 * @property {number} caseId
 * @property {SeriesInfo[]} series this user's copies of the case's series
 * @property {Mode} [mode]
 * @property {{focus: (alias: string, index: number) => void, promote: (imageId: string) => Promise<void>, want: (imageId: string) => Promise<void>} | null} [prefetch]
 *   the room's paced prefetch (`prefetch.js`): told what is shown, it fetches from there, gives
 *   up its paced request for an image shown now, and fetches thumbnails first; without it,
 *   every image of a series shown is fetched at once
 * @property {(info: SeriesInfo) => Promise<import('./series.js').Series>} [loadSeries] how a
 *   series' metadata is loaded: the room shares the copy its prefetch loaded, so showing a series
 *   never fetches its metadata a second time (over a thin link, half a second before the
 *   presented image is even asked for); default: from DICOMweb
 */

const ANNOTATION_EVENTS = [
  csTools.Enums.Events.ANNOTATION_ADDED,
  csTools.Enums.Events.ANNOTATION_MODIFIED,
  csTools.Enums.Events.ANNOTATION_COMPLETED,
  csTools.Enums.Events.ANNOTATION_REMOVED,
];

/**
 * @param {Annotation} a
 * @param {Annotation} b
 */
const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export class Viewer {
  /**
   * Build the viewer (toolbar and layout) inside `element` and show the first series.
   * @param {HTMLElement} element
   * @param {ViewerOptions} options
   */
  static async create(element, { caseId, series, mode = 'free', prefetch = null, loadSeries }) {
    await startCornerstone();
    const viewer = new Viewer(element, caseId, mode, loadSeries);
    viewer._prefetch = prefetch;
    await viewer.setSeries(series);
    return viewer;
  }

  /**
   * @param {HTMLElement} element
   * @param {number} caseId
   * @param {Mode} mode
   * @param {ViewerOptions['loadSeries']} [loadSeries]
   */
  constructor(element, caseId, mode, loadSeries) {
    const id = `viewer-${csUtilities.uuidv4()}`;
    this.root = element;
    this.caseId = caseId;
    /** @type {Mode} */
    this._mode = mode;
    /** @type {Layout} */
    this._layout = '1x1';
    this._active = 0;
    /** @type {MouseTool} */
    this._tool = 'WindowLevel';
    /** @type {Annotation[]} annotations on series this user does not have, kept for the state */
    this._foreign = [];
    /** @type {ViewState | null} the last state received from the presenter */
    this._received = null;
    /** @type {ViewState | null} the state to show next (patches that come faster are coalesced) */
    this._wanted = null;
    /** @type {Promise<void> | null} */
    this._showing = null;
    this._destroyed = false;
    /** @type {ViewerOptions['prefetch']} */
    this._prefetch = null;

    this.library = new SeriesLibrary(loadSeries);
    this.engine = new RenderingEngine(id);
    this.cells = [0, 1, 2, 3].map((n) => new Cell(n, `${id}-${n}`));
    this.annotations = new Annotations({
      byAlias: (alias) => this.library.loaded(alias),
      byImageId: (imageId) => this.library.place(imageId),
    });
    this.feed = new Feed(() => this.state);
    this.prompt = new TextPrompt();
    this.toolbar = new Toolbar({
      layout: (layout) => this._user(() => this._setLayout(layout)),
      tool: (tool) => this._setTool(tool),
      preset: (name) => this._user(() => this._preset(name)),
      action: (action) => this._user(() => this._action(action)),
      mode: (next) => this._userMode(next),
      series: (alias) => this._user(() => this._assign(this._active, alias)),
    });
    this.grid = h('div', { class: 'viewer-grid', tabindex: '0', 'data-layout': '1x1', 'aria-label': t('viewer.images_label') },
      this.cells.map((cell) => cell.el));
    element.classList.add('viewer');
    element.dataset.ready = '0';
    element.replaceChildren(this.toolbar.el, h('div', { class: 'viewer-body' }, this.toolbar.seriesList, this.grid), this.prompt.el);

    this.mouse = new MouseTools(id, this.prompt);
    this.input = new GridInput(this.grid, this.cells.map((c) => c.el), {
      enabled: () => this._mode !== 'follow',
      activate: (cell) => this._user(() => this._setActive(cell)),
      scroll: (step) => this._scroll(step),
      point: (cell, x, y) => this._point(cell, x, y),
      leave: (cell) => {
        if (this._pointing()) this.feed.pointer(cell, null);
      },
      drop: (cell, alias) => this._user(() => this._assign(cell, alias)),
      resize: () => this._resize(),
    });
    this._onRendered = () => {
      this._updateReady();
      this.feed.changed();
    };
    this._onAnnotation = () => this.feed.changed();
    for (const cell of this.cells) cell.element.addEventListener(csEnums.Events.IMAGE_RENDERED, this._onRendered);
    for (const name of ANNOTATION_EVENTS) eventTarget.addEventListener(name, this._onAnnotation);
    this._setLayoutNow('1x1');
    this._setTool('WindowLevel');
    this.setMode(mode);
  }

  /** The full current view state (valid against schemas/view-state.json). */
  get state() {
    return /** @type {ViewState} */ ({
      layout: this._layout,
      active: this._active,
      viewports: this.cells.map((cell) => structuredClone(cell.read())),
      annotations: [...this.annotations.read(), ...structuredClone(this._foreign)].sort(byId),
    });
  }

  get mode() {
    return this._mode;
  }

  /** The element the viewer was built in; 'viewer-mode' events (detail: the mode) fire on it. */
  get element() {
    return this.root;
  }

  /**
   * This user's changes of the view while presenting, at most one patch per animation frame,
   * holding only the keys and cells that changed.
   * @param {(patch: ViewPatch) => void} callback
   * @returns {() => void} unsubscribe
   */
  onChange(callback) {
    return this.feed.onPatch(callback);
  }

  /**
   * The laser pointer while presenting (pointer tool), at most once per animation frame; the
   * point is null when it leaves the cell.
   * @param {(cell: number, point: WorldPoint | null) => void} callback
   * @returns {() => void} unsubscribe
   */
  onPointer(callback) {
    return this.feed.onPointer(callback);
  }

  /**
   * Apply the presenter's patch; resolves once it is on screen. While looking around ('free')
   * the patch is only remembered, for when the user follows again.
   * @param {ViewPatch} patch
   */
  async apply(patch) {
    this._received = applyPatch(this._received ?? this.state, patch);
    if (this._mode !== 'free') await this._show(this._received);
  }

  /**
   * Replace the whole view state (a late joiner's snapshot); resolves once it is on screen.
   * @param {Partial<ViewState>} state
   */
  async load(state) {
    this._received = normalizeState(structuredClone(state));
    if (this._mode !== 'free') await this._show(this._received);
    this.feed.settle();
  }

  /**
   * 'present': the user drives and patches go out; 'follow': the view follows apply/load and
   * takes no input but the "Look around" button; 'free': the user looks around alone.
   * @param {Mode} mode
   */
  setMode(mode) {
    const before = this._mode;
    this._mode = mode;
    this.root.dataset.mode = mode;
    this.toolbar.setMode(mode, this._received !== null);
    if (mode !== 'present' && this._tool === 'Pointer') this._setTool('WindowLevel');
    if (mode !== 'follow') this.showPointer(0, null);
    this.feed.set(mode === 'present');
    if (mode === 'follow' && before === 'free' && this._received) void this._show(this._received);
  }

  /**
   * Draw the presenter's laser dot in `cell` (null hides it).
   * @param {number} cell
   * @param {WorldPoint | number[] | null} point
   */
  showPointer(cell, point) {
    for (const c of this.cells) c.setPointer(c.number === cell && point ? /** @type {WorldPoint} */ (point) : null);
  }

  /**
   * The case's series changed (or are known for the first time).
   * @param {SeriesInfo[]} series this user's copies
   */
  async setSeries(series) {
    this.library.setInfos(series);
    for (const [alias, canvas] of this.toolbar.setSeries(series)) void this._thumbnail(alias, canvas);
    const state = structuredClone(this._mode === 'follow' && this._received ? this._received : this.state);
    const shown = state.viewports.some((v) => v.series && this.library.info(v.series));
    if (this._mode !== 'follow' && !shown && series.length > 0) {
      state.viewports[0] = emptyViewport(series[0].alias, Math.floor(series[0].instances / 2));
    }
    await this._show(state);
    this.feed.changed();
  }

  /** Stop rendering and listening, and free the viewports. */
  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    this.feed.close();
    this.input.close();
    for (const cell of this.cells) cell.element.removeEventListener(csEnums.Events.IMAGE_RENDERED, this._onRendered);
    for (const name of ANNOTATION_EVENTS) eventTarget.removeEventListener(name, this._onAnnotation);
    this.annotations.clear();
    this.mouse.destroy();
    const release = webglReleaser(this.engine);
    this.engine.destroy();
    release();
    this.root.replaceChildren();
    this.root.classList.remove('viewer');
    delete this.root.dataset.ready;
  }

  // ——— showing a state ———

  /**
   * Show `state`; when called again before it is on screen, the newest state is shown next and
   * those in between are skipped.
   * @param {ViewState} state
   */
  _show(state) {
    this._wanted = state;
    this._showing ??= this._drain();
    return this._showing;
  }

  async _drain() {
    try {
      while (this._wanted && !this._destroyed) {
        const state = this._wanted;
        this._wanted = null;
        await this._showNow(state);
      }
    } finally {
      this._showing = null;
      this._updateReady();
    }
  }

  /**
   * Per cell: series and image → VOI and invert → presentation; then annotations; then render.
   * @param {ViewState} state
   */
  async _showNow(state) {
    this.root.dataset.ready = '0';
    if (state.layout !== this._layout) this._setLayoutNow(state.layout);
    this._setActive(state.active);
    const visible = this._visibleCells();
    await Promise.all(this.cells.map(async (cell, i) => {
      const target = state.viewports[i] ?? emptyViewport();
      if (!visible.includes(cell)) {
        cell.target = target;
        return;
      }
      const { series, missing } = await this._seriesForCell(target.series);
      if (this._destroyed) return;
      if (series && this._prefetch) {
        this._prefetch.focus(series.alias, target.index);
        // Prefetch may be fetching this very image at its slow pace: the viewer's own request
        // replaces it.
        const imageId = series.imageIds[series.clampIndex(target.index)];
        if (imageId) await this._prefetch.promote(imageId);
      } else series?.prefetch();
      try {
        await cell.show(target, series, missing);
      } catch (error) {
        console.warn('Viewer: cell %d cannot show series %s: %s', i, target.series, error);
        cell.showPlaceholder(t('viewer.load_failed'));
      }
    }));
    await Promise.all(state.annotations.map((a) => this.library.load(a.series)));
    if (this._destroyed) return; // closed while images were loading
    this.annotations.apply(state.annotations);
    this._foreign = state.annotations.filter((a) => !this.library.loaded(a.series));
    for (const cell of visible) cell.expectRender();
    this.engine.render();
    await Promise.all(visible.map((cell) => cell.rendered()));
    this.toolbar.setActiveSeries(this.cells[this._active].target.series);
  }

  /**
   * The series for a cell, or what to say instead.
   * @param {string | null} alias
   * @returns {Promise<{series: Series | null, missing: string}>}
   */
  async _seriesForCell(alias) {
    if (!alias) return { series: null, missing: t(this._mode === 'follow' ? 'viewer.waiting' : 'viewer.empty_cell') };
    if (!this.library.info(alias)) return { series: null, missing: t('viewer.not_shared') };
    const series = await this.library.load(alias);
    return { series, missing: series ? '' : t('viewer.load_failed') };
  }

  /**
   * A small render of a series' middle image.
   * @param {string} alias
   * @param {HTMLCanvasElement} canvas
   */
  async _thumbnail(alias, canvas) {
    const series = await this.library.load(alias);
    if (!series || this._destroyed) return;
    const imageId = series.imageIds[Math.floor(series.length / 2)];
    // In the room, the thumbnail's image comes through prefetch, paced, first in its queue.
    if (this._prefetch) await this._prefetch.want(imageId);
    if (this._destroyed) return;
    try {
      await csUtilities.loadImageToCanvas({ canvas, imageId, useCPURendering: true });
    } catch (error) {
      console.warn('Viewer: no thumbnail for series %s: %s', alias, error);
    }
  }

  _visibleCells() {
    return this.cells.slice(0, cellCount(this._layout));
  }

  _updateReady() {
    const ready = !this._showing && this._visibleCells().every((cell) => cell.ready);
    this.root.dataset.ready = ready ? '1' : '0';
  }

  // ——— layout, tools and the user's actions ———

  /** @param {Layout} layout */
  _setLayout(layout) {
    if (layout === this._layout) return;
    const state = this.state;
    state.layout = layout;
    // Newly shown empty cells get series not on screen yet, so a 2×2 is useful at once.
    const shown = new Set(state.viewports.map((v) => v.series));
    const unshown = this.library.infos.filter((s) => !shown.has(s.alias));
    for (const i of Array.from({ length: cellCount(layout) }, (_, n) => n)) {
      const info = !state.viewports[i].series ? unshown.shift() : undefined;
      if (info) state.viewports[i] = emptyViewport(info.alias, Math.floor(info.instances / 2));
    }
    void this._show(state);
  }

  /**
   * Give the cells the layout shows a viewport, and free the others'.
   * @param {Layout} layout
   */
  _setLayoutNow(layout) {
    const count = cellCount(layout);
    this._layout = layout;
    this.grid.dataset.layout = layout;
    this.toolbar.setLayout(layout);
    for (const cell of this.cells) {
      const visible = cell.number < count;
      cell.el.hidden = !visible;
      if (visible && !cell.viewport) {
        cell.enable(this.engine);
        this.mouse.add(cell.viewportId, this.engine.id);
      } else if (!visible && cell.viewport) {
        cell.target = cell.read();
        this.mouse.remove(cell.viewportId, this.engine.id);
        cell.disable(this.engine);
      }
    }
    if (this._active >= count) this._setActive(0);
    this._resize();
  }

  /** The cells changed size: each keeps its presentation (which is canvas-size independent). */
  _resize() {
    if (this._destroyed) return;
    this.engine.resize(true, true);
    // The engine resizes WebGL viewports only; a CPU-drawn one sizes its canvas when asked.
    for (const cell of this._visibleCells()) cell.viewport?.resize();
    for (const cell of this._visibleCells()) cell.keepPresentation();
    this.engine.render();
  }

  /** @param {number} cell */
  _setActive(cell) {
    this._active = Math.min(cellCount(this._layout) - 1, Math.max(0, cell));
    for (const c of this.cells) c.el.classList.toggle('active', c.number === this._active);
    this.toolbar.setActiveSeries(this.cells[this._active].target.series);
  }

  /**
   * Show series `alias` in cell `number`, at its middle image.
   * @param {number} number
   * @param {string} alias
   */
  _assign(number, alias) {
    const info = this.library.info(alias);
    if (!info) return;
    const state = this.state;
    state.viewports[number] = emptyViewport(alias, Math.floor(info.instances / 2));
    state.active = number;
    void this._show(state);
  }

  /** @param {number | 'first' | 'last'} step */
  _scroll(step) {
    const cell = this.cells[this._active];
    const index = cell.viewport?.getCurrentImageIdIndex() ?? 0;
    const length = cell.series?.length ?? 0;
    void cell.scroll(step === 'first' ? -index : step === 'last' ? length - 1 - index : step);
  }

  /** @param {MouseTool} tool */
  _setTool(tool) {
    this.mouse.setPrimary(tool);
    this._tool = tool;
    this.root.dataset.tool = tool;
    this.toolbar.setTool(tool);
  }

  _pointing() {
    return this._mode === 'present' && this._tool === 'Pointer';
  }

  /**
   * @param {number} number
   * @param {number} clientX
   * @param {number} clientY
   */
  _point(number, clientX, clientY) {
    if (!this._pointing()) return;
    const point = this.cells[number].worldAt(clientX, clientY);
    this.showPointer(number, point);
    this.feed.pointer(number, point);
  }

  /** @param {string} name a key of PRESETS, or "default" */
  _preset(name) {
    const cell = this.cells[this._active];
    if (!cell.series || !cell.viewport) return;
    cell.setVoi(PRESETS[name] ?? null, Boolean(cell.viewport.getProperties().invert));
    cell.viewport.render();
  }

  /** @param {ViewAction} action */
  _action(action) {
    const cell = this.cells[this._active];
    const viewport = cell.viewport;
    if (!viewport || !cell.series) return;
    const presentation = cell.read().presentation;
    if (action === 'reset') {
      cell.reset();
      return;
    }
    if (action === 'invert') {
      viewport.setProperties({ invert: !viewport.getProperties().invert });
    } else if (action === 'rotate') {
      viewport.setViewPresentation({ rotation: normalizeRotation(presentation.rotation + 90) });
    } else if (action === 'flipHorizontal') {
      viewport.setViewPresentation({ flipHorizontal: !presentation.flipHorizontal });
    } else if (action === 'flipVertical') {
      viewport.setViewPresentation({ flipVertical: !presentation.flipVertical });
    }
    viewport.render();
  }

  /**
   * Run a user's action unless the view is following the presenter.
   * @param {() => void} action
   */
  _user(action) {
    if (this._mode === 'follow') return;
    action();
    this.feed.changed();
  }

  /** @param {Mode} mode */
  _userMode(mode) {
    this.setMode(mode);
    this.root.dispatchEvent(new CustomEvent('viewer-mode', { detail: mode, bubbles: true }));
  }
}
