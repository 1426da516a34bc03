/**
 * A case's imaging studies (references to studies in the imaging store), the form to add one, and
 * the stored images in the viewer.
 */

import { FormFields } from '../form.js';
import { formatDate, t } from '../i18n/index.js';
import { busy, h } from '../ui.js';
import { imagingPanel } from './imaging.js';

/** @typedef {import('../types.js').Case} Case */
/** @typedef {import('../types.js').Study} Study */
/** @typedef {import('./page.js').CaseContext} CaseContext */

const MODALITIES = ['CT', 'MR', 'PT', 'CR', 'DX', 'MG', 'US', 'NM', 'SM', 'OT'];

/**
 * @param {CaseContext} context
 * @param {Case} c
 */
export function studiesSection(context, c) {
  return h('section', { class: 'panel studies', 'aria-labelledby': 'studies-heading' },
    h('h2', { id: 'studies-heading' }, t('studies.title')),
    c.studies.length === 0
      ? h('p', { class: 'empty' }, t('studies.empty'))
      : h('table', { class: 'compact' },
        h('thead', null, h('tr', null,
          h('th', { scope: 'col' }, t('studies.date')),
          h('th', { scope: 'col' }, t('studies.modality')),
          h('th', { scope: 'col' }, t('studies.description')),
          h('th', { scope: 'col' }, t('studies.uid')))),
        h('tbody', null, c.studies.map(studyRow))),
    context.app.may('author') && studyForm(context, c),
    imagingPanel(context.app, c.id));
}

/** @param {Study} s */
function studyRow(s) {
  return h('tr', { 'data-testid': 'study-item' },
    h('td', null, formatDate(s.study_date)),
    h('td', null, s.modality),
    h('td', null, s.description),
    h('td', { class: 'uid' }, s.study_instance_uid));
}

/**
 * @param {CaseContext} context
 * @param {Case} c
 */
function studyForm(context, c) {
  const fields = new FormFields();
  const uid = h('input', { 'data-testid': 'study-uid', spellcheck: 'false', autocomplete: 'off', placeholder: '1.2.840.…' });
  const description = h('input', { 'data-testid': 'study-description' });
  const modality = h('input', { 'data-testid': 'study-modality', list: 'study-modalities', value: 'CT', maxlength: '16' });
  const date = h('input', { type: 'date', 'data-testid': 'study-date' });
  const submit = h('button', { type: 'submit', class: 'button-primary', 'data-testid': 'study-submit' }, t('studies.add'));

  /** @param {SubmitEvent} event */
  async function onSubmit(event) {
    event.preventDefault();
    fields.clear();
    const body = {
      study_instance_uid: uid.value.trim(),
      description: description.value.trim(),
      modality: modality.value.trim().toUpperCase(),
      study_date: date.value || null,
    };
    try {
      await busy(submit, () => context.app.api.post(`/cases/${c.id}/studies`, body));
      await context.reload();
    } catch (error) {
      fields.showError(error);
    }
  }

  return h('details', { class: 'add-study' },
    h('summary', { 'data-testid': 'study-add-toggle' }, t('studies.add_reference')),
    h('form', { onsubmit: onSubmit, 'data-testid': 'study-form', novalidate: true },
      fields.general.el,
      h('div', { class: 'grid' },
        fields.field('study_instance_uid', t('studies.uid'), uid, { className: 'span-2' }),
        fields.field('description', t('studies.description'), description, { className: 'span-2' }),
        fields.field('modality', t('studies.modality'), modality),
        fields.field('study_date', t('studies.date'), date)),
      h('datalist', { id: 'study-modalities' }, MODALITIES.map((m) => h('option', { value: m }))),
      h('div', { class: 'form-actions' }, submit)));
}
