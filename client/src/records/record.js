/**
 * One agreed plan opened from the records search: its export in each format, and the plan itself
 * as the case page shows it (without amending: that is the chair's, on the case page).
 */

import { FormFields, select } from '../form.js';
import { t } from '../i18n/index.js';
import { AgreedPlan } from '../notes/plan.js';
import { busy, errorBox, h, mount } from '../ui.js';
import { saveFile } from './download.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../notes/template.js').Templates} Templates */
/** @typedef {import('../types.js').ExportFormat} ExportFormat */
/** @typedef {import('../types.js').Plan} Plan */
/** @typedef {import('../types.js').RecordItem} RecordItem */

/** @type {ExportFormat[]} */
export const FORMATS = ['pdf', 'fhir', 'hl7', 'json'];

/** @type {Record<ExportFormat, import('../i18n/index.js').MessageKey>} */
const EXPORT_LABELS = { pdf: 'export.pdf', fhir: 'export.fhir', hl7: 'export.hl7', json: 'export.json' };

export class RecordPanel {
  /**
   * @param {App} app
   * @param {Templates} templates
   */
  constructor(app, templates) {
    this._app = app;
    this._templates = templates;
    this._opened = 0;
    this._heading = h('h2', { id: 'record-heading', tabindex: '-1' });
    this._body = h('div', { class: 'record-body' });
    this.el = h('section', { class: 'panel records-record', 'aria-labelledby': 'record-heading', 'data-testid': 'record', hidden: true },
      h('div', { class: 'note-head' },
        this._heading,
        h('button', { type: 'button', class: 'button-quiet', onclick: () => this.close() }, t('records.close'))),
      this._body);
  }

  /**
   * Show the plan of `item`, and move the focus to it; a later open overtakes an earlier one.
   * @param {RecordItem} item
   */
  async open(item) {
    const opened = ++this._opened;
    this.el.hidden = false;
    mount(this._heading, t('records.record_title', { case: item.case_number, board: item.board_name }));
    mount(this._body, h('p', { class: 'loading' }, t('common.loading')));
    this._heading.focus();
    /** @type {import('../ui.js').Child} */
    let content;
    try {
      /** @type {Plan} */
      const plan = await this._app.api.get(`/cases/${item.case_id}/plan`);
      content = [
        exportControls(this._app, item),
        new AgreedPlan({
          api: this._app.api,
          caseId: item.case_id,
          plan,
          templates: this._templates,
          canAmend: false,
          canFollowUp: this._app.may('schedule'),
          onAmend: () => {},
        }).el,
      ];
    } catch (error) {
      content = errorBox(error);
    }
    if (opened === this._opened) mount(this._body, content);
  }

  close() {
    this._opened += 1;
    this.el.hidden = true;
    this._body.replaceChildren();
  }
}

/** The PDF's languages: both side by side, or one. */
export function languageSelect() {
  return select([
    { value: 'both', text: t('export.language_both') },
    { value: 'en', text: t('language.en') },
    { value: 'zh-CN', text: t('language.zh-CN') },
  ]);
}

/** Home (with the patient's identifiers) or external (the case number only). */
export function audienceSelect() {
  return select([
    { value: 'home', text: t('export.audience_home') },
    { value: 'external', text: t('export.audience_external') },
  ]);
}

/**
 * The export of one plan: language and audience, then one button per format.
 * @param {App} app
 * @param {RecordItem} item
 */
function exportControls(app, item) {
  const fields = new FormFields();
  const language = languageSelect();
  const audience = audienceSelect();
  const status = h('p', { class: 'status', role: 'status', 'data-testid': 'export-status' });

  /**
   * @param {HTMLButtonElement} button
   * @param {ExportFormat} format
   */
  async function download(button, format) {
    fields.clear();
    status.replaceChildren();
    try {
      const file = await busy(button, () => app.api.file(`/cases/${item.case_id}/plan/export`, {
        format, language: language.value, audience: audience.value,
      }));
      saveFile(file);
      mount(status, t('export.downloaded', { name: file.filename }));
    } catch (error) {
      fields.showError(error);
    }
  }

  return h('fieldset', { class: 'panel record-export', 'data-testid': 'record-export' },
    h('legend', null, t('export.title')),
    fields.general.el,
    h('div', { class: 'inline-fields' },
      fields.field('language', t('export.language'), language, { hint: t('export.language_hint') }),
      fields.field('audience', t('export.audience'), audience)),
    h('div', { class: 'export-buttons' }, FORMATS.map((format) => {
      const button = h('button', { type: 'button', class: 'button-quiet', 'data-export-format': format },
        t(EXPORT_LABELS[format]));
      button.addEventListener('click', () => void download(button, format));
      return button;
    })),
    status);
}
