/**
 * The case intake form: a patient's question brought to a board.
 */

import { FormFields, select } from '../form.js';
import { getLocale, label, t } from '../i18n/index.js';
import { busy, h, pageHeader } from '../ui.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').Board} Board */
/** @typedef {import('../types.js').Case} Case */
/** @typedef {import('../types.js').ItemList<Board>} BoardList */

const SEXES = ['female', 'male', 'other', 'unknown'];
const LANGUAGES = ['zh-CN', 'en'];

/** @param {App} app */
export async function intakePage(app) {
  /** @type {BoardList} */
  const { items: boards } = await app.api.get('/boards');
  if (boards.length === 0) {
    return h('section', null, pageHeader(t('intake.title')), h('p', { class: 'empty' }, t('intake.no_boards')));
  }
  return h('section', { class: 'intake-page' }, pageHeader(t('intake.title')), intakeForm(app, boards));
}

/**
 * @param {App} app
 * @param {Board[]} boards
 */
function intakeForm(app, boards) {
  const fields = new FormFields();
  const languages = LANGUAGES.map((l) => ({ value: l, text: label('language', l) }));
  const summaryLanguage = getLocale() === 'en' ? 'en' : 'zh-CN';
  /** @param {string} testid @param {Record<string, unknown>} [attrs] */
  const input = (testid, attrs = {}) => h('input', { 'data-testid': testid, ...attrs });
  /** @param {string} testid @param {number} rows */
  const textarea = (testid, rows) => h('textarea', { 'data-testid': testid, rows: String(rows) });

  const c = {
    board: select(boards.map((b) => ({ value: String(b.id), text: b.name })), { 'data-testid': 'case-board' }),
    name: input('case-patient-name', { autocomplete: 'off' }),
    mrn: input('case-mrn', { autocomplete: 'off', spellcheck: 'false' }),
    birthDate: input('case-birth-date', { type: 'date' }),
    sex: select([{ value: '', text: '—' }, ...SEXES.map((s) => ({ value: s, text: label('sex', s) }))], { 'data-testid': 'case-sex' }),
    question: textarea('case-question', 2),
    summary: textarea('case-summary', 6),
    summaryLanguage: select(languages, { 'data-testid': 'case-summary-language', value: summaryLanguage }),
    translation: textarea('case-translation', 6),
    translationLanguage: select(languages, {
      'data-testid': 'case-translation-language', value: summaryLanguage === 'en' ? 'zh-CN' : 'en',
    }),
    translator: input('case-translator'),
    consent: select([
      { value: '', text: t('intake.consent_unknown') },
      { value: 'yes', text: t('common.yes') },
      { value: 'no', text: t('common.no') },
    ], { 'data-testid': 'case-consent' }),
    consentDate: input('case-consent-date', { type: 'date' }),
  };
  const submit = h('button', { type: 'submit', class: 'button-primary', 'data-testid': 'case-submit' }, t('intake.submit'));

  /** @param {SubmitEvent} event */
  async function onSubmit(event) {
    event.preventDefault();
    fields.clear();
    const board = boards.find((b) => String(b.id) === c.board.value);
    /** @type {Record<string, unknown>} */
    const body = {
      board_id: board?.id ?? null,
      patient: { name: c.name.value.trim(), mrn: c.mrn.value.trim(), birth_date: c.birthDate.value || null, sex: c.sex.value || null },
      clinical_question: c.question.value.trim(),
      clinical_summary: c.summary.value.trim(),
      summary_language: c.summaryLanguage.value,
    };
    if (c.translation.value.trim()) {
      body.summary_translation = c.translation.value.trim();
      body.translation_language = c.translationLanguage.value;
      body.translator = c.translator.value.trim() || null;
    }
    if (c.consent.value) body.consent_external = c.consent.value === 'yes';
    if (c.consentDate.value) body.consent_date = c.consentDate.value;
    try {
      /** @type {Case} */
      const created = await busy(submit, () => app.api.post('/cases', body));
      app.navigate(`/cases/${created.id}`);
    } catch (error) {
      fields.showError(error);
      fields.general.el.scrollIntoView({ block: 'nearest' });
    }
  }

  return h('form', { class: 'intake-form', onsubmit: onSubmit, 'data-testid': 'case-intake-form', novalidate: true },
    fields.general.el,
    h('fieldset', { class: 'panel' },
      h('legend', null, t('intake.board_section')),
      fields.field('board_id', t('intake.board'), c.board)),
    h('fieldset', { class: 'panel' },
      h('legend', null, t('intake.patient_section')),
      h('div', { class: 'grid' },
        fields.field('patient.name', t('patient.name'), c.name, { className: 'span-2' }),
        fields.field('patient.mrn', t('patient.mrn'), c.mrn),
        fields.field('patient.birth_date', t('patient.birth_date'), c.birthDate),
        fields.field('patient.sex', t('patient.sex'), c.sex))),
    h('fieldset', { class: 'panel' },
      h('legend', null, t('intake.clinical_section')),
      fields.field('clinical_question', t('case.question'), c.question),
      fields.field('clinical_summary', t('case.summary'), c.summary),
      fields.field('summary_language', t('intake.summary_language'), c.summaryLanguage)),
    h('fieldset', { class: 'panel' },
      h('legend', null, t('intake.translation_section')),
      h('p', { class: 'hint' }, t('intake.translation_hint')),
      fields.field('summary_translation', t('case.translation'), c.translation),
      h('div', { class: 'grid' },
        fields.field('translation_language', t('intake.translation_language'), c.translationLanguage),
        fields.field('translator', t('case.translator'), c.translator))),
    h('fieldset', { class: 'panel' },
      h('legend', null, t('intake.consent_section')),
      h('div', { class: 'grid' },
        fields.field('consent_external', t('case.consent_external'), c.consent),
        fields.field('consent_date', t('case.consent_date'), c.consentDate))),
    h('div', { class: 'form-actions' },
      submit,
      h('a', { href: '#/cases', class: 'button-quiet' }, t('common.cancel'))));
}
