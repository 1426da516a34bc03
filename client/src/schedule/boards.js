/**
 * The boards page: the boards the user belongs to, each with its next session.
 */

import { label, t } from '../i18n/index.js';
import { h, pageHeader } from '../ui.js';
import { boardForm } from './board-form.js';
import { describeRecurrence } from './recurrence.js';
import { bothZones } from './times.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').Board} Board */
/** @typedef {import('../types.js').ItemList<Board>} BoardList */

/** @param {App} app */
export async function boardsPage(app) {
  /** @type {BoardList} */
  const { items: boards } = await app.api.get('/boards');
  return h('section', { class: 'boards-page' },
    pageHeader(t('boards.title'),
      h('a', { class: 'button-quiet', href: app.api.url('/me/calendar.ics'), download: 'eboard.ics', 'data-testid': 'my-calendar-ics' },
        t('boards.my_calendar'))),
    boards.length === 0
      ? h('p', { class: 'empty' }, t('boards.empty'))
      : h('ul', { class: 'board-list' }, boards.map(boardRow)),
    app.may('schedule') && boardForm(app, (board) => app.navigate(`/boards/${board.id}`)));
}

/** @param {Board} board */
function boardRow(board) {
  const next = board.next_session;
  return h('li', { class: 'board-row', 'data-testid': 'board-row', 'data-board-id': board.id },
    h('div', { class: 'board-main' },
      h('h2', null, h('a', { href: `#/boards/${board.id}`, 'data-testid': 'board-link' }, board.name)),
      h('p', { class: 'meta' },
        h('span', { class: 'tag' }, label('tumor_site', board.tumor_site)),
        ' ',
        h('span', { 'data-testid': 'board-row-timezone' }, board.timezone),
        ' · ',
        describeRecurrence(board))),
    h('div', { class: 'board-next' },
      h('h3', null, t('boards.next_session')),
      next
        ? [
          bothZones(next.start, { viewerTestid: 'board-next-viewer', boardTestid: 'board-next-board' }),
          h('a', { href: `#/sessions/${next.id}`, 'data-testid': 'board-next-session' },
            t('boards.open_agenda', { count: next.agenda_count })),
        ]
        : h('p', { class: 'empty' }, t('boards.no_next_session'))));
}
