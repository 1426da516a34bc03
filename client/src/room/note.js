/**
 * The consensus note in the live room: the note of the case under discussion (the agenda's
 * current item), over the live connection's socket. When the chair moves the agenda on, the
 * note of the next case opens and the last one closes (after its last edits are stored).
 *
 * Held by the room with the live client, so the note and its unsent edits outlive a re-render of
 * the page; each render gets a fresh panel (in its language) over the same NoteSync.
 */

import { t } from '../i18n/index.js';
import { NotePanel } from '../notes/panel.js';
import { NoteSync } from '../notes/sync.js';
import { Templates } from '../notes/template.js';
import { h, mount } from '../ui.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */
/** @typedef {import('../app.js').App} App */

/** Attendance comes from media joins: look again this long after the participants change, */
const ATTENDANCE_REFRESH_MS = 2000;
/** and now and then, since joins are recorded per case as the agenda moves. */
const ATTENDANCE_POLL_MS = 20000;

export class RoomNote {
  /**
   * @param {LiveClient} live
   * @param {App} app
   * @param {AbortSignal} signal the room's life
   */
  constructor(live, app, signal) {
    this._live = live;
    this._app = app;
    this._templates = new Templates(app.api);
    /** @type {NoteSync | null} the note of the current case, for the debug hook */
    this.sync = null;
    /** @type {number | null} */
    this._caseId = null;
    /** @type {NotePanel | null} */
    this._panel = null;
    /** @type {AbortController | null} the panel's life */
    this._shown = null;
    /** @type {AbortSignal | null} the latest render's */
    this._views = null;
    this._participants = '';
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._refresh = undefined;
    this.el = h('div', { class: 'room-panel room-note', 'data-testid': 'room-note', hidden: true });
    live.on('state', () => this._follow(), signal);
    // Opened after each join (the first, and every rejoin after a reconnect).
    live.on('phase', (phase) => {
      if (phase === 'live') this.sync?.open();
      this._follow();
    }, signal);
    const poll = setInterval(() => void this._panel?.refresh(), ATTENDANCE_POLL_MS);
    signal.addEventListener('abort', () => {
      clearInterval(poll);
      clearTimeout(this._refresh);
      this._open(null);
    });
  }

  /**
   * A new render of the room: show the note in it (in the current language).
   * @param {AbortSignal} views ends with the render
   */
  render(views) {
    this._views = views;
    if (!this._follow()) this._showPanel();
  }

  /**
   * The agenda moved or people came and went.
   * @returns {boolean} whether the note shown changed
   */
  _follow() {
    const snapshot = this._live.snapshot;
    if (!snapshot) return false;
    const item = snapshot.agenda.items.find((i) => i.id === snapshot.agenda.current);
    // Not before admission; kept while reconnecting (the note comes back by itself).
    const admitted = this._live.phase === 'live' || this._live.phase === 'reconnecting';
    const caseId = admitted ? item?.case_id ?? null : null;
    const participants = snapshot.participants.map((p) => p.id).sort().join(' ');
    const moved = caseId !== this._caseId;
    if (moved) {
      this._open(caseId);
      this._showPanel();
    }
    if (moved || participants !== this._participants) {
      // The server records the joins of the case under discussion as they happen.
      this._participants = participants;
      clearTimeout(this._refresh);
      this._refresh = setTimeout(() => void this._panel?.refresh(), ATTENDANCE_REFRESH_MS);
    }
    return moved;
  }

  /**
   * Switch to the note of `caseId` (null: none).
   * @param {number | null} caseId
   */
  _open(caseId) {
    this._caseId = caseId;
    void this.sync?.close();
    this.sync = caseId === null ? null : new NoteSync(this._live.socket, caseId, { openOnConnect: false }).start();
    if (this._live.phase === 'live') this.sync?.open();
  }

  /** A panel over the current note, for the current render. */
  _showPanel() {
    this._shown?.abort();
    this._shown = null;
    this._panel = null;
    const sync = this.sync;
    const views = this._views;
    this.el.hidden = !sync || !views;
    if (!sync || !views || views.aborted) {
      this.el.replaceChildren();
      return;
    }
    const shown = new AbortController();
    views.addEventListener('abort', () => shown.abort(), { signal: shown.signal });
    this._shown = shown;
    this._panel = new NotePanel({
      api: this._app.api, sync, templates: this._templates, userId: this._app.user.id,
    }, shown.signal);
    const item = this._live.snapshot?.agenda.items.find((i) => i.case_id === sync.caseId);
    mount(this.el,
      item && h('p', { class: 'meta room-note-case' }, t('note.for_case', { case: item.case_number })),
      this._panel.el);
  }
}
