/**
 * A board's calendar: its upcoming sessions, each in the viewer's zone and the board's zone.
 */

import { viewerTimeZone } from '../api.js';
import { formatList, label, t } from '../i18n/index.js';
import { h, pageHeader } from '../ui.js';
import { inviteForm } from './invite-form.js';
import { describeRecurrence } from './recurrence.js';
import { isUpcoming, timeElement } from './times.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').Board} Board */
/** @typedef {import('../types.js').Session} Session */
/** @typedef {import('../types.js').ItemList<Session>} SessionList */
/** @typedef {import('../types.js').ItemList<import('../types.js').Institution>} InstitutionList */

/**
 * @param {App} app
 * @param {Record<string, string>} params
 */
export async function calendarPage(app, { id }) {
  /** @type {[Board, SessionList, InstitutionList | null]} */
  const [board, { items }, institutions] = await Promise.all([
    app.api.get(`/boards/${id}`),
    app.api.get(`/boards/${id}/sessions`),
    app.may('schedule') ? app.api.get('/institutions') : null,
  ]);
  const sessions = items.filter((session) => isUpcoming(session));
  return h('section', { class: 'calendar-page' },
    h('p', { class: 'breadcrumb' }, h('a', { href: '#/boards' }, t('nav.boards'))),
    pageHeader(board.name),
    boardFacts(board),
    h('h2', null, t('calendar.upcoming')),
    sessions.length === 0
      ? h('p', { class: 'empty' }, t('calendar.empty'))
      : sessionTable(app, board, sessions),
    institutions && inviteForm(app, board, institutions.items));
}

/** @param {Board} board */
function boardFacts(board) {
  return h('dl', { class: 'facts' },
    fact(t('board.tumor_site'), label('tumor_site', board.tumor_site)),
    fact(t('board.timezone'), board.timezone),
    fact(t('calendar.recurrence'), describeRecurrence(board)),
    fact(t('calendar.length'), t('common.minutes', { count: board.duration_minutes })),
    fact(t('board.required_specialties'),
      formatList(board.required_specialties.map((s) => label('specialty', s))) || '—'),
    fact(t('calendar.members'), String(board.members.length)));
}

/**
 * @param {string} term
 * @param {string} value
 */
function fact(term, value) {
  return h('div', null, h('dt', null, term), h('dd', null, value));
}

/**
 * @param {App} app
 * @param {Board} board
 * @param {Session[]} sessions
 */
function sessionTable(app, board, sessions) {
  const viewerZone = sessions[0]?.start.viewer_tz ?? viewerTimeZone();
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'sessions', 'data-testid': 'session-table' },
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, t('time.yours', { zone: viewerZone })),
        h('th', { scope: 'col' }, t('time.board', { zone: board.timezone })),
        h('th', { scope: 'col' }, t('calendar.status')),
        h('th', { scope: 'col', class: 'num' }, t('calendar.agenda_count')),
        h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, t('calendar.actions'))))),
      h('tbody', null, sessions.map((session) => sessionRow(app, session)))));
}

/**
 * @param {App} app
 * @param {Session} session
 */
function sessionRow(app, session) {
  return h('tr', { 'data-testid': 'session-row', 'data-session-id': session.id, class: `status-${session.status}` },
    h('td', null, timeElement(session.start, 'viewer', 'session-viewer-time')),
    h('td', null, timeElement(session.start, 'board', 'session-board-time')),
    h('td', null, h('span', { class: `badge status-${session.status}` }, label('session_status', session.status))),
    h('td', { class: 'num' }, String(session.agenda_count)),
    h('td', null, h('div', { class: 'row-actions' },
      h('a', { href: `#/sessions/${session.id}`, 'data-testid': 'session-link' }, t('calendar.open')),
      icsLink(app, session))));
}

/**
 * A download link for one session's iCalendar file.
 * @param {App} app
 * @param {Session} session
 * @param {{asButton?: boolean}} [options] a labelled button rather than a short link in a table
 */
export function icsLink(app, session, { asButton = false } = {}) {
  return h('a', {
    href: app.api.url(`/sessions/${session.id}/calendar.ics`),
    download: `eboard-session-${session.id}.ics`,
    'data-testid': 'session-ics',
    class: asButton ? 'button-quiet' : 'ics',
    title: t('calendar.ics_title'),
  }, asButton ? t('calendar.ics_button') : t('calendar.ics'));
}
