/**
 * The records search: agreed plans by the date they were signed, board, referral case number,
 * MRN, tumor site and state, a page of results at a time.
 */

import { viewerTimeZone } from '../api.js';
import { stateBadge } from '../cases/state.js';
import { FormFields, select } from '../form.js';
import { formatDateTime, label, t } from '../i18n/index.js';
import { busy, h, mount } from '../ui.js';
import { boardSelect, tumorSiteSelect } from './boards.js';
import { DateRange } from './range.js';

/** @typedef {import('../api.js').Api} Api */
/** @typedef {Record<string, string | number | null>} Query */
/** @typedef {import('../types.js').Board} Board */
/** @typedef {import('../types.js').RecordItem} RecordItem */
/** @typedef {import('../types.js').RecordPage} RecordPage */

const PAGE_SIZE = 50;

export class RecordSearch {
  /**
   * @param {Api} api
   * @param {Board[]} boards the boards the user may see
   * @param {(item: RecordItem) => void} onOpen a result was chosen
   */
  constructor(api, boards, onOpen) {
    this._api = api;
    this._onOpen = onOpen;
    this._fields = new FormFields();
    this._range = new DateRange(this._fields, 30, { from: t('records.from'), to: t('records.to') });
    this._board = boardSelect(boards);
    this._caseNumber = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
    this._mrn = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
    this._site = tumorSiteSelect(boards);
    this._state = select([
      { value: '', text: t('records.any_state') },
      { value: 'finalized', text: label('state', 'finalized') },
      { value: 'closed', text: label('state', 'closed') },
      { value: 'amending', text: label('note_status', 'amending') },
    ]);
    this._submit = h('button', { type: 'submit', class: 'button-primary' }, t('records.search'));
    this._results = h('div', { class: 'records-results', 'data-testid': 'records-results' });
    /** @type {Query} the query of the results shown, which paging keeps */
    this._query = {};
    this._searches = 0;
    const fields = this._fields;
    this.el = h('section', { class: 'panel records-search', 'aria-labelledby': 'records-search-heading' },
      h('h2', { id: 'records-search-heading' }, t('records.search_title')),
      h('form', { novalidate: true, onsubmit: (/** @type {Event} */ event) => {
        event.preventDefault();
        void busy(this._submit, () => this.search(this._formQuery(), 0));
      } },
      fields.general.el,
      h('div', { class: 'grid' },
        this._range.el,
        fields.field('board_id', t('records.board'), this._board),
        fields.field('tumor_site', t('records.tumor_site'), this._site),
        fields.field('case_number', t('records.case_number'), this._caseNumber),
        fields.field('mrn', t('records.mrn'), this._mrn, { hint: t('records.mrn_hint') }),
        fields.field('state', t('records.state'), this._state)),
      h('div', { class: 'form-actions' }, this._submit)),
      this._results);
  }

  /** What the form asks for, as the search's body (a field left empty is null: any). */
  _formQuery() {
    const { from, to } = this._range.value();
    return {
      from: from || null,
      to: to || null,
      board_id: this._board.value ? Number(this._board.value) : null,
      case_number: this._caseNumber.value.trim() || null,
      mrn: this._mrn.value.trim() || null,
      tumor_site: this._site.value || null,
      state: this._state.value || null,
    };
  }

  /**
   * Show the results of `query` from `offset` on; an answer overtaken by a later search is dropped.
   * @param {Query} [query] the search's body; by default what the form asks
   * @param {number} [offset]
   */
  async search(query = this._formQuery(), offset = 0) {
    const search = ++this._searches;
    this._fields.clear();
    try {
      // A POST, so that an MRN never appears in a URL (nor in any log of one); the days are
      // the viewer's, as the date fields' presets are.
      /** @type {RecordPage} */
      const page = await this._api.post('/records/search', { ...query, limit: PAGE_SIZE, offset }, { tz: viewerTimeZone() });
      if (search !== this._searches) return;
      this._query = query;
      mount(this._results, this._page(page, offset));
    } catch (error) {
      if (search !== this._searches) return;
      this._fields.showError(error);
      this._results.replaceChildren();
    }
  }

  /**
   * @param {RecordPage} page
   * @param {number} offset
   */
  _page({ items, total }, offset) {
    if (items.length === 0) return h('p', { class: 'empty', role: 'status' }, t('records.none'));
    const zone = viewerTimeZone();
    return [
      h('p', { class: 'meta', role: 'status', 'data-testid': 'records-total' },
        t('records.showing', { first: offset + 1, last: offset + items.length, total })),
      h('div', { class: 'table-wrap' }, h('table', { class: 'records' },
        h('caption', { class: 'visually-hidden' }, t('records.results_caption')),
        h('thead', null, h('tr', null,
          h('th', { scope: 'col' }, t('records.case_number')),
          h('th', { scope: 'col' }, t('records.board')),
          h('th', { scope: 'col' }, t('records.tumor_site')),
          h('th', { scope: 'col' }, t('records.state')),
          h('th', { scope: 'col', class: 'num' }, t('records.version')),
          h('th', { scope: 'col' }, t('records.finalized')),
          h('th', { scope: 'col' }, t('records.session')),
          h('th', { scope: 'col', class: 'num' }, t('records.recommendations')))),
        h('tbody', null, items.map((item) => this._row(item, zone))))),
      total > PAGE_SIZE && h('div', { class: 'records-paging' },
        h('button', {
          type: 'button', class: 'button-quiet', disabled: offset === 0,
          onclick: () => void this.search(this._query, Math.max(0, offset - PAGE_SIZE)),
        }, t('records.previous')),
        h('button', {
          type: 'button', class: 'button-quiet', disabled: offset + items.length >= total,
          onclick: () => void this.search(this._query, offset + PAGE_SIZE),
        }, t('records.next'))),
    ];
  }

  /**
   * A result row; a click anywhere on it opens the plan, the case number is its button.
   * @param {RecordItem} item
   * @param {string} zone
   */
  _row(item, zone) {
    const row = h('tr', {
      class: 'record-row', 'data-testid': 'record-row', 'data-case-id': item.case_id,
      onclick: () => {
        for (const other of row.parentElement?.children ?? []) other.removeAttribute('aria-current');
        row.setAttribute('aria-current', 'true');
        this._onOpen(item);
      },
    },
    h('td', null, h('button', { type: 'button', class: 'link-button case-number', title: t('records.open') }, item.case_number)),
    h('td', null, item.board_name),
    h('td', null, label('tumor_site', item.tumor_site)),
    h('td', null, stateBadge(item.state),
      item.note_status === 'amending' && [' ', h('span', { class: 'badge note-amending' }, label('note_status', 'amending'))]),
    h('td', { class: 'num' }, item.version),
    h('td', null, formatDateTime(item.finalized_at, zone), h('br'), h('span', { class: 'meta' }, item.finalized_by)),
    h('td', null, item.session_start_at ? formatDateTime(item.session_start_at, zone) : '—'),
    h('td', { class: 'num' }, item.recommendations));
    return row;
  }
}
