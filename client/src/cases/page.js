/**
 * The case page: the patient, the question, the readiness checklist and what can be done next.
 */

import { viewerTimeZone } from '../api.js';
import { formatDate, formatDateTime, label, t } from '../i18n/index.js';
import { ErrorSlot, h, mount } from '../ui.js';
import { attachmentsSection } from './attachments.js';
import { noteSection } from './note.js';
import { opinionsSection } from './opinions.js';
import { readyBadge, stateBadge } from './state.js';
import { studiesSection } from './studies.js';
import { transitionsBar } from './transitions.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').Case} Case */

/**
 * What a section of the case page gets to work with.
 * @typedef {object} CaseContext
 * @property {App} app
 * @property {ErrorSlot} errors the page's error slot
 * @property {() => Promise<void>} reload fetch the case again and show it
 * @property {(c: Case) => void} show show a case the server returned
 */

/**
 * @param {App} app
 * @param {Record<string, string>} params
 */
export async function casePage(app, { id }) {
  /** @type {Case} */
  const initial = await app.api.get(`/cases/${id}`);
  const errors = new ErrorSlot();
  const body = h('div', { class: 'case-body' });

  /** Fetch the case again after a change made elsewhere on the page. */
  async function reload() {
    errors.clear();
    try {
      show(await app.api.get(`/cases/${id}`));
    } catch (error) {
      errors.show(error);
    }
  }

  /** @param {Case} c */
  function show(c) {
    /** @type {CaseContext} */
    const context = { app, errors, reload, show };
    mount(body,
      h('div', { class: 'page-header' },
        h('h1', null, h('span', { 'data-testid': 'case-number' }, c.number), ' ', stateBadge(c.state)),
        readyBadge(c.readiness.ready)),
      transitionsBar(context, c),
      h('div', { class: 'case-columns' },
        h('div', { class: 'case-main' },
          clinicalSection(c),
          attachmentsSection(context, c),
          studiesSection(context, c)),
        h('aside', { class: 'case-side' },
          patientSection(c),
          readinessSection(c))));
  }

  show(initial);
  return h('article', { class: 'case-page' },
    h('p', { class: 'breadcrumb' }, h('a', { href: '#/cases' }, t('nav.cases'))),
    errors.el,
    body,
    // The note and opinions live outside the re-rendered part, so what is being written
    // survives other changes on the page.
    noteSection(app, initial.id, () => void reload()),
    opinionsSection(app, initial.id));
}

/** @param {Case} c */
function patientSection(c) {
  const p = c.patient;
  return h('section', { class: 'panel patient', 'data-testid': 'case-patient' },
    h('h2', null, t('case.patient')),
    c.deidentified && h('p', { class: 'notice', 'data-testid': 'case-deidentified' }, t('case.deidentified')),
    h('dl', { class: 'facts' },
      !c.deidentified && fact(t('patient.name'), p.name ?? '—'),
      !c.deidentified && fact(t('patient.mrn'), p.mrn ?? '—'),
      !c.deidentified && fact(t('patient.birth_date'), formatDate(p.birth_date)),
      c.deidentified && fact(t('patient.age'), p.age === undefined || p.age === null ? '—' : String(p.age)),
      fact(t('patient.sex'), label('sex', p.sex)),
      fact(t('case.consent_external'), consentText(c)),
      fact(t('case.updated'), formatDateTime(c.updated_at, viewerTimeZone()))));
}

/** @param {Case} c */
function consentText(c) {
  if (c.consent_external === null || c.consent_external === undefined) return t('intake.consent_unknown');
  const answer = c.consent_external ? t('common.yes') : t('common.no');
  return c.consent_date ? `${answer} (${formatDate(c.consent_date)})` : answer;
}

/** @param {Case} c */
function clinicalSection(c) {
  return h('section', { class: 'panel clinical' },
    h('h2', null, t('case.question')),
    h('p', { class: 'question', 'data-testid': 'case-question' }, c.clinical_question),
    c.rejection_reason && h('p', { class: 'notice danger', 'data-testid': 'case-rejection-reason' },
      t('case.rejection_reason'), ': ', c.rejection_reason),
    h('h2', null, t('case.summary'), ' ', h('span', { class: 'tag' }, label('language', c.summary_language))),
    h('p', { class: 'summary', lang: c.summary_language }, c.clinical_summary),
    c.summary_translation && [
      h('h2', null, t('case.translation'), ' ',
        c.translation_language && h('span', { class: 'tag' }, label('language', c.translation_language))),
      h('p', { class: 'summary', lang: c.translation_language ?? null }, c.summary_translation),
      h('p', { class: 'meta' }, t('case.translated_by', { name: c.translator || '—' })),
    ]);
}

/** @param {Case} c */
function readinessSection(c) {
  return h('section', { class: 'panel readiness', 'data-testid': 'case-readiness' },
    h('h2', null, t('case.readiness')),
    h('ul', { class: 'checklist' }, c.readiness.items.map((item) => h('li', {
      class: item.ok ? 'ok' : 'not-ok', 'data-testid': 'readiness-item', 'data-key': item.key, 'data-ok': String(item.ok),
    },
    h('span', { class: 'mark', 'aria-hidden': 'true' }, item.ok ? '✓' : '✗'),
    h('span', { class: 'visually-hidden' }, item.ok ? t('common.yes') : t('common.no')),
    h('span', null, h('strong', null, label('readiness', item.key)), item.detail && h('span', { class: 'detail' }, item.detail))))));
}

/**
 * @param {string} term
 * @param {string} value
 */
function fact(term, value) {
  return h('div', null, h('dt', null, term), h('dd', null, value));
}
