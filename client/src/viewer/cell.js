/**
 * One cell of the viewer's layout: a Cornerstone3D stack viewport showing one series, with its
 * overlays (which image, window, placeholder) and the presenter's laser dot.
 */

import { Enums as csEnums, metaData, utilities as csUtilities } from '@cornerstonejs/core';
import { h } from '../ui.js';
import { defaultPresentation, emptyViewport, normalizeRotation, tidy } from './state.js';

/** @typedef {import('@cornerstonejs/core').Types.IStackViewport} StackViewport */
/** @typedef {import('@cornerstonejs/core').RenderingEngine} RenderingEngine */
/** @typedef {import('./series.js').Series} Series */
/** @typedef {import('./state.js').Viewport} Viewport */
/** @typedef {import('./state.js').Voi} Voi */
/** @typedef {import('./state.js').Presentation} Presentation */
/** @typedef {import('./state.js').WorldPoint} WorldPoint */

const RENDER_TIMEOUT_MS = 5000;

/**
 * Where an image lies along its slice normal, in mm (what SliceLocation usually says), or null.
 * @param {string | undefined} imageId
 * @returns {number | null}
 */
function sliceLocation(imageId) {
  const plane = imageId ? metaData.get('imagePlaneModule', imageId) : null;
  const p = plane?.imagePositionPatient;
  const r = plane?.rowCosines;
  const c = plane?.columnCosines;
  if (!p || !r || !c) return null;
  const normal = [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]];
  return tidy(p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2]);
}

export class Cell {
  /**
   * @param {number} number 0..3
   * @param {string} viewportId unique on the page
   */
  constructor(number, viewportId) {
    this.number = number;
    this.viewportId = viewportId;
    /** @type {HTMLDivElement} the element Cornerstone3D renders into */
    this.element = h('div', { class: 'viewer-cell-image' });
    this.info = h('div', { class: 'viewer-cell-info', 'aria-live': 'off' });
    this.placeholder = h('div', { class: 'viewer-cell-placeholder', hidden: true });
    this.dot = h('div', { class: 'viewer-pointer', hidden: true });
    this.el = h('div', { class: 'viewer-cell', 'data-cell': String(number), 'data-testid': 'viewer-cell' },
      this.element, this.info, this.dot, this.placeholder);
    /** @type {StackViewport | null} */
    this.viewport = null;
    /** @type {Series | null} the series on screen */
    this.series = null;
    /** What this cell should show; the viewport's own values win once it shows it. */
    this.target = emptyViewport();
    /** True while an apply is under way, when `target` is the truth. */
    this.busy = false;
    /** Whether the current target has been rendered (or needs no rendering). */
    this.ready = true;
    /** @type {WorldPoint | null} */
    this.pointer = null;
    /** @type {Presentation | null} the presentation at the last render, kept across resizes */
    this._presentation = null;
    /** @type {Presentation | null} the presentation last set (not read back) */
    this._setTo = null;
    /** @type {Array<() => void>} */
    this._waiters = [];
    this._onRendered = () => this._rendered();
    /** Whether a window was set (CPU path, where Cornerstone does not record it). */
    this._windowSet = false;
    this._settingWindow = false;
    this._onVoi = (/** @type {any} */ event) => {
      // The window/level tool moved the window (not our own setVoi, not an image's default).
      if (!this._settingWindow && !this._isOwnRange(event.detail?.range)) this._windowSet = true;
    };
  }

  /**
   * Give the cell a viewport of `engine` (when its layout shows it).
   * @param {RenderingEngine} engine
   */
  enable(engine) {
    if (this.viewport) return;
    engine.enableElement({
      viewportId: this.viewportId,
      type: csEnums.ViewportType.STACK,
      element: this.element,
      defaultOptions: { background: [0, 0, 0] },
    });
    this.viewport = /** @type {StackViewport} */ (engine.getViewport(this.viewportId));
    this.element.addEventListener(csEnums.Events.IMAGE_RENDERED, this._onRendered);
    this.element.addEventListener(csEnums.Events.VOI_MODIFIED, this._onVoi);
    this.series = null;
  }

  /**
   * Take the viewport away (the layout hides the cell, or the viewer closes).
   * @param {RenderingEngine} engine
   */
  disable(engine) {
    if (!this.viewport) return;
    this.element.removeEventListener(csEnums.Events.IMAGE_RENDERED, this._onRendered);
    this.element.removeEventListener(csEnums.Events.VOI_MODIFIED, this._onVoi);
    engine.disableElement(this.viewportId);
    this.viewport = null;
    this.series = null;
    this._presentation = null;
    this.ready = true;
    this._wake();
  }

  /**
   * Show `target` with `series` (null: the alias is unknown here, or the cell is empty).
   * Order: series and image, then VOI and invert, then presentation. The caller renders.
   * @param {Viewport} target
   * @param {Series | null} series
   * @param {string} missingText what to say instead of an image when `series` is null
   */
  async show(target, series, missingText) {
    this.target = target;
    if (!this.viewport) return;
    if (!target.series || !series) {
      this.showPlaceholder(missingText);
      return;
    }
    this.busy = true;
    this.ready = false;
    try {
      this.hidePlaceholder();
      const index = series.clampIndex(target.index);
      if (this.series !== series) {
        this.series = series;
        fitCanvas(this.viewport);
        await this.viewport.setStack(series.imageIds, index);
      } else if (this.viewport.getCurrentImageIdIndex() !== index) {
        await this.viewport.setImageIdIndex(index);
      }
      this.setVoi(target.voi, target.invert);
      this.setPresentation(target.presentation);
      this._presentation = target.presentation;
    } finally {
      this.busy = false;
    }
  }

  /**
   * An empty or unavailable cell: a sentence instead of an image.
   * @param {string} text
   */
  showPlaceholder(text) {
    this.series = null;
    this.placeholder.textContent = text;
    this.placeholder.hidden = false;
    this.element.hidden = true;
    this.info.textContent = '';
    this.ready = true;
    this._wake();
  }

  hidePlaceholder() {
    this.placeholder.hidden = true;
    this.element.hidden = false;
  }

  /** What the cell shows now, as view state. */
  read() {
    const viewport = this.viewport;
    if (this.busy || !viewport || !this.series || this.series.alias !== this.target.series) return this.target;
    const properties = viewport.getProperties();
    /** @type {Voi | null} */
    let voi = null;
    if (!this._ownWindow() && properties.voiRange) {
      const { windowCenter, windowWidth } = csUtilities.windowLevel.toWindowLevel(
        properties.voiRange.lower, properties.voiRange.upper);
      voi = { center: tidy(windowCenter), width: tidy(windowWidth) };
    }
    return {
      series: this.series.alias,
      index: viewport.getCurrentImageIdIndex(),
      voi,
      invert: Boolean(properties.invert),
      presentation: this.readPresentation(),
    };
  }

  /**
   * @param {Voi | null} voi null: the image's own window
   * @param {boolean} invert
   */
  setVoi(voi, invert) {
    const viewport = this.viewport;
    if (!viewport) return;
    this._settingWindow = true;
    try {
      if (voi) {
        viewport.setProperties({ voiRange: csUtilities.windowLevel.toLowHighRange(voi.width, voi.center), invert });
      } else {
        if (!this._ownWindow()) viewport.resetProperties();
        viewport.setProperties({ invert });
      }
    } finally {
      this._settingWindow = false;
    }
    this._windowSet = Boolean(voi);
  }

  /**
   * Whether the viewport shows the image's own window (the view state's `voi: null`). The WebGL
   * path records whether a window was set; the CPU path (used where WebGL is only emulated) does
   * not, so the cell keeps track itself.
   */
  _ownWindow() {
    const viewport = /** @type {any} */ (this.viewport);
    if (!viewport) return true;
    return viewport.useCPURendering ? !this._windowSet : Boolean(viewport.getProperties().isComputedVOI);
  }

  /**
   * Whether `range` is the current image's own window.
   * @param {{lower: number, upper: number} | undefined} range
   */
  _isOwnRange(range) {
    const image = /** @type {any} */ (this.viewport)?.getCornerstoneImage?.();
    if (!image || !range) return true;
    const first = (/** @type {number | number[]} */ value) => (Array.isArray(value) ? value[0] : value);
    const own = csUtilities.windowLevel.toLowHighRange(first(image.windowWidth), first(image.windowCenter));
    return Math.abs(own.lower - range.lower) < 1e-6 && Math.abs(own.upper - range.upper) < 1e-6;
  }

  /** @returns {Presentation} */
  readPresentation() {
    const viewport = this.viewport;
    if (!viewport) return defaultPresentation();
    const p = viewport.getViewPresentation();
    const pan = this._pan() ?? [0, 0];
    // The view state's bounds (schemas/view-state.json); no one looks at an image from further.
    const clamp = (/** @type {number} */ v, /** @type {number} */ low, /** @type {number} */ high) =>
      Math.min(high, Math.max(low, v));
    /** @type {Presentation} */
    const read = {
      zoom: tidy(clamp(p.zoom ?? 1, 0.001, 100)),
      pan: [tidy(clamp(pan[0], -100, 100)), tidy(clamp(pan[1], -100, 100))],
      rotation: normalizeRotation(p.rotation ?? 0),
      flipHorizontal: Boolean(p.flipHorizontal),
      flipVertical: Boolean(p.flipVertical),
    };
    // What was set comes back through floating point: within a micro-fraction it is what was set
    // (a follower's state then equals the presenter's exactly; no hand moves an image that little).
    return this._setTo && samePresentation(read, this._setTo) ? this._setTo : read;
  }

  /**
   * Zoom, rotation and flips through Cornerstone3D's view presentation; pan set exactly on the
   * camera, because setViewPresentation ignores pan changes under one canvas pixel.
   * @param {Presentation} presentation
   */
  setPresentation(presentation) {
    const viewport = this.viewport;
    if (!viewport) return;
    this._setTo = structuredClone(presentation);
    viewport.setViewPresentation({
      zoom: presentation.zoom,
      rotation: normalizeRotation(presentation.rotation),
      flipHorizontal: presentation.flipHorizontal,
      flipVertical: presentation.flipVertical,
    });
    const frame = this._frame();
    const current = this._pan();
    if (!frame || !current) return;
    // Canvas pixels the image centre must move by.
    const dx = (presentation.pan[0] - current[0]) * frame.extent / frame.mmPerPixel;
    const dy = (presentation.pan[1] - current[1]) * frame.extent / frame.mmPerPixel;
    if (Math.abs(dx) < 1e-9 && Math.abs(dy) < 1e-9) return;
    const origin = viewport.canvasToWorld([0, 0]);
    const moved = viewport.canvasToWorld([dx, dy]);
    const delta = [moved[0] - origin[0], moved[1] - origin[1], moved[2] - origin[2]];
    const camera = viewport.getCamera();
    const focal = /** @type {WorldPoint} */ (camera.focalPoint ?? [0, 0, 0]);
    const position = /** @type {WorldPoint} */ (camera.position ?? [0, 0, 0]);
    viewport.setCamera({
      focalPoint: [focal[0] - delta[0], focal[1] - delta[1], focal[2] - delta[2]],
      position: [position[0] - delta[0], position[1] - delta[1], position[2] - delta[2]],
    });
  }

  /**
   * Pan as the view state has it: where the image centre is on the canvas relative to the
   * canvas centre (canvas axes, x right, y down), in millimetres at the current zoom, as a
   * fraction of the image's larger side. The same numbers put the same anatomy in the same place
   * on any canvas size, and read the same whether Cornerstone draws with WebGL or on the CPU
   * (whose own pan units differ).
   * @returns {[number, number] | null}
   */
  _pan() {
    const viewport = this.viewport;
    const frame = this._frame();
    if (!viewport || !frame) return null;
    const [x, y] = viewport.worldToCanvas(frame.centre);
    const { clientWidth, clientHeight } = viewport.canvas;
    return [
      ((x - clientWidth / 2) * frame.mmPerPixel) / frame.extent,
      ((y - clientHeight / 2) * frame.mmPerPixel) / frame.extent,
    ];
  }

  /**
   * The current image's centre in world coordinates, its larger side in mm, and how many mm one
   * canvas pixel spans now.
   * @returns {{centre: WorldPoint, extent: number, mmPerPixel: number} | null}
   */
  _frame() {
    const viewport = this.viewport;
    const imageId = viewport?.getCurrentImageId();
    const plane = imageId ? metaData.get('imagePlaneModule', imageId) : null;
    if (!viewport || !plane?.imagePositionPatient || !plane.rowCosines || !plane.columnCosines) return null;
    const rows = plane.rows ?? 1;
    const columns = plane.columns ?? 1;
    const rowSpacing = plane.rowPixelSpacing ?? 1;
    const columnSpacing = plane.columnPixelSpacing ?? 1;
    const along = (columns - 1) / 2 * columnSpacing;
    const down = (rows - 1) / 2 * rowSpacing;
    const centre = /** @type {WorldPoint} */ ([0, 1, 2].map((i) =>
      plane.imagePositionPatient[i] + plane.rowCosines[i] * along + plane.columnCosines[i] * down));
    const extent = Math.max(rows * rowSpacing, columns * columnSpacing);
    const a = viewport.canvasToWorld([0, 0]);
    const b = viewport.canvasToWorld([1, 0]);
    const mmPerPixel = Math.hypot(b[0] - a[0], b[1] - a[1], b[2] - a[2]);
    return extent > 0 && mmPerPixel > 0 ? { centre, extent, mmPerPixel } : null;
  }

  /** Zoom, pan, rotation and flips back to the fitted view; VOI and invert to the image's own. */
  reset() {
    const viewport = this.viewport;
    if (!viewport || !this.series) return;
    viewport.resetCamera();
    viewport.resetProperties();
    viewport.render();
  }

  /** Scroll by `delta` images, clamped to the series. @param {number} delta */
  async scroll(delta) {
    const viewport = this.viewport;
    if (!viewport || !this.series) return;
    const index = this.series.clampIndex(viewport.getCurrentImageIdIndex() + delta);
    if (index !== viewport.getCurrentImageIdIndex()) await viewport.setImageIdIndex(index);
  }

  /** Draw the overlays from the viewport's current values. */
  updateInfo() {
    const viewport = this.viewport;
    if (!viewport || !this.series) return;
    const state = this.read();
    const parts = [`${this.series.info.description || this.series.info.modality}`,
      `${state.index + 1} / ${this.series.length}`];
    const location = sliceLocation(viewport.getCurrentImageId());
    if (location !== null) parts.push(`${location.toFixed(1)} mm`);
    const range = viewport.getProperties().voiRange;
    if (range) {
      const { windowCenter, windowWidth } = csUtilities.windowLevel.toWindowLevel(range.lower, range.upper);
      parts.push(`W ${Math.round(windowWidth)} L ${Math.round(windowCenter)}`);
    }
    this.info.textContent = parts.join('  ·  ');
    this.el.dataset.index = String(state.index);
    this.placePointer();
  }

  /**
   * The presenter's laser dot, at a world point (null hides it).
   * @param {WorldPoint | null} point
   */
  setPointer(point) {
    this.pointer = point;
    this.placePointer();
  }

  placePointer() {
    const viewport = this.viewport;
    if (!this.pointer || !viewport || !this.series) {
      this.dot.hidden = true;
      return;
    }
    const [x, y] = viewport.worldToCanvas(this.pointer);
    this.dot.style.transform = `translate(${x}px, ${y}px)`;
    this.dot.hidden = false;
  }

  /**
   * The world point under a client-space mouse position, or null outside the image area.
   * @param {number} clientX
   * @param {number} clientY
   * @returns {WorldPoint | null}
   */
  worldAt(clientX, clientY) {
    const viewport = this.viewport;
    if (!viewport || !this.series) return null;
    const box = this.element.getBoundingClientRect();
    const point = viewport.canvasToWorld([clientX - box.left, clientY - box.top]);
    return [tidy(point[0]), tidy(point[1]), tidy(point[2])];
  }

  /** A render is coming: the cell is ready again once it has drawn what it shows now. */
  expectRender() {
    if (!this.viewport || !this.series) return;
    this.target = this.read();
    this.ready = false;
  }

  /** After a resize: the presentation the cell had before, on the new canvas size. */
  keepPresentation() {
    if (this.viewport && this.series && this._presentation && !this.busy) this.setPresentation(this._presentation);
  }

  /** Resolves once the cell has rendered what it was last asked to show. */
  rendered() {
    if (this.ready || !this.viewport) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, RENDER_TIMEOUT_MS);
      this._waiters.push(() => { clearTimeout(timer); resolve(undefined); });
    });
  }

  _rendered() {
    if (this.busy) return;
    const viewport = this.viewport;
    if (viewport && this.series && viewport.getCurrentImageIdIndex() === this.series.clampIndex(this.target.index)) {
      this.ready = true;
    }
    if (viewport && this.series) this._presentation = this.readPresentation();
    this.updateInfo();
    if (this.ready) this._wake();
  }

  _wake() {
    const waiters = this._waiters;
    this._waiters = [];
    for (const wake of waiters) wake();
  }
}

/**
 * @param {Presentation} a
 * @param {Presentation} b
 */
function samePresentation(a, b) {
  const near = (/** @type {number} */ x, /** @type {number} */ y) => Math.abs(x - y) <= 1e-6 * Math.max(1, Math.abs(y));
  return near(a.zoom, b.zoom) && near(a.pan[0], b.pan[0]) && near(a.pan[1], b.pan[1])
    && near(a.rotation, b.rotation) && a.flipHorizontal === b.flipHorizontal && a.flipVertical === b.flipVertical;
}

/**
 * Give a CPU-drawn viewport's canvas the size it is shown at before an image goes in (Cornerstone
 * sizes it only when the cell is enabled, which may be while the cell is still hidden).
 * @param {any} viewport
 */
function fitCanvas(viewport) {
  const canvas = viewport?.canvas;
  if (!viewport?.useCPURendering || !canvas) return;
  if (canvas.width !== canvas.clientWidth || canvas.height !== canvas.clientHeight) {
    canvas.width = canvas.clientWidth;
    canvas.height = canvas.clientHeight;
  }
}
