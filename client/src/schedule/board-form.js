/**
 * The "new board" form, for coordinators and administrators.
 */

import { FormFields, select } from '../form.js';
import { label, t } from '../i18n/index.js';
import { busy, h } from '../ui.js';
import { WEEKDAYS, weeklyRule } from './recurrence.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').Board} Board */

export const TUMOR_SITES = ['thoracic', 'breast', 'colorectal', 'generic'];
export const SPECIALTIES = ['surgery', 'medical_oncology', 'radiation_oncology', 'radiology', 'pathology', 'nursing', 'other'];

/** Zones offered as suggestions; any IANA name may be typed. */
const COMMON_ZONES = [
  'America/Chicago', 'America/New_York', 'America/Denver', 'America/Los_Angeles', 'America/Toronto',
  'Asia/Shanghai', 'Asia/Hong_Kong', 'Asia/Taipei', 'Asia/Tokyo', 'Asia/Seoul', 'Asia/Singapore',
  'Asia/Kolkata', 'Europe/London', 'Europe/Paris', 'Europe/Berlin', 'Australia/Sydney', 'UTC',
];

/**
 * @param {App} app
 * @param {(board: Board) => void} onCreated
 */
export function boardForm(app, onCreated) {
  const fields = new FormFields({ rrule: 'weekday' });
  const name = h('input', { required: true, maxlength: '200', 'data-testid': 'board-name' });
  const site = select(TUMOR_SITES.map((s) => ({ value: s, text: label('tumor_site', s) })), {
    'data-testid': 'board-tumor-site', value: 'thoracic',
  });
  const zoneListId = 'board-timezone-zones';
  const zone = h('input', {
    required: true, list: zoneListId, value: 'America/Chicago', autocomplete: 'off', spellcheck: 'false',
    'data-testid': 'board-timezone',
  });
  const weekday = select(WEEKDAYS.map((d) => ({ value: d, text: label('weekday', d) })), {
    'data-testid': 'board-weekday', value: 'TU',
  });
  const startTime = h('input', { type: 'time', required: true, value: '07:30', 'data-testid': 'board-start-time' });
  const duration = h('input', {
    type: 'number', required: true, min: '5', max: '720', step: '5', value: '90', 'data-testid': 'board-duration',
  });
  const specialties = SPECIALTIES.map((s) => ({
    control: h('input', { type: 'checkbox', value: s, 'data-testid': `board-specialty-${s}` }),
    text: label('specialty', s),
  }));
  const submit = h('button', { type: 'submit', class: 'button-primary', 'data-testid': 'board-submit' }, t('board.create'));

  /** @param {SubmitEvent} event */
  async function onSubmit(event) {
    event.preventDefault();
    fields.clear();
    const body = {
      name: name.value.trim(),
      tumor_site: site.value,
      timezone: zone.value.trim(),
      rrule: weeklyRule(weekday.value),
      start_time: startTime.value,
      duration_minutes: Number(duration.value),
      required_specialties: specialties.filter((s) => s.control.checked).map((s) => s.control.value),
    };
    try {
      /** @type {Board} */
      const board = await busy(submit, () => app.api.post('/boards', body));
      onCreated(board);
    } catch (error) {
      fields.showError(error);
    }
  }

  return h('form', { class: 'panel board-form', onsubmit: onSubmit, 'data-testid': 'new-board-form', novalidate: true },
    h('h2', null, t('board.new')),
    fields.general.el,
    h('div', { class: 'grid' },
      fields.field('name', t('board.name'), name, { className: 'span-2' }),
      fields.field('tumor_site', t('board.tumor_site'), site),
      fields.field('timezone', t('board.timezone'), zone, { hint: t('board.timezone_hint') }),
      fields.field('weekday', t('board.weekday'), weekday),
      fields.field('start_time', t('board.start_time'), startTime),
      fields.field('duration_minutes', t('board.duration'), duration)),
    h('datalist', { id: zoneListId }, COMMON_ZONES.map((z) => h('option', { value: z }))),
    fields.group('required_specialties', t('board.required_specialties'), specialties),
    h('div', { class: 'form-actions' }, submit));
}
