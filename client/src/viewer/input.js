/**
 * The user's input on the viewer's image grid that Cornerstone's tools do not handle: choosing
 * the active cell, keyboard scrolling, the laser pointer, dropping a series on a cell, and size
 * changes. It reports what happened; the viewer decides what it means.
 */

/** @typedef {import('./state.js').WorldPoint} WorldPoint */

export const SERIES_TYPE = 'application/x-eboard-series';

/** Keys that scroll, and by how many images ("first"/"last" jump to an end). */
const KEYS = /** @type {Record<string, number | 'first' | 'last'>} */ ({
  ArrowUp: -1, ArrowDown: 1, PageUp: -10, PageDown: 10, Home: 'first', End: 'last',
});

/**
 * @typedef {object} InputHandlers
 * @property {() => boolean} enabled false while following the presenter
 * @property {(cell: number) => void} activate the user clicked into a cell
 * @property {(step: number | 'first' | 'last') => void} scroll in the active cell
 * @property {(cell: number, clientX: number, clientY: number) => void} point the mouse moved over a cell
 * @property {(cell: number) => void} leave the mouse left a cell
 * @property {(cell: number, alias: string) => void} drop a series was dropped on a cell
 * @property {() => void} resize the grid changed size
 */

export class GridInput {
  /**
   * @param {HTMLElement} grid holds `.viewer-cell[data-cell]` elements
   * @param {HTMLElement[]} cells
   * @param {InputHandlers} handlers
   */
  constructor(grid, cells, handlers) {
    /** @type {Array<[EventTarget, string, EventListener, boolean]>} */
    this._listeners = [];
    const cellOf = (/** @type {Event} */ event) => {
      const el = event.target instanceof Element ? event.target.closest('.viewer-cell') : null;
      return el instanceof HTMLElement && el.dataset.cell !== undefined ? Number(el.dataset.cell) : null;
    };
    this._add(grid, 'pointerdown', (event) => {
      grid.focus({ preventScroll: true }); // so the keyboard scrolls the cell just clicked
      const cell = cellOf(event);
      if (cell !== null && handlers.enabled()) handlers.activate(cell);
    }, true);
    this._add(grid, 'keydown', (event) => {
      const step = KEYS[/** @type {KeyboardEvent} */ (event).key];
      if (step === undefined || !handlers.enabled()) return;
      event.preventDefault();
      handlers.scroll(step);
    });
    this._add(grid, 'pointermove', (event) => {
      const cell = cellOf(event);
      const { clientX, clientY } = /** @type {PointerEvent} */ (event);
      if (cell !== null) handlers.point(cell, clientX, clientY);
    });
    for (const el of cells) {
      this._add(el, 'pointerleave', () => handlers.leave(Number(el.dataset.cell)));
    }
    this._add(grid, 'dragover', (event) => {
      if (handlers.enabled() && /** @type {DragEvent} */ (event).dataTransfer?.types.includes(SERIES_TYPE)) event.preventDefault();
    });
    this._add(grid, 'drop', (event) => {
      const alias = /** @type {DragEvent} */ (event).dataTransfer?.getData(SERIES_TYPE);
      const cell = cellOf(event);
      if (!alias || cell === null || !handlers.enabled()) return;
      event.preventDefault();
      handlers.drop(cell, alias);
    });
    // The right button zooms.
    this._add(grid, 'contextmenu', (event) => event.preventDefault());
    this._resizeObserver = new ResizeObserver(() => handlers.resize());
    this._resizeObserver.observe(grid);
  }

  /**
   * @param {EventTarget} target
   * @param {string} type
   * @param {EventListener} listener
   * @param {boolean} [capture]
   */
  _add(target, type, listener, capture = false) {
    target.addEventListener(type, listener, capture);
    this._listeners.push([target, type, listener, capture]);
  }

  close() {
    this._resizeObserver.disconnect();
    for (const [target, type, listener, capture] of this._listeners) target.removeEventListener(type, listener, capture);
    this._listeners = [];
  }
}
