/**
 * One row of a session's agenda: a case with its time-box, lane and planned start.
 */

import { select } from '../form.js';
import { label, t } from '../i18n/index.js';
import { h } from '../ui.js';
import { shortTimeElement } from './times.js';

/** @typedef {import('../types.js').AgendaItem} AgendaItem */
/** @typedef {import('../types.js').Lane} Lane */

export const LANES = /** @type {Lane[]} */ (['discussion', 'standard_of_care']);

/**
 * What a row can ask its editor to do.
 * @typedef {object} ItemActions
 * @property {(item: AgendaItem, delta: number) => void} move up (-1) or down (+1)
 * @property {(item: AgendaItem, change: {timebox_minutes?: number, lane?: Lane}) => void} update
 * @property {(item: AgendaItem) => void} remove
 */

/**
 * @param {AgendaItem} item
 * @param {number} index
 * @param {number} count how many items the agenda has
 * @param {ItemActions | null} actions null when the viewer may not edit the agenda
 */
export function agendaItemRow(item, index, count, actions) {
  const caseLink = h('a', { href: `#/cases/${item.case_id}`, class: 'case-number' }, item.case_number);
  return h('li', {
    class: 'agenda-item',
    'data-testid': 'agenda-item',
    'data-item-id': item.id,
    'data-case-number': item.case_number,
    draggable: actions ? 'true' : null,
  },
  actions && h('span', { class: 'handle', title: t('agenda.drag_hint'), 'aria-hidden': 'true' }, '⠿'),
  h('span', { class: 'position' }, String(index + 1)),
  h('div', { class: 'item-case' },
    caseLink,
    h('p', { class: 'question' }, item.clinical_question)),
  h('div', { class: 'item-start' },
    h('span', { class: 'item-label' }, t('agenda.planned_start')),
    item.planned_start
      ? [
        h('span', null, shortTimeElement(item.planned_start, 'viewer', 'agenda-start-viewer')),
        h('span', { class: 'secondary' }, shortTimeElement(item.planned_start, 'board', 'agenda-start-board')),
      ]
      : h('span', { class: 'secondary', 'data-testid': 'agenda-start-none' }, t('agenda.not_timed'))),
  actions ? editControls(item, index, count, actions) : readOnly(item));
}

/** @param {AgendaItem} item */
function readOnly(item) {
  return h('div', { class: 'item-settings' },
    h('span', { class: 'tag' }, label('lane', item.lane)),
    h('span', null, t('common.minutes', { count: item.timebox_minutes })));
}

/**
 * @param {AgendaItem} item
 * @param {number} index
 * @param {number} count
 * @param {ItemActions} actions
 */
function editControls(item, index, count, actions) {
  const timebox = h('input', {
    type: 'number', min: '1', max: '240', step: '1', value: String(item.timebox_minutes),
    class: 'timebox', 'data-testid': 'agenda-timebox',
    'aria-label': t('agenda.timebox_for', { case: item.case_number }),
    onchange: () => {
      const minutes = Math.round(Number(timebox.value));
      if (minutes > 0 && minutes !== item.timebox_minutes) actions.update(item, { timebox_minutes: minutes });
    },
  });
  const lane = select(LANES.map((l) => ({ value: l, text: label('lane', l) })), {
    value: item.lane, 'data-testid': 'agenda-lane', 'aria-label': t('agenda.lane_for', { case: item.case_number }),
    onchange: () => actions.update(item, { lane: /** @type {Lane} */ (lane.value) }),
  });
  return h('div', { class: 'item-settings' },
    lane,
    h('label', { class: 'inline' }, timebox, h('span', null, t('agenda.minutes_short'))),
    h('div', { class: 'item-buttons' },
      h('button', {
        type: 'button', class: 'icon-button', 'data-testid': 'agenda-up', 'data-focus': `up-${item.id}`,
        disabled: index === 0, 'aria-label': t('agenda.move_up', { case: item.case_number }),
        onclick: () => actions.move(item, -1),
      }, '↑'),
      h('button', {
        type: 'button', class: 'icon-button', 'data-testid': 'agenda-down', 'data-focus': `down-${item.id}`,
        disabled: index === count - 1, 'aria-label': t('agenda.move_down', { case: item.case_number }),
        onclick: () => actions.move(item, +1),
      }, '↓'),
      h('button', {
        type: 'button', class: 'button-quiet danger', 'data-testid': 'agenda-remove',
        'aria-label': t('agenda.remove_case', { case: item.case_number }),
        onclick: () => actions.remove(item),
      }, t('agenda.remove'))));
}
