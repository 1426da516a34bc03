/**
 * Board metrics over a date range: sessions, cases per session, minutes per case, quorum, how
 * the recommendations were followed up (and why not), and the days from request to agreed plan.
 */

import { FormFields } from '../form.js';
import { formatList, formatPercent, getLocale, label, t } from '../i18n/index.js';
import { busy, h, mount } from '../ui.js';
import { boardSelect } from './boards.js';
import { DateRange } from './range.js';

/** @typedef {import('../api.js').Api} Api */
/** @typedef {import('../types.js').Board} Board */
/** @typedef {import('../types.js').BoardMetrics} BoardMetrics */
/** @typedef {import('../types.js').Metrics} Metrics */

export class BoardMetricsView {
  /**
   * @param {Api} api
   * @param {Board[]} boards
   */
  constructor(api, boards) {
    this._api = api;
    this._fields = new FormFields();
    this._range = new DateRange(this._fields, 90, { from: t('metrics.from'), to: t('metrics.to') });
    this._board = boardSelect(boards);
    this._submit = h('button', { type: 'submit', class: 'button-quiet' }, t('metrics.show'));
    this._table = h('div', { class: 'metrics-results' });
    this._loads = 0;
    const fields = this._fields;
    this.el = h('section', { class: 'panel records-metrics', 'aria-labelledby': 'records-metrics-heading' },
      h('h2', { id: 'records-metrics-heading' }, t('metrics.title')),
      h('form', { novalidate: true, onsubmit: (/** @type {Event} */ event) => {
        event.preventDefault();
        void busy(this._submit, () => this.load());
      } },
      fields.general.el,
      h('div', { class: 'inline-fields' },
        this._range.el,
        fields.field('board_id', t('records.board'), this._board),
        h('div', { class: 'field' }, this._submit))),
      this._table);
  }

  /** Fetch and show the figures the form asks for; a later load overtakes an earlier one. */
  async load() {
    const load = ++this._loads;
    this._fields.clear();
    try {
      /** @type {Metrics} */
      const metrics = await this._api.get('/records/metrics', { ...this._range.value(), board_id: this._board.value });
      if (load === this._loads) mount(this._table, metricsTable(metrics));
    } catch (error) {
      if (load !== this._loads) return;
      this._fields.showError(error);
      this._table.replaceChildren();
    }
  }
}

/** @param {Metrics} metrics */
function metricsTable(metrics) {
  if (metrics.boards.length === 0) return h('p', { class: 'empty' }, t('metrics.none'));
  return h('div', { class: 'table-wrap' }, h('table', { class: 'compact metrics', 'data-testid': 'metrics-table' },
    h('caption', { class: 'visually-hidden' }, t('metrics.caption', { from: metrics.from ?? '…', to: metrics.to ?? '…' })),
    h('thead', null, h('tr', null,
      h('th', { scope: 'col' }, t('records.board')),
      h('th', { scope: 'col', class: 'num' }, t('metrics.sessions')),
      h('th', { scope: 'col', class: 'num' }, t('metrics.cases')),
      h('th', { scope: 'col', class: 'num' }, t('metrics.cases_per_session')),
      h('th', { scope: 'col', class: 'num' }, t('metrics.minutes_per_case')),
      h('th', { scope: 'col', class: 'num' }, t('metrics.quorum')),
      h('th', { scope: 'col', class: 'num' }, t('metrics.recommendations')),
      h('th', { scope: 'col', class: 'num' }, t('metrics.implemented')),
      h('th', { scope: 'col', class: 'num' }, t('metrics.not_done')),
      h('th', { scope: 'col' }, t('metrics.not_done_by_reason')),
      h('th', { scope: 'col', class: 'num' }, t('metrics.request_to_final')))),
    h('tbody', null, metrics.boards.map(metricsRow))));
}

/** @param {BoardMetrics} m */
function metricsRow(m) {
  const r = m.recommendations;
  const reasons = Object.entries(r.not_done_by_reason ?? {})
    .map(([reason, count]) => `${label('followup_reason', reason)}: ${count}`);
  return h('tr', { 'data-testid': 'metrics-row', 'data-board-id': m.board_id },
    h('th', { scope: 'row' }, m.board_name),
    h('td', { class: 'num' }, number(m.sessions)),
    h('td', { class: 'num' }, number(m.cases)),
    h('td', { class: 'num' }, number(m.cases_per_session)),
    h('td', { class: 'num' }, number(m.minutes_per_case)),
    h('td', { class: 'num' }, share(m.quorum.share), h('br'), h('span', { class: 'meta' }, `${m.quorum.met}/${m.quorum.total}`)),
    h('td', { class: 'num' }, number(r.total),
      r.planned > 0 && [h('br'), h('span', { class: 'meta' }, t('metrics.planned', { count: r.planned }))]),
    h('td', { class: 'num' }, share(r.share_implemented), h('br'), h('span', { class: 'meta' }, number(r.implemented))),
    h('td', { class: 'num' }, share(r.share_not_done), h('br'), h('span', { class: 'meta' }, number(r.not_done))),
    h('td', null, reasons.length > 0 ? formatList(reasons) : '—'),
    h('td', { class: 'num' }, number(m.request_to_final_days.median),
      h('br'), h('span', { class: 'meta' }, t('metrics.n', { n: m.request_to_final_days.n }))));
}

/**
 * A figure in the current language, at most one decimal; "—" when there is none.
 * @param {number | null | undefined} value
 */
function number(value) {
  if (value === null || value === undefined) return '—';
  return new Intl.NumberFormat(getLocale(), { maximumFractionDigits: 1 }).format(value);
}

/**
 * A share (0…1) as a percentage; "—" when there is none (nothing to share out).
 * @param {number | null | undefined} value
 */
function share(value) {
  return value === null || value === undefined ? '—' : formatPercent(value);
}
