/**
 * The shared view of a live session, as this browser knows it (no DOM).
 *
 * The presenter sends patches (schemas/events/view.json), each with a sequence number higher
 * than the last one the server accepted; followers get them as `view-update` and apply them in
 * order, dropping any not newer than what they hold. Each comes twice: on the socket, in order
 * and never lost, and on the down connection's data channel, which a lost packet does not hold
 * up (on a lossy link TCP's retransmission costs 0.5-1 s). A channel copy may itself be lost or
 * overtaken, so it applies only to the state it was made from (`after`); one that comes early
 * waits for its predecessor from either path. Whichever copy comes first is applied. The whole
 * state comes with every snapshot (join, rejoin after a reconnect, presenter change), so a late
 * joiner starts from it.
 * Series are named by alias and images by index: never URLs or UIDs.
 */

/** @typedef {import('./protocol.js').LiveClient} LiveClient */
/** @typedef {import('./protocol.js').Snapshot} Snapshot */

import { applyPatch, emptyState } from './viewer/state.js';

/** @typedef {import('./viewer/state.js').ViewState} ViewState */
/** @typedef {import('./viewer/state.js').ViewPatch} ViewPatch */

/**
 * A presenter's patch as the server passes it on (schemas/events/view-update.json).
 * @typedef {object} ViewUpdate
 * @property {number} seq
 * @property {number} after the number of the state it applies to
 * @property {string} by
 * @property {ViewPatch} patch
 */

/**
 * @typedef {object} ViewEvents
 * @property {{seq: number, patch: ViewPatch}} update a presenter's patch to apply
 * @property {{seq: number, state: ViewState}} reset the whole state to load (snapshot)
 * @property {{by: string, viewport: number, point: number[]|null}} pointer the presenter's laser
 */

const TIMELINE = 200;
// Channel copies held for a predecessor that has not come yet (it comes on the socket).
const EARLY_MAX = 32;

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
    /** How many updates came on each path, and which path brought each one applied (for
     * support and the link benchmark). */
    this.arrived = { socket: 0, channel: 0 };
    this.via = { socket: 0, channel: 0 };
    /** When each recent update came, on which path (both copies): for support and the link
     * benchmark, which tells the network's share of the sync's time from the screen's. */
    this.arrivals = /** @type {{seq: number, path: 'socket'|'channel', at: number}[]} */ ([]);
    /** @type {Map<number, ViewUpdate>} channel copies that came early, by `after` */
    this._early = new Map();
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
    socket.on('view-update', (/** @type {ViewUpdate} */ update) => this._update(update, 'socket'));
    this.live.on('relayed', ({ event, data }) => {
      if (event === 'view-update') this._update(data, 'channel');
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
      this._drain();
    });
  }

  /**
   * An update from `path`. The socket's come in order, every accepted one: applied if newer
   * than ours. The channel's apply only to the state they follow, else wait for it.
   * @param {ViewUpdate} update
   * @param {'socket'|'channel'} path
   */
  _update(update, path) {
    const { seq, after } = update;
    this.arrived[path] += 1;
    if (typeof seq === 'number') {
      this.arrivals.push({ seq, path, at: now() });
      if (this.arrivals.length > TIMELINE) this.arrivals.shift();
    }
    if (typeof seq !== 'number' || seq <= this.seq) return;
    if (path === 'channel' && after !== this.seq) {
      if (typeof after === 'number' && after > this.seq && this._early.size < EARLY_MAX) this._early.set(after, update);
      return;
    }
    this._apply(update, path);
    this._drain();
  }

  /** Apply the channel copies that follow what we hold now; forget those it made stale. */
  _drain() {
    for (let next = this._early.get(this.seq); next; next = this._early.get(this.seq)) {
      this._early.delete(this.seq);
      this._apply(next, 'channel');
    }
    for (const after of this._early.keys()) if (after < this.seq) this._early.delete(after);
  }

  /**
   * @param {ViewUpdate} update
   * @param {'socket'|'channel'} path
   */
  _apply({ seq, patch }, path) {
    this.seq = seq;
    this.state = applyPatch(this.state, patch);
    this._keepSnapshot();
    this.via[path] += 1;
    this._emit('update', { seq, patch });
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
