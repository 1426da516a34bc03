/**
 * Bulk export: every agreed plan signed in a date range (of one board, or all) in one format, made
 * by a job on the server whose progress is polled until its ZIP file can be downloaded.
 */

import { viewerTimeZone } from '../api.js';
import { FormFields, select } from '../form.js';
import { label, t } from '../i18n/index.js';
import { busy, errorText, h, mount } from '../ui.js';
import { boardSelect } from './boards.js';
import { DateRange } from './range.js';
import { FORMATS, audienceSelect, languageSelect } from './record.js';

/** @typedef {import('../api.js').Api} Api */
/** @typedef {import('../types.js').Board} Board */
/** @typedef {import('../types.js').ExportJob} ExportJob */

const POLL_MS = 500;

export class BulkExport {
  /**
   * @param {Api} api
   * @param {Board[]} boards
   */
  constructor(api, boards) {
    this._api = api;
    this._fields = new FormFields();
    this._range = new DateRange(this._fields, 30, { from: t('records.from'), to: t('records.to') });
    this._board = boardSelect(boards);
    this._format = select(FORMATS.map((format) => ({ value: format, text: label('format', format) })));
    this._language = languageSelect();
    this._audience = audienceSelect();
    this._submit = h('button', { type: 'submit', class: 'button-primary' }, t('bulk.start'));
    this._job = h('div', { class: 'bulk-job' });
    const fields = this._fields;
    this.el = h('section', { class: 'panel records-bulk', 'aria-labelledby': 'records-bulk-heading' },
      h('h2', { id: 'records-bulk-heading' }, t('bulk.title')),
      h('p', { class: 'hint' }, t('bulk.lead')),
      h('form', { novalidate: true, onsubmit: (/** @type {Event} */ event) => {
        event.preventDefault();
        // One job at a time from this page: the button stays disabled until it has ended.
        void busy(this._submit, () => this._run());
      } },
      fields.general.el,
      h('div', { class: 'grid' },
        this._range.el,
        fields.field('board_id', t('records.board'), this._board),
        fields.field('format', t('bulk.format'), this._format),
        fields.field('language', t('export.language'), this._language, { hint: t('export.language_hint') }),
        fields.field('audience', t('export.audience'), this._audience)),
      h('div', { class: 'form-actions' }, this._submit)),
      this._job);
  }

  /** Start a job and follow it until it ends or the page is left. */
  async _run() {
    this._fields.clear();
    /** @type {ExportJob} */
    let job;
    try {
      job = await this._api.post('/exports', {
        ...this._range.value(),
        board_id: this._board.value ? Number(this._board.value) : null,
        format: this._format.value,
        language: this._language.value,
        audience: this._audience.value,
      }, { tz: viewerTimeZone() }); // the range's days are the viewer's, as its presets are
    } catch (error) {
      this._fields.showError(error);
      return;
    }
    const view = new JobView(this._api, job);
    mount(this._job, view.el);
    while (job.state === 'running') {
      await new Promise((resolve) => { setTimeout(resolve, POLL_MS); });
      if (!view.el.isConnected) return; // the user has left the page (or it was shown again)
      try {
        job = await this._api.get(`/exports/${encodeURIComponent(job.id)}`);
      } catch (error) {
        view.lost(error);
        return;
      }
      view.show(job);
    }
  }
}

/** One job's progress bar, what it says, and its file once done. */
class JobView {
  /**
   * @param {Api} api
   * @param {ExportJob} job
   */
  constructor(api, job) {
    this._api = api;
    this._progress = h('progress', { 'aria-label': t('bulk.progress'), 'data-testid': 'bulk-progress' });
    this._status = h('p', { role: 'status', 'data-testid': 'bulk-status' });
    this._failed = h('div');
    this._file = h('div', { class: 'form-actions' });
    this.el = h('div', { class: 'bulk-progress', 'data-job-id': job.id },
      this._progress, this._status, this._failed, this._file);
    this.show(job);
  }

  /** @param {ExportJob} job */
  show(job) {
    this.el.dataset.state = job.state;
    this._progress.max = Math.max(job.total, 1);
    this._progress.value = job.state === 'done' ? this._progress.max : job.done;
    const counts = { done: job.done, total: job.total };
    this._status.className = job.state === 'failed' ? 'alert' : 'status';
    this._status.textContent = job.state === 'running' ? t('bulk.running', counts)
      : job.state === 'done' ? t('bulk.done', counts)
        : [t('bulk.failed', counts), job.error].filter(Boolean).join(' ');
    mount(this._failed, job.failed.length > 0 && [
      h('p', { class: 'notice' }, t('bulk.some_failed', { count: job.failed.length })),
      h('ul', { class: 'bulk-failed' }, job.failed.map((f) => h('li', null, `${f.case}: ${f.error}`))),
    ]);
    // A link, not a fetch: the browser streams a large ZIP to disk instead of holding it in memory.
    mount(this._file, job.state === 'done' && h('a', {
      class: 'button-primary', href: this._api.url(`/exports/${encodeURIComponent(job.id)}/file`), download: '',
      'data-testid': 'bulk-download',
    }, t('bulk.download')));
  }

  /**
   * Polling failed: say so, and stop.
   * @param {unknown} error
   */
  lost(error) {
    this._status.className = 'alert';
    this._status.textContent = t('bulk.lost', { error: errorText(error) });
  }
}
