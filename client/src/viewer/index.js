/**
 * The diagnostic viewer: up to four Cornerstone3D stack viewports over a case's series, driven by
 * the user (present, free) or by the presenter's view state (follow).
 */

import { Enums as csEnums, eventTarget, RenderingEngine, utilities as csUtilities } from '@cornerstonejs/core';
import * as csTools from '@cornerstonejs/tools';
import { t } from '../i18n/index.js';
import { h } from '../ui.js';
import { Annotations } from './annotations.js';
import { Cell } from './cell.js';
import { TextPrompt } from './prompt.js';
import { Series } from './series.js';
import { startCornerstone } from './setup.js';
import { applyPatch, cellCount, diffState, emptyState, emptyViewport, normalizeRotation, normalizeState } from './state.js';
import { PRESETS, Toolbar } from './toolbar.js';
import './viewer.css';

/** @typedef {import('./series.js').SeriesInfo} SeriesInfo */
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
 */

const { MouseBindings } = csTools.Enums;
const SCROLL_KEYS = /** @type {Record<string, number>} */ ({ ArrowUp: -1, ArrowDown: 1, PageUp: -10, PageDown: 10 });
const ANNOTATION_EVENTS = [
  csTools.Enums.Events.ANNOTATION_ADDED,
  csTools.Enums.Events.ANNOTATION_MODIFIED,
  csTools.Enums.Events.ANNOTATION_COMPLETED,
  csTools.Enums.Events.ANNOTATION_REMOVED,
];

export class Viewer {
  /**
   * Build the viewer (toolbar and layout) inside `element` and show the first series.
   * @param {HTMLElement} element
   * @param {ViewerOptions} options
   */
  static async create(element, { caseId, series, mode = 'free' }) {
    await startCornerstone();
    const viewer = new Viewer(element, caseId, mode);
    await viewer.setSeries(series);
    return viewer;
  }

  /**
   * @param {HTMLElement} element
   * @param {number} caseId
   * @param {Mode} mode
   */
  constructor(element, caseId, mode) {
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
    /** @type {SeriesInfo[]} */
    this._infos = [];
    /** @type {Map<string, Promise<Series | null>>} */
    this._series = new Map();
    /** @type {Map<string, Series>} */
    this._loaded = new Map();
    /** @type {Map<string, {series: Series, index: number}>} image URI → place */
    this._images = new Map();
    /** @type {Annotation[]} annotations on series this user does not have, kept for the state */
    this._foreign = [];
    /** @type {ViewState | null} the last state received from the presenter */
    this._received = null;
    /** @type {ViewState | null} the state to show next (coalesces patches that arrive faster) */
    this._wanted = null;
    /** @type {Promise<void> | null} */
    this._showing = null;
    /** @type {ViewState | null} */
    this._emitted = null;
    /** @type {Set<(patch: ViewPatch) => void>} */
    this._changeListeners = new Set();
    /** @type {Set<(cell: number, point: WorldPoint | null) => void>} */
    this._pointerListeners = new Set();
    this._changeFrame = 0;
    this._pointerFrame = 0;
    /** @type {[number, WorldPoint | null] | null} */
    this._pointerNext = null;
    this._destroyed = false;

    this.engine = new RenderingEngine(id);
    this.cells = [0, 1, 2, 3].map((n) => new Cell(n, `${id}-${n}`));
    this.annotations = new Annotations({
      byAlias: (alias) => this._loaded.get(alias) ?? null,
      byImageId: (imageId) => this._images.get(imageId.replace(/^[a-z]+:/i, '')) ?? null,
    });
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

    this.toolGroup = this._createToolGroup(id);
    this._listen();
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
      annotations: [...this.annotations.read(), ...this._foreign].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
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
   * Listen to this user's changes of the view (present mode only), at most one patch per frame.
   * @param {(patch: ViewPatch) => void} callback
   * @returns {() => void} unsubscribe
   */
  onChange(callback) {
    this._changeListeners.add(callback);
    return () => this._changeListeners.delete(callback);
  }

  /**
   * Listen to the presenter's laser pointer (present mode, pointer tool), at most once per frame.
   * @param {(cell: number, point: WorldPoint | null) => void} callback
   * @returns {() => void} unsubscribe
   */
  onPointer(callback) {
    this._pointerListeners.add(callback);
    return () => this._pointerListeners.delete(callback);
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
   * Replace the whole view state (a late joiner's snapshot).
   * @param {Partial<ViewState>} state
   */
  async load(state) {
    this._received = normalizeState(state);
    if (this._mode !== 'free') await this._show(this._received);
    if (this._mode === 'present') this._emitted = this.state;
  }

  /**
   * 'present': the user drives and patches are emitted; 'follow': the view follows apply/load and
   * input is off; 'free': the user looks around alone.
   * @param {Mode} mode
   */
  setMode(mode) {
    const before = this._mode;
    this._mode = mode;
    this.root.dataset.mode = mode;
    this.toolbar.setMode(mode, this._received !== null);
    if (mode !== 'present') {
      this.showPointer(0, null);
      if (this._tool === 'Pointer') this._setTool('WindowLevel');
    }
    if (mode === 'present') this._emitted = this.state;
    if (mode === 'follow' && before === 'free' && this._received) void this._show(this._received);
  }

  /**
   * Draw the presenter's laser dot in `cell` (null hides it).
   * @param {number} cell
   * @param {WorldPoint | null} point
   */
  showPointer(cell, point) {
    for (const c of this.cells) c.setPointer(c.number === cell ? point : null);
  }

  /**
   * The case's series changed (or are known for the first time).
   * @param {SeriesInfo[]} series
   */
  async setSeries(series) {
    this._infos = series;
    const known = new Set(series.map((s) => s.alias));
    for (const alias of [...this._series.keys()]) {
      const info = series.find((s) => s.alias === alias);
      const loaded = this._loaded.get(alias);
      if (!known.has(alias) || (loaded && loaded.info.series_instance_uid !== info?.series_instance_uid)) {
        this._series.delete(alias);
        this._loaded.delete(alias);
      }
    }
    const canvases = this.toolbar.setSeries(series);
    for (const [alias, canvas] of canvases) void this._thumbnail(alias, canvas);
    const state = this._received && this._mode !== 'free' ? this._received : this.state;
    if (this._mode !== 'follow' && !state.viewports.some((v) => v.series && known.has(v.series)) && series.length > 0) {
      state.viewports[0] = emptyViewport(series[0].alias, Math.floor(series[0].instances / 2));
    }
    await this._show(state);
    if (this._mode === 'present') this._changed();
  }

  /** Stop rendering and listening, and free the viewports. */
  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    this._unlisten();
    cancelAnimationFrame(this._changeFrame);
    cancelAnimationFrame(this._pointerFrame);
    this.annotations.clear();
    csTools.ToolGroupManager.destroyToolGroup(this.toolGroup.id);
    this.engine.destroy();
    this.root.replaceChildren();
    this.root.classList.remove('viewer');
    delete this.root.dataset.ready;
  }

  // ——— showing a state ———

  /**
   * Show `state`; when called again before it finishes, the newest state is shown next and
   * intermediate ones are skipped.
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
    const visible = this.cells.slice(0, cellCount(this._layout));
    await Promise.all(this.cells.map(async (cell, i) => {
      const target = state.viewports[i] ?? emptyViewport();
      if (!visible.includes(cell)) {
        cell.target = target;
        return;
      }
      const { series, missing } = await this._seriesForCell(target.series);
      series?.prefetch();
      await cell.show(target, series, missing);
    }));
    await Promise.all(state.annotations.map((a) => this._seriesFor(a.series)));
    this.annotations.apply(state.annotations);
    this._foreign = state.annotations.filter((a) => !this._loaded.has(a.series));
    for (const cell of visible) {
      if (cell.series) {
        cell.target = cell.read();
        cell.ready = false;
      }
    }
    this.engine.render();
    await Promise.all(visible.map((cell) => cell.rendered()));
    this.toolbar.setActiveSeries(this.cells[this._active].target.series);
  }

  /**
   * The series for a cell, or why there is none.
   * @param {string | null} alias
   * @returns {Promise<{series: Series | null, missing: string}>}
   */
  async _seriesForCell(alias) {
    if (!alias) return { series: null, missing: t('viewer.empty_cell') };
    if (!this._infos.some((s) => s.alias === alias)) return { series: null, missing: t('viewer.not_shared') };
    const series = await this._seriesFor(alias);
    return { series, missing: series ? '' : t('viewer.load_failed') };
  }

  /**
   * This user's copy of a series, loaded once (null: not in this user's list, or failed).
   * @param {string} alias
   * @returns {Promise<Series | null>}
   */
  _seriesFor(alias) {
    const info = this._infos.find((s) => s.alias === alias);
    if (!info) return Promise.resolve(null);
    let found = this._series.get(alias);
    if (!found) {
      found = Series.load(info).then((series) => {
        this._loaded.set(alias, series);
        for (const [index, imageId] of series.imageIds.entries()) {
          this._images.set(imageId.replace(/^[a-z]+:/i, ''), { series, index });
        }
        return series;
      }, (error) => {
        console.warn('Viewer: series %s could not be loaded: %s', alias, error);
        this._series.delete(alias); // the next show tries again
        return null;
      });
      this._series.set(alias, found);
    }
    return found;
  }

  /**
   * A small render of a series' middle image.
   * @param {string} alias
   * @param {HTMLCanvasElement} canvas
   */
  async _thumbnail(alias, canvas) {
    const series = await this._seriesFor(alias);
    if (!series || this._destroyed) return;
    try {
      await csUtilities.loadImageToCanvas({
        canvas, imageId: series.imageIds[Math.floor(series.length / 2)], useCPURendering: true,
      });
    } catch (error) {
      console.warn('Viewer: no thumbnail for series %s: %s', alias, error);
    }
  }

  _updateReady() {
    const visible = this.cells.slice(0, cellCount(this._layout));
    const ready = !this._showing && visible.every((cell) => cell.ready);
    this.root.dataset.ready = ready ? '1' : '0';
  }

  // ——— layout, tools and user actions ———

  /** @param {Layout} layout */
  _setLayout(layout) {
    if (layout === this._layout) return;
    this._setLayoutNow(layout);
    // Newly shown empty cells get series not on screen yet, so a 2×2 is useful at once.
    const shown = new Set(this.cells.map((c) => c.target.series).filter(Boolean));
    const unshown = this._infos.filter((s) => !shown.has(s.alias));
    const state = this.state;
    for (const cell of this.cells.slice(0, cellCount(layout))) {
      if (!state.viewports[cell.number].series && unshown.length > 0) {
        const info = /** @type {SeriesInfo} */ (unshown.shift());
        state.viewports[cell.number] = emptyViewport(info.alias, Math.floor(info.instances / 2));
      }
    }
    void this._show(state);
  }

  /**
   * Enable the cells the layout shows and free the others.
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
      if (visible) {
        cell.enable(this.engine);
        this.toolGroup.addViewport(cell.viewportId, this.engine.id);
      } else if (cell.viewport) {
        cell.target = cell.read();
        this.toolGroup.removeViewports(this.engine.id, cell.viewportId);
        cell.disable(this.engine);
      }
    }
    if (this._active >= count) this._setActive(0);
    this._resize();
  }

  /** The cells changed size: keep each one's presentation (it is canvas-size independent). */
  _resize() {
    const presentations = this.cells.map((cell) => (cell.series ? cell.read().presentation : null));
    this.engine.resize(true, true);
    for (const cell of this.cells) {
      const presentation = presentations[cell.number];
      if (presentation && cell.viewport) cell.setPresentation(presentation);
    }
    this.engine.render();
  }

  /** @param {number} cell */
  _setActive(cell) {
    this._active = Math.min(cellCount(this._layout) - 1, Math.max(0, cell));
    for (const c of this.cells) c.el.classList.toggle('active', c.number === this._active);
    this.toolbar.setActiveSeries(this.cells[this._active].target.series);
  }

  /**
   * @param {number} number
   * @param {string} alias
   */
  _assign(number, alias) {
    const info = this._infos.find((s) => s.alias === alias);
    if (!info) return;
    const state = this.state;
    state.viewports[number] = emptyViewport(alias, Math.floor(info.instances / 2));
    state.active = number;
    void this._show(state);
  }

  /** @param {MouseTool} tool */
  _setTool(tool) {
    const group = this.toolGroup;
    const previous = group.getActivePrimaryMouseButtonTool();
    if (previous) group.setToolPassive(previous);
    if (tool !== 'Pointer') group.setToolActive(tool, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    this._tool = tool;
    this.root.dataset.tool = tool;
    this.toolbar.setTool(tool);
  }

  /** @param {string} name */
  _preset(name) {
    const cell = this.cells[this._active];
    const preset = PRESETS[name];
    if (!cell.series) return;
    cell.setVoi(preset ?? null, Boolean(cell.viewport?.getProperties().invert));
    cell.viewport?.render();
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
    this._changed();
  }

  /** @param {Mode} mode */
  _userMode(mode) {
    this.setMode(mode);
    this.root.dispatchEvent(new CustomEvent('viewer-mode', { detail: mode, bubbles: true }));
  }

  /** @param {string} id */
  _createToolGroup(id) {
    const group = /** @type {import('@cornerstonejs/tools').Types.IToolGroup} */ (csTools.ToolGroupManager.createToolGroup(id));
    for (const name of ['WindowLevel', 'Pan', 'Zoom', 'StackScroll', 'Length', 'Angle', 'EllipticalROI']) group.addTool(name);
    group.addTool('ArrowAnnotate', {
      getTextCallback: (/** @type {(text: string | null) => void} */ done) => this.prompt.ask('', done),
      changeTextCallback: (/** @type {any} */ annotation, /** @type {unknown} */ _event, /** @type {(text: string | null) => void} */ done) =>
        this.prompt.ask(annotation?.data?.label ?? '', done),
    });
    group.setToolActive('StackScroll', { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    group.setToolActive('Pan', { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
    group.setToolActive('Zoom', { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    for (const name of ['Length', 'Angle', 'EllipticalROI', 'ArrowAnnotate']) group.setToolPassive(name);
    return group;
  }

  // ——— events ———

  _listen() {
    this._onRendered = () => {
      this._updateReady();
      this._changed();
    };
    this._onAnnotation = () => this._changed();
    this._onKey = (/** @type {KeyboardEvent} */ event) => this._key(event);
    this._onPointerDown = (/** @type {PointerEvent} */ event) => {
      this.grid.focus({ preventScroll: true }); // so the keyboard scrolls the cell just clicked
      const cell = this._cellOf(event);
      if (cell !== null && cell !== this._active) this._user(() => this._setActive(cell));
    };
    this._onPointerMove = (/** @type {PointerEvent} */ event) => this._pointerMove(event);
    this._onPointerLeave = (/** @type {PointerEvent} */ event) => {
      const cell = this._cellOf(event);
      if (cell !== null && this._tool === 'Pointer') this._queuePointer(cell, null);
    };
    this._onDrop = (/** @type {DragEvent} */ event) => {
      const alias = event.dataTransfer?.getData('application/x-eboard-series');
      const cell = this._cellOf(event);
      if (!alias || cell === null) return;
      event.preventDefault();
      this._user(() => this._assign(cell, alias));
    };
    this._onDragOver = (/** @type {DragEvent} */ event) => {
      if (this._mode !== 'follow' && event.dataTransfer?.types.includes('application/x-eboard-series')) event.preventDefault();
    };
    this._onContextMenu = (/** @type {Event} */ event) => event.preventDefault();
    this._resizeObserver = new ResizeObserver(() => {
      if (!this._destroyed) this._resize();
    });
    this._resizeObserver.observe(this.grid);
    for (const cell of this.cells) cell.element.addEventListener(csEnums.Events.IMAGE_RENDERED, this._onRendered);
    for (const name of ANNOTATION_EVENTS) eventTarget.addEventListener(name, this._onAnnotation);
    this.grid.addEventListener('keydown', this._onKey);
    this.grid.addEventListener('pointerdown', this._onPointerDown, true);
    this.grid.addEventListener('pointermove', this._onPointerMove);
    this.grid.addEventListener('pointerout', this._onPointerLeave);
    this.grid.addEventListener('drop', this._onDrop);
    this.grid.addEventListener('dragover', this._onDragOver);
    this.grid.addEventListener('contextmenu', this._onContextMenu);
  }

  _unlisten() {
    this._resizeObserver?.disconnect();
    for (const cell of this.cells) cell.element.removeEventListener(csEnums.Events.IMAGE_RENDERED, /** @type {EventListener} */ (this._onRendered));
    for (const name of ANNOTATION_EVENTS) eventTarget.removeEventListener(name, /** @type {EventListener} */ (this._onAnnotation));
  }

  /**
   * @param {Event} event
   * @returns {number | null}
   */
  _cellOf(event) {
    const el = event.target instanceof Element ? event.target.closest('.viewer-cell') : null;
    return el instanceof HTMLElement && el.dataset.cell !== undefined ? Number(el.dataset.cell) : null;
  }

  /** @param {KeyboardEvent} event */
  _key(event) {
    if (this._mode === 'follow') return;
    const cell = this.cells[this._active];
    const series = cell.series;
    if (!series || !cell.viewport) return;
    const current = cell.viewport.getCurrentImageIdIndex();
    let delta = SCROLL_KEYS[event.key];
    if (event.key === 'Home') delta = -current;
    if (event.key === 'End') delta = series.length - 1 - current;
    if (delta === undefined) return;
    event.preventDefault();
    void cell.scroll(delta);
  }

  /** @param {PointerEvent} event */
  _pointerMove(event) {
    if (this._mode !== 'present' || this._tool !== 'Pointer') return;
    const number = this._cellOf(event);
    if (number === null) return;
    const point = this.cells[number].worldAt(event.clientX, event.clientY);
    this.showPointer(number, point);
    this._queuePointer(number, point);
  }

  /**
   * @param {number} cell
   * @param {WorldPoint | null} point
   */
  _queuePointer(cell, point) {
    if (this._mode !== 'present') return;
    this._pointerNext = [cell, point];
    if (this._pointerFrame) return;
    this._pointerFrame = requestAnimationFrame(() => {
      this._pointerFrame = 0;
      const next = this._pointerNext;
      this._pointerNext = null;
      if (next) for (const listener of this._pointerListeners) listener(next[0], next[1]);
    });
  }

  /** Something may have changed: in present mode, emit what did, once per frame. */
  _changed() {
    if (this._mode !== 'present' || this._changeFrame || this._destroyed) return;
    this._changeFrame = requestAnimationFrame(() => {
      this._changeFrame = 0;
      if (this._mode !== 'present') return;
      const state = this.state;
      const patch = diffState(this._emitted ?? emptyState(), state);
      this._emitted = state;
      if (patch) for (const listener of this._changeListeners) listener(patch);
    });
  }
}
