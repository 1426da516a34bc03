/**
 * Instants shown twice, in the viewer's zone and in the board's zone, since a cross-border
 * board's members never share a wall clock.
 */

import { formatDateTime, formatTime, t } from '../i18n/index.js';
import { h } from '../ui.js';

/** @typedef {import('../types.js').TimeTriple} TimeTriple */
/** @typedef {import('../types.js').Session} Session */

/**
 * The instant in the viewer's zone.
 * @param {TimeTriple} time
 */
export function viewerTime(time) {
  return formatDateTime(time.viewer, time.viewer_tz);
}

/**
 * The instant in the board's zone.
 * @param {TimeTriple} time
 */
export function boardTime(time) {
  return formatDateTime(time.board, time.board_tz);
}

/**
 * A `<time>` element for one side of a triple.
 * @param {TimeTriple} time
 * @param {'viewer' | 'board'} side
 * @param {string} [testid]
 */
export function timeElement(time, side, testid) {
  return h('time', { datetime: time.utc, 'data-testid': testid ?? null },
    side === 'viewer' ? viewerTime(time) : boardTime(time));
}

/**
 * The time of day only, followed by the zone's city ("9:30 PM Shanghai"); the full date and
 * time show on hover. For lists within one session, where the date is known.
 * @param {TimeTriple} time
 * @param {'viewer' | 'board'} side
 * @param {string} [testid]
 */
export function shortTimeElement(time, side, testid) {
  const [iso, zone] = side === 'viewer' ? [time.viewer, time.viewer_tz] : [time.board, time.board_tz];
  return h('time', { datetime: time.utc, title: `${formatDateTime(iso, zone)} (${zone})`, 'data-testid': testid ?? null },
    `${formatTime(iso, zone)} ${zoneCity(zone)}`);
}

/**
 * "America/Los_Angeles" → "Los Angeles".
 * @param {string} zone
 */
export function zoneCity(zone) {
  return (zone.split('/').pop() ?? zone).replace(/_/g, ' ');
}

/**
 * Both sides of a triple, labelled with their zones; for places without table columns.
 * @param {TimeTriple} time
 * @param {{viewerTestid?: string, boardTestid?: string}} [testids]
 */
export function bothZones(time, { viewerTestid, boardTestid } = {}) {
  return h('dl', { class: 'zones' },
    h('div', null,
      h('dt', null, t('time.yours', { zone: time.viewer_tz })),
      h('dd', null, timeElement(time, 'viewer', viewerTestid))),
    h('div', null,
      h('dt', null, t('time.board', { zone: time.board_tz })),
      h('dd', null, timeElement(time, 'board', boardTestid))));
}

/**
 * A session's length in minutes.
 * @param {Session} session
 */
export function sessionMinutes(session) {
  return Math.round((Date.parse(session.end.utc) - Date.parse(session.start.utc)) / 60000);
}

/**
 * Whether a session is still to come (or running).
 * @param {Session} session
 * @param {number} [now]
 */
export function isUpcoming(session, now = Date.now()) {
  return Date.parse(session.end.utc) >= now;
}
