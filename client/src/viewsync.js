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

import { applyPatch, emptyState } from './viewer/state.js';

/** @typedef {import('./viewer/state.js').ViewState} ViewState */
/** @typedef {import('./viewer/state.js').ViewPatch} ViewPatch */

/**
 * @typedef {object} ViewEvents
 * @property {{seq: number, patch: ViewPatch}} update a presenter's patch to apply
 * @property {{seq: number, state: ViewState}} reset the whole state to load (snapshot)
 * @property {{by: string, viewport: number, point: number[]|null}} pointer the presenter's laser
 */

const TIMELINE = 200;

/** Milliseconds since the epoch, sub-millisecond, on the clock every page of a machine shares. */
function now() {
  return performance.timeOrigin + performance.now();
}

export class ViewSync extends EventTarget {
  /** @param {LiveClient} live */
  constructor(live) {
    super();
    this.live = live;
    /** The sequence number of the last state we hold (ours when presenting). */
    this.seq = 0;
    /** @type {ViewState} */
    this.state = emptyState();
    /** When each recent state went out (presenter) or was on screen (follower): for support
     * and the sync tests, in ms since the epoch (comparable between browsers on one machine). */
    this.timeline = /** @type {{seq: number, at: number}[]} */ ([]);
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
    this.state = applyPatch(this.state, patch);
    this._keepSnapshot();
    this.timeline.push({ seq: this.seq, at: now() });
    if (this.timeline.length > TIMELINE) this.timeline.shift();
    this.live.socket.emit('view', { seq: this.seq, patch }, (/** @type {any} */ ack) => {
      // Someone presented meanwhile with higher numbers: continue after theirs.
      if (ack?.dropped) this.seq = Math.max(this.seq, ack.seq);
    });
  }

  /**
   * Follower: state `seq` is on screen now.
   * @param {number} seq
   */
  shown(seq) {
    this.timeline.push({ seq, at: now() });
    if (this.timeline.length > TIMELINE) this.timeline.shift();
  }

  /**
   * Presenter: send our whole state (after a rejoin, or when we start presenting with a view of
   * our own).
   * @param {ViewState} state
   */
  resend(state) {
    /** @type {NonNullable<ViewPatch['viewports']>} */
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
      this.state = applyPatch(this.state, patch);
      this._keepSnapshot();
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
   * The live client re-announces its snapshot on every participant change: keep the view in it
   * current, so an older view never comes back as if it were new.
   */
  _keepSnapshot() {
    if (this.live.snapshot) this.live.snapshot.view = { seq: this.seq, state: this.state };
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
