/**
 * A case's consensus note being written: status (draft, amendment, finalized; saved or not),
 * who else is in it, quorum and attendance, the form, and the chair's Finalize / Amend….
 * The same panel serves the live room and the case page; each gives it a started NoteSync.
 */

import './notes.css';
import { ApiError } from '../api.js';
import { formatList, label, t } from '../i18n/index.js';
import { busy, errorText, h, mount } from '../ui.js';
import { amendControl } from './amend.js';
import { attendanceTable, quorumIndicator } from './attendance.js';
import { NoteForm } from './form.js';
import { describePath } from './template.js';

/** @typedef {import('../api.js').Api} Api */
/** @typedef {import('../types.js').NoteInfo} NoteInfo */
/** @typedef {import('./sync.js').NoteSync} NoteSync */
/** @typedef {import('./sync.js').NoteStatus} NoteStatus */
/** @typedef {import('./sync.js').NoteError} NoteError */
/** @typedef {import('./template.js').Templates} Templates */
/** @typedef {import('./template.js').Schema} Schema */

/** How long Finalize waits for the last edits to be stored before it asks the server. */
const SETTLE_MS = 5000;

/**
 * @typedef {object} PanelOptions
 * @property {Api} api
 * @property {NoteSync} sync started
 * @property {Templates} templates
 * @property {number} userId ourselves, left out of the presence shown
 * @property {string | null} [heading] the panel's title; null where the page already names it
 * @property {(status: NoteStatus) => void} [onStatus] the note was finalized or an amendment
 *   was opened
 */

export class NotePanel {
  /**
   * @param {PanelOptions} options
   * @param {AbortSignal} signal ends the panel
   */
  constructor({ api, sync, templates, userId, heading = t('note.title'), onStatus = () => {} }, signal) {
    this._api = api;
    this._sync = sync;
    this._templates = templates;
    this._userId = userId;
    this._onStatus = onStatus;
    this._signal = signal;
    /** @type {NoteInfo | null} */
    this.info = null;
    /** @type {NoteForm | null} */
    this.form = null;
    /** @type {Schema | null} */
    this._template = null;
    const headingId = `note-heading-${sync.caseId}`;
    this._status = h('p', { class: 'note-status', 'data-note-status': '', role: 'status' });
    this._others = h('p', { class: 'note-others meta', 'aria-live': 'polite' });
    this._quorum = h('div', { class: 'note-quorum' });
    this._attendance = h('details', { class: 'note-attendance' });
    this._reason = h('p', { class: 'notice note-reason', hidden: true });
    this._errors = h('div', { class: 'alert note-errors', 'data-note-errors': '', role: 'alert', hidden: true });
    this._formHost = h('div', { class: 'note-form-host' }, h('p', { class: 'loading' }, t('note.opening')));
    this._result = h('p', { class: 'status', role: 'status' });
    this._actions = h('div', { class: 'note-actions' });
    this.el = h('section', {
      class: 'note-panel', 'data-note-panel': '', 'data-case': sync.caseId,
      'aria-labelledby': heading ? headingId : null, 'aria-label': heading ? null : t('note.title'),
    },
    h('div', { class: 'note-head' }, heading && h('h2', { id: headingId }, heading), this._status),
    this._others, this._quorum, this._attendance, this._reason, this._errors, this._formHost,
    this._actions, this._result);

    sync.on('open', () => void this._opened(), signal);
    sync.on('state', () => {
      this._showState();
      void this.refresh();
      onStatus(sync.status);
    }, signal);
    sync.on('pending', () => this._showStatus(), signal);
    sync.on('presence', () => this._showPresence(), signal);
    sync.on('reset', () => this.form?.bind(sync.root), signal);
    sync.on('error', (error) => this._showError(error), signal);
    signal.addEventListener('abort', () => this.form?.destroy());
    if (sync.opened) void this._opened();
    void this.refresh();
    this._showState();
  }

  /** Fetch permissions, attendance and quorum again (they change as people join and leave). */
  async refresh() {
    try {
      /** @type {NoteInfo} */
      const info = await this._api.get(`/cases/${this._sync.caseId}/note`);
      if (this._signal.aborted) return;
      this.info = info;
    } catch (error) {
      if (!this._signal.aborted) this._showError(error);
      return;
    }
    const info = this.info;
    mount(this._quorum, quorumIndicator(info.quorum));
    mount(this._attendance,
      h('summary', null, t('note.attendance', { count: info.attendance.length })),
      attendanceTable(info.attendance));
    this._showState();
  }

  /** The note is open (again): show the form, bound to the document, once. */
  async _opened() {
    const sync = this._sync;
    if (!sync.template || this.form) {
      this._showState();
      return;
    }
    let template;
    try {
      template = await this._templates.get(sync.template);
    } catch (error) {
      mount(this._formHost, h('p', { class: 'alert' }, errorText(error)));
      return;
    }
    if (this._signal.aborted || this.form) return;
    this._template = template;
    this.form = new NoteForm(template, { onFocus: (field) => sync.focus(field) });
    this.form.bind(sync.root);
    mount(this._formHost, this.form.el);
    this._showState();
    this._showPresence();
  }

  // -- state ------------------------------------------------------------------------------

  /** The note's status decides what is locked and which of the chair's buttons show. */
  _showState() {
    const status = this._statusNow();
    this.form?.setReadonly(this._readonly());
    const reason = status === 'amending' ? this.info?.amendment_reason : null;
    this._reason.hidden = !reason;
    this._reason.textContent = reason ? t('note.amendment_reason', { reason }) : '';
    this._showStatus();
    this._showActions(status);
  }

  /** Whether this user cannot change the note now. */
  _readonly() {
    return this._sync.readonly || this._statusNow() === 'finalized' || (this.info !== null && !this.info.can_edit);
  }

  /** @returns {NoteStatus} */
  _statusNow() {
    return this._sync.opened || !this.info ? this._sync.status : this.info.status;
  }

  _showStatus() {
    const sync = this._sync;
    const status = this._statusNow();
    let saving;
    if (!sync.socket.connected) saving = t('note.offline', { count: sync.pending });
    else if (!sync.opened) saving = t('note.opening');
    else saving = sync.pending > 0 ? t('note.saving') : t('note.saved');
    const readonly = this._readonly();
    this._status.dataset.status = status;
    this._status.dataset.saved = String(sync.opened && sync.pending === 0);
    this._status.dataset.readonly = String(readonly);
    mount(this._status,
      h('span', { class: `badge note-${status}` }, label('note_status', status)),
      readonly && h('span', { class: 'badge note-lock', title: t('note.readonly_hint') }, t('note.readonly')),
      ' ', h('span', { class: 'note-saving' }, saving));
  }

  /** @param {NoteStatus} status */
  _showActions(status) {
    const info = this.info;
    const showFinalize = Boolean(info?.can_finalize) && status !== 'finalized';
    const showAmend = Boolean(info?.can_amend) && status === 'finalized';
    // Unchanged buttons stay, with a reason the chair is typing.
    const key = `${showFinalize}:${showAmend}`;
    if (key === this._actions.dataset.shown) return;
    this._actions.dataset.shown = key;
    const finalize = h('button', { type: 'button', class: 'button-primary', 'data-note-finalize': '' }, t('note.finalize'));
    finalize.addEventListener('click', () => void this._finalize(finalize));
    mount(this._actions,
      showFinalize && finalize,
      showAmend && amendControl(this._api, this._sync.caseId, () => {
        this._result.textContent = '';
        void this.refresh();
        this._onStatus('amending');
      }));
  }

  _showPresence() {
    const others = this._sync.presence.filter((p) => p.user_id !== this._userId);
    const names = [...new Set(others.map((p) => p.name))];
    this._others.textContent = names.length > 0 ? t('note.others', { names: formatList(names) }) : '';
    this.form?.setPresence(this._sync.presence, this._userId);
  }

  // -- finalize ---------------------------------------------------------------------------

  /** @param {HTMLButtonElement} button */
  async _finalize(button) {
    this._clearErrors();
    this._result.textContent = '';
    try {
      await busy(button, async () => {
        // The server signs what it has: every edit made here must be there first.
        if (!await this._sync.settle(SETTLE_MS)) throw new Error(t('note.not_saved_yet'));
        /** @type {{version: number, hash: string}} */
        const signed = await this._api.post(`/cases/${this._sync.caseId}/note/finalize`, {});
        this._result.textContent = t('note.finalized_as', { version: signed.version });
      });
    } catch (error) {
      this._showError(error);
      return;
    }
    await this.refresh();
    this._onStatus('finalized');
  }

  // -- errors -----------------------------------------------------------------------------

  /**
   * A refusal: the server's sentence, and each failing field listed and marked in the form.
   * @param {unknown} error an ApiError, a NoteError from the socket, or an Error
   */
  _showError(error) {
    const fields = error instanceof ApiError ? error.errors : [];
    const sentence = isNoteError(error) ? error.message : errorText(error);
    this._errors.hidden = false;
    mount(this._errors,
      h('p', null, error instanceof ApiError && error.status === 422 && fields.length > 0 ? t('note.invalid') : sentence),
      fields.length > 0 && h('ul', null, fields.map((e) => h('li', { 'data-error-field': e.field },
        e.field
          ? h('button', { type: 'button', class: 'link-button', onclick: () => this._focusField(e.field) },
            this._template ? describePath(this._template, e.field) : e.field)
          : null,
        e.field ? `: ${e.message}` : e.message))));
    this.form?.markErrors(fields);
  }

  _clearErrors() {
    this._errors.hidden = true;
    this._errors.replaceChildren();
    this.form?.clearErrors();
  }

  /** @param {string} field */
  _focusField(field) {
    const control = this.el.querySelector(`[data-field="${CSS.escape(field)}"], [data-group="${CSS.escape(field)}"]`);
    if (control instanceof HTMLElement) {
      control.scrollIntoView({ block: 'center' });
      control.focus();
    }
  }
}

/**
 * @param {unknown} error
 * @returns {error is NoteError}
 */
function isNoteError(error) {
  return typeof error === 'object' && error !== null && !(error instanceof Error) && 'message' in error && 'event' in error;
}
