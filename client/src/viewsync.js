/**
 * The shared view of a live session, as this browser knows it (no DOM).
 *
 * The presenter sends patches (schemas/events/view.json), each with a sequence number higher
 * than the last one the server accepted; followers get them as `view-update` and apply them in
 * order, dropping any not newer than what they hold. The whole state comes with every snapshot
 * (join, rejoin after a reconnect, presenter change), so a late joiner starts from it.
 * Series are named by alias and images by index: never URLs or UIDs.
 */

/** @typedef {import('./protocol.js').LiveClient} LiveClient */
/** @typedef {import('./protocol.js').Snapshot} Snapshot */

/**
 * @typedef {object} Presentation
 * @property {number} zoom
 * @property {[number, number]} pan
 * @property {number} rotation
 * @property {boolean} flipHorizontal
 * @property {boolean} flipVertical
 */

/**
 * One cell of the layout (schemas/view-state.json#/$defs/viewport).
 * @typedef {object} ViewportState
 * @property {string|null} series alias; null: an empty cell
 * @property {number} index image index in the series' canonical order
 * @property {{center: number, width: number}|null} voi null: the image's own window
 * @property {boolean} invert
 * @property {Presentation} presentation
 */

/**
 * @typedef {object} AnnotationState
 * @property {string} id
 * @property {'Length'|'Angle'|'EllipticalROI'|'ArrowAnnotate'} tool
 * @property {string} series alias
 * @property {number} index the image it was drawn on
 * @property {number[][]} points world coordinates (mm)
 * @property {string} [text]
 */

/**
 * @typedef {object} ViewState
 * @property {'1x1'|'1x2'|'2x2'} layout
 * @property {number} active
 * @property {ViewportState[]} viewports
 * @property {AnnotationState[]} annotations
 */

/**
 * @typedef {object} ViewPatch
 * @property {ViewState['layout']} [layout]
 * @property {number} [active]
 * @property {Record<string, ViewportState>} [viewports] replaced whole, by cell number
 * @property {AnnotationState[]} [annotations]
 */

/**
 * @typedef {object} ViewEvents
 * @property {{seq: number, patch: ViewPatch}} update a presenter's patch to apply
 * @property {{seq: number, state: ViewState}} reset the whole state to load (snapshot)
 * @property {{by: string, viewport: number, point: number[]|null}} pointer the presenter's laser
 */

/** @returns {ViewState} */
export function emptyView() {
  return { layout: '1x1', active: 0, viewports: [], annotations: [] };
}

/**
 * The state after a patch (the server merges the same way: top-level keys replace, viewports
 * are replaced whole by cell number).
 * @param {ViewState} state
 * @param {ViewPatch} patch
 * @returns {ViewState}
 */
export function merged(state, patch) {
  const next = { ...state, viewports: [...state.viewports] };
  if (patch.layout !== undefined) next.layout = patch.layout;
  if (patch.active !== undefined) next.active = patch.active;
  if (patch.annotations !== undefined) next.annotations = patch.annotations;
  for (const [cell, viewport] of Object.entries(patch.viewports ?? {})) {
    next.viewports[Number(cell)] = viewport;
  }
  return next;
}

export class ViewSync extends EventTarget {
  /** @param {LiveClient} live */
  constructor(live) {
    super();
    this.live = live;
    /** The sequence number of the last state we hold (ours when presenting). */
    this.seq = 0;
    /** @type {ViewState} */
    this.state = emptyView();
    this._listen();
  }

  /**
   * @template {keyof ViewEvents} K
   * @param {K} type
   * @param {(detail: ViewEvents[K]) => void} listener
   * @param {AbortSignal} [signal]
   */
  on(type, listener, signal) {
    this.addEventListener(type, (event) => listener(/** @type {CustomEvent<ViewEvents[K]>} */ (event).detail), { signal });
  }

  /**
   * Presenter: send what changed. Not sent while disconnected (the state is re-sent whole after
   * the rejoin, see `resend`). Refusals come back as the live client's `error` event.
   * @param {ViewPatch} patch
   */
  send(patch) {
    if (!this.live.presenting || !this.live.socket.connected) return;
    this.seq += 1;
    this.state = merged(this.state, patch);
    this.live.socket.emit('view', { seq: this.seq, patch }, (/** @type {any} */ ack) => {
      // Someone presented meanwhile with higher numbers: continue after theirs.
      if (ack?.dropped) this.seq = Math.max(this.seq, ack.seq);
    });
  }

  /**
   * Presenter: send our whole state (after a rejoin, or when we start presenting with a view of
   * our own).
   * @param {ViewState} state
   */
  resend(state) {
    /** @type {Record<string, ViewportState>} */
    const viewports = {};
    state.viewports.forEach((v, cell) => { viewports[String(cell)] = v; });
    this.send({ layout: state.layout, active: state.active, viewports, annotations: state.annotations });
  }

  /**
   * Presenter: where the laser pointer is (volatile: dropped rather than queued).
   * @param {number} viewport
   * @param {number[]|null} point
   */
  pointer(viewport, point) {
    if (!this.live.presenting || !this.live.socket.connected) return;
    this.live.socket.volatile.emit('pointer', { viewport, point });
  }

  _listen() {
    const socket = this.live.socket;
    socket.on('view-update', (/** @type {{seq: number, patch: ViewPatch}} */ { seq, patch }) => {
      if (seq <= this.seq) return;
      this.seq = seq;
      this.state = merged(this.state, patch);
      this._emit('update', { seq, patch });
    });
    socket.on('pointer-move', (/** @type {ViewEvents['pointer']} */ move) => this._emit('pointer', move));
    this.live.on('state', (snapshot) => {
      const view = snapshot.view;
      if (!view) return;
      if (this.live.presenting) {
        // Ours is the view; continue after whatever the server accepted last.
        this.seq = Math.max(this.seq, view.seq);
        return;
      }
      // The server sends in order, so a snapshot is never behind the updates we applied; a
      // different number means a rejoin, or a server that restarted.
      if (view.seq === this.seq) return;
      this.seq = view.seq;
      this.state = view.state;
      this._emit('reset', { seq: view.seq, state: view.state });
    });
  }

  /**
   * @template {keyof ViewEvents} K
   * @param {K} type
   * @param {ViewEvents[K]} detail
   */
  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
