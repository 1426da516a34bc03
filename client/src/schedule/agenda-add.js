/**
 * The "add case" control of the agenda editor: a ready case of the board, its time-box and lane.
 */

import { select } from '../form.js';
import { label, t } from '../i18n/index.js';
import { h } from '../ui.js';
import { LANES } from './agenda-item.js';

/** @typedef {import('../types.js').CaseSummary} CaseSummary */
/** @typedef {import('../types.js').Lane} Lane */

/**
 * @typedef {object} NewAgendaItem
 * @property {number} case_id
 * @property {number} timebox_minutes
 * @property {Lane} lane
 */

/**
 * @param {CaseSummary[]} cases ready cases of the board not yet on the agenda
 * @param {(item: NewAgendaItem) => Promise<void>} onAdd
 */
export function agendaAddForm(cases, onAdd) {
  const caseSelect = h('select', { id: 'agenda-add-case', 'data-testid': 'agenda-add-case', disabled: cases.length === 0 },
    cases.length === 0
      ? h('option', { value: '' }, t('agenda.no_ready_cases'))
      : cases.map((c) => h('option', { value: String(c.id) }, `${c.number} — ${c.clinical_question}`)));
  const timebox = h('input', {
    id: 'agenda-add-timebox', type: 'number', min: '1', max: '240', step: '1', value: '10',
    'data-testid': 'agenda-add-timebox',
  });
  const lane = select(LANES.map((l) => ({ value: l, text: label('lane', l) })), {
    id: 'agenda-add-lane', 'data-testid': 'agenda-add-lane', value: 'discussion',
  });
  const submit = h('button', {
    type: 'submit', class: 'button-primary', 'data-testid': 'agenda-add-submit', disabled: cases.length === 0,
  }, t('agenda.add'));

  /** @param {SubmitEvent} event */
  async function onSubmit(event) {
    event.preventDefault();
    const chosen = cases.find((c) => String(c.id) === caseSelect.value);
    if (!chosen) return;
    submit.disabled = true;
    try {
      await onAdd({ case_id: chosen.id, timebox_minutes: Math.round(Number(timebox.value)), lane: /** @type {Lane} */ (lane.value) });
    } finally {
      submit.disabled = false;
    }
  }

  return h('form', { class: 'panel agenda-add', onsubmit: onSubmit, 'data-testid': 'agenda-add-form' },
    h('h2', null, t('agenda.add_case')),
    h('div', { class: 'inline-fields' },
      h('div', { class: 'field grow' }, h('label', { for: 'agenda-add-case' }, t('agenda.case')), caseSelect),
      h('div', { class: 'field' }, h('label', { for: 'agenda-add-timebox' }, t('agenda.timebox')), timebox),
      h('div', { class: 'field' }, h('label', { for: 'agenda-add-lane' }, t('agenda.lane')), lane),
      h('div', { class: 'field' }, submit)));
}
