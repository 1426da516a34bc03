/**
 * The case page's "Consensus note" section: the agreed plan when the case has one (and the note
 * below it while an amendment is open), otherwise the note itself, edited live with whoever
 * else has it open. The page keeps its own socket.io connection to `/board` for the note, made
 * when the note is first shown and closed when the user leaves the page.
 */

import { io } from 'socket.io-client';
import { ApiError } from '../api.js';
import { debugHook, debugging } from '../debug.js';
import { t } from '../i18n/index.js';
import { NotePanel } from '../notes/panel.js';
import { AgreedPlan } from '../notes/plan.js';
import { NoteSync } from '../notes/sync.js';
import { Templates } from '../notes/template.js';
import { errorBox, h, mount } from '../ui.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').Plan} Plan */
/** @typedef {import('../types.js').NoteInfo} NoteInfo */
/** @typedef {import('socket.io-client').Socket} Socket */

/**
 * @param {App} app
 * @param {number} caseId
 * @param {() => void} caseChanged the case's state may have changed (finalized, amended)
 */
export function noteSection(app, caseId, caseChanged) {
  const held = app.router.hold(() => new CaseNote(app, caseId), (note) => note.close(), 'note');
  const body = h('div', { class: 'case-note-body' }, h('p', { class: 'loading' }, t('common.loading')));
  held.show(body, caseChanged);
  return h('section', { class: 'panel case-note', 'aria-labelledby': 'case-note-heading', 'data-testid': 'case-note' },
    h('h2', { id: 'case-note-heading' }, t('note.section')),
    body);
}

/** What the case page holds for the note while it is shown: the connection and the templates. */
class CaseNote {
  /**
   * @param {App} app
   * @param {number} caseId
   */
  constructor(app, caseId) {
    this._app = app;
    this._caseId = caseId;
    this._templates = new Templates(app.api);
    /** @type {Socket | null} */
    this._socket = null;
    /** @type {NoteSync | null} */
    this.sync = null;
    /** @type {AbortController | null} the views of the latest render */
    this._views = null;
  }

  /**
   * Show the note in `body`, replacing the views of an earlier render (a language switch).
   * @param {HTMLElement} body
   * @param {() => void} caseChanged
   */
  show(body, caseChanged) {
    this._views?.abort();
    const views = new AbortController();
    this._views = views;
    /** @type {AbortController | null} */
    let shown = null;
    const load = async () => {
      shown?.abort();
      const life = new AbortController();
      shown = life;
      views.signal.addEventListener('abort', () => life.abort());
      try {
        /** @type {NoteInfo} */
        const info = await this._app.api.get(`/cases/${this._caseId}/note`);
        // A draft has never been finalized: there is no plan to ask for (and no 404 to log).
        const plan = info.status === 'draft' ? null : await this._plan();
        if (life.signal.aborted) return;
        mount(body, this._content(info, plan, life.signal, () => {
          caseChanged();
          void load();
        }));
      } catch (error) {
        if (!life.signal.aborted) mount(body, errorBox(error));
      }
    };
    void load();
  }

  /**
   * @param {NoteInfo} info
   * @param {Plan | null} plan
   * @param {AbortSignal} signal
   * @param {() => void} changed
   */
  _content(info, plan, signal, changed) {
    const app = this._app;
    const showNote = !plan || info.status === 'amending';
    return [
      plan && new AgreedPlan({
        api: app.api, caseId: this._caseId, plan, templates: this._templates,
        canAmend: info.can_amend && info.status === 'finalized',
        canFollowUp: app.may('schedule'),
        onAmend: changed,
      }).el,
      showNote && new NotePanel({
        api: app.api, sync: this._open(), templates: this._templates, userId: app.user.id, heading: null,
        onStatus: (status) => { if (status !== info.status) changed(); },
      }, signal).el,
    ];
  }

  /** @returns {Promise<Plan | null>} null when the case has no agreed plan (yet) */
  async _plan() {
    try {
      return await this._app.api.get(`/cases/${this._caseId}/plan`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }
  }

  /** The note's live connection, made on first use. */
  _open() {
    if (!this.sync) {
      // Same origin: the login cookie goes with the handshake, as in the live room.
      this._socket = io('/board', { transports: ['websocket'], reconnectionDelay: 250, reconnectionDelayMax: 2000 });
      this.sync = new NoteSync(this._socket, this._caseId).start();
      if (debugging()) debugHook().note = this.sync;
    }
    return this.sync;
  }

  close() {
    this._views?.abort();
    const sync = this.sync;
    const socket = this._socket;
    this.sync = null;
    this._socket = null;
    const hook = debugHook();
    if (sync && hook.note === sync) delete hook.note;
    // The last edits go out first; then the connection ends.
    if (sync) void sync.close().finally(() => socket?.disconnect());
  }
}
