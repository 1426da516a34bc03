/**
 * The session page: when the session is, in both zones, and the editor of its agenda.
 */

import { label, t } from '../i18n/index.js';
import { ErrorSlot, h, mount, pageHeader } from '../ui.js';
import { agendaAddForm } from './agenda-add.js';
import { agendaItemRow } from './agenda-item.js';
import { icsLink } from './calendar.js';
import { bothZones, sessionMinutes } from './times.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').Session} Session */
/** @typedef {import('../types.js').Agenda} Agenda */
/** @typedef {import('../types.js').AgendaItem} AgendaItem */
/** @typedef {import('../types.js').CaseSummary} CaseSummary */
/** @typedef {import('../types.js').ItemList<CaseSummary>} CaseList */
/** @typedef {import('./agenda-item.js').ItemActions} ItemActions */
/** @typedef {import('./agenda-add.js').NewAgendaItem} NewAgendaItem */

/**
 * @param {App} app
 * @param {Record<string, string>} params
 */
export async function sessionPage(app, { id }) {
  /** @type {Session} */
  const session = await app.api.get(`/sessions/${id}`);
  const editor = new AgendaEditor(app, session, app.may('schedule'));
  await editor.load();
  return h('section', { class: 'session-page' },
    h('p', { class: 'breadcrumb' },
      h('a', { href: '#/boards' }, t('nav.boards')), ' › ',
      h('a', { href: `#/boards/${session.board_id}` }, session.board_name)),
    pageHeader(t('session.title', { board: session.board_name }),
      joinable(session) && h('a', { href: `#/sessions/${session.id}/room`, class: 'button-primary', 'data-testid': 'join-room' }, t('session.join_room')),
      icsLink(app, session, { asButton: true })),
    h('div', { class: 'session-facts' },
      bothZones(session.start, { viewerTestid: 'session-viewer-time', boardTestid: 'session-board-time' }),
      h('p', null,
        h('span', { class: `badge status-${session.status}`, 'data-testid': 'session-status' }, label('session_status', session.status)),
        ' ', t('common.minutes', { count: sessionMinutes(session) }))),
    editor.el);
}

/**
 * Whether the session's live room is open to join: scheduled and not over yet (the server
 * decides; this only hides a link that would be refused).
 * @param {Session} session
 */
function joinable(session) {
  return session.status === 'scheduled' && Date.parse(session.end.utc) > Date.now();
}

/** Shows a session's agenda and sends the user's changes to the server. */
class AgendaEditor {
  /**
   * @param {App} app
   * @param {Session} session
   * @param {boolean} editable
   */
  constructor(app, session, editable) {
    this._app = app;
    this._session = session;
    this._editable = editable;
    /** @type {Agenda} */
    this._agenda = { items: [], total_minutes: 0 };
    /** @type {CaseSummary[]} */
    this._readyCases = [];
    /** The control to focus after the next render (e.g. the arrow just pressed). */
    this._focus = '';
    /** @type {number | null} the item being dragged */
    this._dragged = null;
    this._errors = new ErrorSlot();
    this._body = h('div', { class: 'agenda-body' });
    this.el = h('section', { class: 'agenda', 'aria-labelledby': 'agenda-heading' },
      h('h2', { id: 'agenda-heading' }, t('agenda.title')), this._errors.el, this._body);
    /** @type {ItemActions} */
    this._actions = {
      move: (item, delta) => void this._move(item, delta),
      update: (item, change) => void this._change(() => this._app.api.patch(`/agenda-items/${item.id}`, change)),
      remove: (item) => void this._change(() => this._app.api.delete(`/agenda-items/${item.id}`)),
    };
  }

  async load() {
    const sessionPath = `/sessions/${this._session.id}`;
    /** @type {[Agenda, CaseList | null]} */
    const [agenda, cases] = await Promise.all([
      this._app.api.get(`${sessionPath}/agenda`),
      this._editable ? this._app.api.get('/cases', { board_id: this._session.board_id, state: 'ready' }) : null,
    ]);
    this._agenda = agenda;
    const placed = new Set(agenda.items.map((item) => String(item.case_id)));
    this._readyCases = (cases?.items ?? []).filter((c) => !placed.has(String(c.id)));
    this._render();
  }

  _render() {
    const items = this._agenda.items;
    const list = h('ol', { class: 'agenda-list', 'data-testid': 'agenda-list' },
      items.map((item, index) => agendaItemRow(item, index, items.length, this._editable ? this._actions : null)));
    if (this._editable) this._enableDragging(list);
    mount(this._body,
      this._summary(),
      items.length === 0 ? h('p', { class: 'empty' }, t('agenda.empty')) : list,
      this._editable && agendaAddForm(this._readyCases, (item) => this._add(item)));
    this._restoreFocus();
  }

  _summary() {
    const length = this._agenda.session_minutes ?? sessionMinutes(this._session);
    const total = this._agenda.total_minutes;
    const over = total > length;
    return h('div', { class: `agenda-total${over ? ' over' : ''}`, 'data-testid': 'agenda-total' },
      h('meter', { min: '0', max: String(length), value: String(Math.min(total, length)), 'aria-hidden': 'true' }),
      h('span', null, t('agenda.total', { total, length })),
      over && h('strong', { class: 'warning' }, ' ', t('agenda.over', { minutes: total - length })));
  }

  /**
   * @param {AgendaItem} item
   * @param {number} delta
   */
  async _move(item, delta) {
    const ids = this._agenda.items.map((i) => i.id);
    const from = ids.indexOf(item.id);
    const to = from + delta;
    if (from < 0 || to < 0 || to >= ids.length) return;
    ids.splice(from, 1);
    ids.splice(to, 0, item.id);
    this._focus = `${delta < 0 ? 'up' : 'down'}-${item.id}`;
    await this._reorder(ids);
  }

  /** @param {number[]} ids */
  async _reorder(ids) {
    await this._change(() => this._app.api.put(`/sessions/${this._session.id}/agenda/order`, { item_ids: ids }));
  }

  /** @param {NewAgendaItem} item */
  async _add(item) {
    this._focus = 'add';
    await this._change(() => this._app.api.post(`/sessions/${this._session.id}/agenda`, item));
  }

  /**
   * Send one change, then show the agenda as the server now has it (planned starts move).
   * @param {() => Promise<unknown>} request
   */
  async _change(request) {
    this._errors.clear();
    try {
      await request();
    } catch (error) {
      this._errors.show(error);
    }
    try {
      await this.load();
    } catch (error) {
      this._errors.show(error);
    }
  }

  /**
   * HTML5 drag and drop: a row dropped on another takes its place.
   * @param {HTMLOListElement} list
   */
  _enableDragging(list) {
    /** @param {Event} event */
    const rowOf = (event) => /** @type {HTMLElement | null} */ (event.target instanceof Element ? event.target.closest('.agenda-item') : null);
    list.addEventListener('dragstart', (event) => {
      const row = rowOf(event);
      if (!row || !event.dataTransfer) return;
      this._dragged = Number(row.dataset.itemId);
      event.dataTransfer.effectAllowed = 'move';
      event.dataTransfer.setData('text/plain', row.dataset.caseNumber ?? '');
      row.classList.add('dragging');
    });
    list.addEventListener('dragover', (event) => {
      if (this._dragged === null || !rowOf(event)) return;
      event.preventDefault(); // allows the drop
      if (event.dataTransfer) event.dataTransfer.dropEffect = 'move';
      for (const row of list.querySelectorAll('.drop-target')) row.classList.remove('drop-target');
      rowOf(event)?.classList.add('drop-target');
    });
    list.addEventListener('dragend', () => {
      this._dragged = null;
      for (const row of list.querySelectorAll('.dragging, .drop-target')) row.classList.remove('dragging', 'drop-target');
    });
    list.addEventListener('drop', (event) => {
      const target = rowOf(event);
      const dragged = this._dragged;
      this._dragged = null;
      if (!target || dragged === null) return;
      event.preventDefault();
      const ids = this._agenda.items.map((i) => i.id);
      const from = ids.findIndex((i) => String(i) === String(dragged));
      const to = ids.findIndex((i) => String(i) === target.dataset.itemId);
      if (from < 0 || to < 0 || from === to) return;
      const [moved] = ids.splice(from, 1);
      ids.splice(to, 0, moved); // dragged down it lands after the target, dragged up before it
      void this._reorder(ids);
    });
  }

  _restoreFocus() {
    if (!this._focus) return;
    const key = this._focus;
    this._focus = '';
    const target = key === 'add'
      ? this._body.querySelector('[data-testid="agenda-add-case"]')
      : this._body.querySelector(`[data-focus="${key}"]`);
    if (target instanceof HTMLButtonElement && target.disabled) {
      // at the top or bottom now: keep focus on the same row's other arrow
      const other = key.startsWith('up-') ? key.replace('up-', 'down-') : key.replace('down-', 'up-');
      /** @type {HTMLElement | null} */ (this._body.querySelector(`[data-focus="${other}"]`))?.focus();
    } else if (target instanceof HTMLElement) {
      target.focus();
    }
  }
}
