/**
 * Who attended a case's discussion (from their media joins, filled in by the server) and whether
 * the board's required specialties were there: shown with the note and with the agreed plan.
 */

import { viewerTimeZone } from '../api.js';
import { formatDateTime, label, t } from '../i18n/index.js';
import { h } from '../ui.js';

/** @typedef {import('../types.js').Attendee} Attendee */
/** @typedef {import('../types.js').Quorum} Quorum */

/**
 * The quorum line: each required specialty, the missing ones marked.
 * @param {Quorum | null | undefined} quorum
 * @param {string} [hook] the attribute tests find it by: `data-quorum` for the note being
 *   written, another for the quorum a signed plan records
 */
export function quorumIndicator(quorum, hook = 'data-quorum') {
  const required = quorum?.required ?? [];
  const missing = quorum?.missing ?? [];
  const complete = missing.length === 0;
  return h('div', {
    class: `quorum ${complete ? 'complete' : 'incomplete'}`, [hook]: '', 'data-complete': String(complete),
    role: 'status',
  },
  h('strong', null, complete ? t('note.quorum_met') : t('note.quorum_missing')),
  required.length > 0 && h('ul', { class: 'quorum-list' }, required.map((specialty) => {
    const absent = missing.includes(specialty);
    return h('li', { class: absent ? 'missing' : 'present', 'data-specialty': specialty },
      h('span', { 'aria-hidden': 'true' }, absent ? '✗ ' : '✓ '),
      label('specialty', specialty),
      h('span', { class: 'visually-hidden' }, absent ? ` (${t('note.absent')})` : ` (${t('note.present')})`));
  })));
}

/**
 * The attendance table, times in the viewer's zone.
 * @param {Attendee[]} attendance
 */
export function attendanceTable(attendance) {
  if (attendance.length === 0) return h('p', { class: 'empty', 'data-attendance': '' }, t('note.no_attendance'));
  const zone = viewerTimeZone();
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'compact attendance', 'data-attendance': '' },
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, t('note.attendee')),
        h('th', { scope: 'col' }, t('note.specialty')),
        h('th', { scope: 'col' }, t('note.institution')),
        h('th', { scope: 'col' }, t('note.joined')),
        h('th', { scope: 'col' }, t('note.left')))),
      h('tbody', null, attendance.map((a) => h('tr', { 'data-user': a.user_id },
        h('td', null, a.name),
        h('td', null, label('specialty', a.specialty)),
        h('td', null, nameOf(a.institution)),
        h('td', null, formatDateTime(a.joined_at, zone)),
        h('td', null, a.left_at ? formatDateTime(a.left_at, zone) : t('note.still_here')))))));
}

/**
 * The name of a person or institution the server gives as a string or as an object.
 * @param {unknown} value
 */
export function nameOf(value) {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const named = /** @type {{name?: unknown, display_name?: unknown}} */ (value);
    const name = named.name ?? named.display_name;
    if (typeof name === 'string') return name;
  }
  return '—';
}
