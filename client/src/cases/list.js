/**
 * The cases page: the cases the user may see, filtered by state.
 */

import { label, t } from '../i18n/index.js';
import { h, mount, pageHeader } from '../ui.js';
import { CASE_STATES, readyBadge, stateBadge } from './state.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').CaseSummary} CaseSummary */
/** @typedef {import('../types.js').ItemList<CaseSummary>} CaseList */

/**
 * @param {App} app
 */
export async function casesPage(app) {
  const results = h('div', { class: 'table-wrap' });
  const filter = h('select', {
    id: 'case-state-filter',
    'data-testid': 'case-state-filter',
    onchange: () => void show(filter.value),
  },
  h('option', { value: '' }, t('cases.all_states')),
  CASE_STATES.map((state) => h('option', { value: state }, label('state', state))));

  /** @param {string} state */
  async function show(state) {
    /** @type {CaseList} */
    const { items } = await app.api.get('/cases', { state });
    if (filter.value !== state) return; // the filter changed again meanwhile
    mount(results, items.length === 0 ? h('p', { class: 'empty' }, t('cases.empty')) : caseTable(items));
  }

  await show('');
  return h('section', { class: 'cases-page' },
    pageHeader(t('cases.title'),
      app.may('author') && h('a', { href: '#/cases/new', class: 'button-primary', 'data-testid': 'case-new' }, t('cases.new'))),
    h('div', { class: 'filters' },
      h('label', { for: 'case-state-filter' }, t('cases.filter_state')), filter),
    results);
}

/** @param {CaseSummary[]} cases */
function caseTable(cases) {
  return h('table', { class: 'cases', 'data-testid': 'case-table' },
    h('thead', null, h('tr', null,
      h('th', { scope: 'col' }, t('case.number')),
      h('th', { scope: 'col' }, t('case.state')),
      h('th', { scope: 'col' }, t('case.question')),
      h('th', { scope: 'col' }, t('case.patient')),
      h('th', { scope: 'col' }, t('case.readiness')))),
    h('tbody', null, cases.map((c) => h('tr', { 'data-testid': 'case-row', 'data-case-id': c.id },
      h('td', null, h('a', { href: `#/cases/${c.id}`, class: 'case-number' }, c.number)),
      h('td', null, stateBadge(c.state)),
      h('td', { class: 'question' }, c.clinical_question),
      h('td', null, c.patient_name ?? '—'),
      h('td', null, readyBadge(c.ready))))));
}
