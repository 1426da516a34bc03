/**
 * A board's recurrence: the RFC 5545 rule the server stores, and how people read it.
 */

import { formatList, label, t } from '../i18n/index.js';

/** @typedef {import('../types.js').Board} Board */

/** RFC 5545 weekday codes, Monday first. */
export const WEEKDAYS = ['MO', 'TU', 'WE', 'TH', 'FR', 'SA', 'SU'];

/**
 * The rule for one meeting a week on `weekday`.
 * @param {string} weekday one of WEEKDAYS
 */
export function weeklyRule(weekday) {
  return `FREQ=WEEKLY;BYDAY=${weekday}`;
}

/**
 * The rule's parts, e.g. {FREQ: "WEEKLY", BYDAY: "TU"}.
 * @param {string} rrule
 * @returns {Record<string, string>}
 */
export function ruleParts(rrule) {
  /** @type {Record<string, string>} */
  const parts = {};
  for (const part of rrule.replace(/^RRULE:/i, '').split(';')) {
    const [key, value] = part.split('=');
    if (key && value) parts[key.toUpperCase()] = value.toUpperCase();
  }
  return parts;
}

/**
 * "Weekly on Tuesday at 07:30" (board time), or the raw rule when it is not a simple one.
 * @param {Board} board
 */
export function describeRecurrence(board) {
  const parts = ruleParts(board.rrule);
  const days = (parts.BYDAY ?? '').split(',').filter((day) => WEEKDAYS.includes(day));
  const simple = parts.FREQ === 'WEEKLY' && days.length > 0 && Object.keys(parts).every((k) => ['FREQ', 'BYDAY', 'WKST'].includes(k));
  if (!simple) return `${board.rrule} · ${board.start_time}`;
  const dayNames = formatList(days.map((day) => label('weekday', day)));
  return t('recurrence.weekly', { days: dayNames, time: board.start_time });
}
