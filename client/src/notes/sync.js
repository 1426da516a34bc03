/**
 * One case's consensus note as a Yjs document, kept in step with the server over socket.io
 * (no DOM). Wire contract: schemas/events/note-*.json.
 *
 * Local changes are merged and sent at most every `interval` ms; each sent update stays pending
 * until the server acknowledges it (it acknowledges only once the update is durable). After a
 * reconnect the note is opened again, the server's whole document applied, and everything still
 * pending re-sent as one update: Yjs updates are idempotent, so one the server already had costs
 * nothing. Updates from others arrive with the origin `REMOTE` and are never echoed back.
 *
 * The server creates the whole skeleton of the document (root: `doc.getMap('note')`); a client
 * never creates top-level types, only items of arrays (see form.js).
 */

import * as Y from 'yjs';
import { fromBase64, toBase64 } from './base64.js';

/** @typedef {import('socket.io-client').Socket} Socket */

/** The transaction origin of changes that came from the server. */
export const REMOTE = 'remote';

const SEND_EVERY_MS = 50;
const ACK_TIMEOUT_MS = 10000;
const RETRY_OPEN_MS = 2000;
const CLOSE_WAIT_MS = 3000;
/** The largest update the server takes (schemas/events/note-update.json). */
const MAX_UPDATE_BYTES = 128 * 1024;

/** @typedef {'draft'|'amending'|'finalized'} NoteStatus */

/**
 * Who has the note open, and the field they are in.
 * @typedef {object} Presence
 * @property {number} user_id
 * @property {string} name
 * @property {string|null} field dot path, e.g. "staging.stage_group"
 */

/**
 * A refusal (schemas/events/error.json).
 * @typedef {object} NoteError
 * @property {string} event
 * @property {string|null} field
 * @property {string} message
 */

/**
 * The events a NoteSync dispatches; listen with `on`.
 * @typedef {object} NoteEvents
 * @property {NoteSync} open the note is open: first, and again after every reconnect
 * @property {NoteSync} state status or read-only changed (finalized, amendment opened)
 * @property {Presence[]} presence
 * @property {NoteError} error an open or an update was refused
 * @property {number} pending how many local changes wait for the server (0: all saved); also
 *   sent when the connection is lost
 * @property {Y.Doc} reset the document was replaced by the server's (after a refused update)
 */

export class NoteSync extends EventTarget {
  /**
   * @param {Socket} socket a connection to the `/board` namespace (connected or not yet)
   * @param {number} caseId
   * @param {{interval?: number, openOnConnect?: boolean}} [options] `openOnConnect: false` when
   *   the owner knows better when to open (the room: after each join), and calls `open`
   */
  constructor(socket, caseId, { interval = SEND_EVERY_MS, openOnConnect = true } = {}) {
    super();
    this.socket = socket;
    this.caseId = caseId;
    this.doc = new Y.Doc();
    /** @type {string | null} the template id, once open */
    this.template = null;
    /** @type {NoteStatus} */
    this.status = 'draft';
    this.readonly = true;
    /** @type {number | null} the agreed plan's version, once finalized */
    this.version = null;
    /** @type {Presence[]} */
    this.presence = [];
    /** Whether the note is open on the socket's current connection. */
    this.opened = false;
    this._interval = interval;
    /** Local updates not sent yet. */
    this._outbox = /** @type {Uint8Array[]} */ ([]);
    /** Sent updates waiting for their acknowledgement, by send number. */
    this._pending = /** @type {Map<number, Uint8Array>} */ (new Map());
    this._sends = 0;
    this._lastSent = -Infinity;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._timer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._retry = undefined;
    /** Counts opens, so that an answer to an earlier one is recognised. */
    this._opens = 0;
    /** @type {string | null} the field we are in */
    this._field = null;
    this._closed = false;
    this._openOnConnect = openOnConnect;
    this._onUpdate = this._onUpdate.bind(this);
    this._handlers = {
      connect: () => { if (this._openOnConnect) void this._open(false); },
      disconnect: () => {
        this.opened = false;
        this._emit('pending', this.pending);
      },
      'note-updated': (/** @type {{case_id: number, update: string}} */ msg) => {
        if (msg.case_id === this.caseId) Y.applyUpdate(this.doc, fromBase64(msg.update), REMOTE);
      },
      'note-presence': (/** @type {{case_id: number, participants: Presence[]}} */ msg) => {
        if (msg.case_id === this.caseId) this._setPresence(msg.participants);
      },
      'note-state': (/** @type {{case_id: number, status: NoteStatus, readonly: boolean, version?: number|null}} */ msg) => {
        if (msg.case_id !== this.caseId) return;
        this.status = msg.status;
        this.readonly = msg.readonly;
        this.version = msg.version ?? this.version;
        this._emit('state', this);
      },
    };
  }

  /**
   * @template {keyof NoteEvents} K
   * @param {K} type
   * @param {(detail: NoteEvents[K]) => void} listener
   * @param {AbortSignal} [signal] removes the listener when aborted
   */
  on(type, listener, signal) {
    this.addEventListener(type, (event) => listener(/** @type {CustomEvent<NoteEvents[K]>} */ (event).detail), { signal });
  }

  /** Listen to the socket and open the note (now, or once the socket connects). */
  start() {
    for (const [event, handler] of Object.entries(this._handlers)) this.socket.on(event, handler);
    this.doc.on('update', this._onUpdate);
    if (this._openOnConnect && this.socket.connected) void this._open(false);
    return this;
  }

  /** Open the note on the socket's connection (again): the server's document, then our edits. */
  open() {
    if (this.socket.connected) void this._open(false);
  }

  /** The root of the note's document. */
  get root() {
    return this.doc.getMap('note');
  }

  /** The note as plain JSON, as it is in this browser now. */
  toJSON() {
    return this.root.toJSON();
  }

  /** How many local changes the server has not acknowledged yet. */
  get pending() {
    return this._outbox.length + this._pending.size;
  }

  /**
   * Presence: the field we are in now (dot path), or null when we left the form.
   * @param {string | null} field
   */
  focus(field) {
    if (field === this._field) return;
    this._field = field;
    if (this.opened) this.socket.emit('note-focus', { case_id: this.caseId, field });
  }

  /**
   * Send what is waiting now and wait until the server has acknowledged everything.
   * @param {number} timeoutMs
   * @returns {Promise<boolean>} whether everything was acknowledged in time
   */
  settle(timeoutMs) {
    this._flush();
    if (this.pending === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = new AbortController();
      const timer = setTimeout(() => {
        done.abort();
        resolve(false);
      }, timeoutMs);
      this.on('pending', (count) => {
        if (count > 0) return;
        clearTimeout(timer);
        done.abort();
        resolve(true);
      }, done.signal);
    });
  }

  /** Stop: send what is waiting (for a while), tell the server, and let the document go. */
  async close() {
    if (this._closed) return;
    this._closed = true;
    await this.settle(CLOSE_WAIT_MS);
    if (this.socket.connected && this.opened) this.socket.emit('note-close', { case_id: this.caseId });
    this.opened = false;
    for (const [event, handler] of Object.entries(this._handlers)) this.socket.off(event, handler);
    clearTimeout(this._timer);
    clearTimeout(this._retry);
    this.doc.off('update', this._onUpdate);
    this.doc.destroy();
  }

  // -- sending ----------------------------------------------------------------------------

  /**
   * @param {Uint8Array} update
   * @param {unknown} origin
   */
  _onUpdate(update, origin) {
    if (origin === REMOTE) return;
    this._outbox.push(update);
    this._emit('pending', this.pending);
    if (this._timer === undefined) {
      const wait = Math.max(0, this._lastSent + this._interval - performance.now());
      this._timer = setTimeout(() => this._flush(), wait);
    }
  }

  /** Send the outbox as one update (kept for after the next open while the note is not open). */
  _flush() {
    clearTimeout(this._timer);
    this._timer = undefined;
    if (!this.opened || !this.socket.connected || this._outbox.length === 0) return;
    const updates = this._outbox;
    this._outbox = [];
    for (const update of batches(updates)) this._send(update);
  }

  /** @param {Uint8Array} update */
  _send(update) {
    const id = ++this._sends;
    this._pending.set(id, update);
    this._lastSent = performance.now();
    this.socket.timeout(ACK_TIMEOUT_MS).emit('note-update', { case_id: this.caseId, update: toBase64(update) },
      (/** @type {Error | null} */ timedOut, /** @type {any} */ ack) => this._acked(id, timedOut, ack));
  }

  /**
   * @param {number} id
   * @param {Error | null} timedOut
   * @param {{ok: boolean, error?: NoteError} | undefined} ack
   */
  _acked(id, timedOut, ack) {
    const update = this._pending.get(id);
    if (update === undefined) return; // re-sent since, in a later open
    if (timedOut) {
      // No answer: send it again while connected (the server ignores what it already has);
      // otherwise it goes with everything else after the next open.
      if (this.opened && this.socket.connected) {
        this._pending.delete(id);
        this._send(update);
      }
      return;
    }
    this._pending.delete(id);
    if (!ack?.ok) {
      this._emit('error', ack?.error ?? { event: 'note-update', field: null, message: 'refused' });
      // What this browser shows must be what the server keeps: start again from its document.
      void this._open(true);
    }
    this._emit('pending', this.pending);
  }

  // -- opening ----------------------------------------------------------------------------

  /**
   * Open the note on this connection: apply the server's document (into a fresh one when
   * `fresh`), then re-send everything not acknowledged yet.
   * @param {boolean} fresh
   */
  async _open(fresh) {
    if (this._closed) return;
    clearTimeout(this._retry);
    const open = ++this._opens;
    this.opened = false;
    /** @type {any} */
    let ack;
    try {
      ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck('note-open', { case_id: this.caseId });
    } catch {
      // No answer in time: try again while this connection lasts (a reconnect opens anyway).
      if (open === this._opens && this.socket.connected) this._retry = setTimeout(() => void this._open(fresh), RETRY_OPEN_MS);
      return;
    }
    if (open !== this._opens || this._closed) return; // a later open (or close) overtook this one
    if (!ack?.ok) {
      this._emit('error', ack?.error ?? { event: 'note-open', field: null, message: 'refused' });
      return;
    }
    const unsent = [...this._pending.values(), ...this._outbox];
    this._pending.clear();
    this._outbox = [];
    if (fresh) this._replaceDoc(ack.update, unsent);
    else Y.applyUpdate(this.doc, fromBase64(ack.update), REMOTE);
    this.template = ack.template;
    this.status = ack.status;
    this.readonly = ack.readonly;
    this.opened = true;
    this._setPresence(ack.presence ?? []);
    if (this._field !== null) this.socket.emit('note-focus', { case_id: this.caseId, field: this._field });
    for (const update of batches(unsent)) this._send(update);
    this._emit('pending', this.pending);
    this._emit('open', this);
  }

  /**
   * Replace the document by the server's, with our unacknowledged changes on top.
   * @param {string} serverState base64 update
   * @param {Uint8Array[]} unsent
   */
  _replaceDoc(serverState, unsent) {
    const doc = new Y.Doc();
    Y.applyUpdate(doc, fromBase64(serverState), REMOTE);
    for (const update of unsent) Y.applyUpdate(doc, update, REMOTE);
    this.doc.off('update', this._onUpdate);
    this.doc.destroy();
    this.doc = doc;
    doc.on('update', this._onUpdate);
    this._emit('reset', doc);
  }

  // -- plumbing ---------------------------------------------------------------------------

  /** @param {Presence[]} participants */
  _setPresence(participants) {
    this.presence = participants;
    this._emit('presence', participants);
  }

  /**
   * @template {keyof NoteEvents} K
   * @param {K} type
   * @param {NoteEvents[K]} detail
   */
  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * Updates merged into as few as the server's size limit allows.
 * @param {Uint8Array[]} updates
 * @returns {Uint8Array[]}
 */
function batches(updates) {
  /** @type {Uint8Array[]} */
  const merged = [];
  /** @type {Uint8Array[]} */
  let group = [];
  let size = 0;
  for (const update of updates) {
    if (group.length > 0 && size + update.length > MAX_UPDATE_BYTES) {
      merged.push(Y.mergeUpdates(group));
      group = [];
      size = 0;
    }
    group.push(update);
    size += update.length;
  }
  if (group.length > 0) merged.push(group.length === 1 ? group[0] : Y.mergeUpdates(group));
  return merged;
}
