/**
 * The records page: find agreed plans, open one and export it, export many at once, and the
 * boards' metrics. For records staff, coordinators and administrators.
 */

import './records.css';
import { t } from '../i18n/index.js';
import { Templates } from '../notes/template.js';
import { h, pageHeader } from '../ui.js';
import { BulkExport } from './bulk.js';
import { BoardMetricsView } from './metrics.js';
import { RecordPanel } from './record.js';
import { RecordSearch } from './search.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').Board} Board */
/** @typedef {import('../types.js').ItemList<Board>} BoardList */

/** @param {App} app */
export async function recordsPage(app) {
  if (!app.may('records')) {
    return h('section', { class: 'records-page' },
      pageHeader(t('records.title')),
      h('p', { class: 'alert', role: 'alert', 'data-testid': 'error' }, t('error.forbidden')));
  }
  /** @type {BoardList} */
  const { items: boards } = await app.api.get('/boards');
  const record = new RecordPanel(app, new Templates(app.api));
  const search = new RecordSearch(app.api, boards, (item) => void record.open(item));
  const bulk = new BulkExport(app.api, boards);
  const metrics = new BoardMetricsView(app.api, boards);
  // Each shows its own failure, so the page comes up whole either way.
  await Promise.all([search.search(), metrics.load()]);
  return h('section', { class: 'records-page' },
    pageHeader(t('records.title')),
    search.el,
    record.el,
    bulk.el,
    metrics.el);
}
