/**
 * The board filter of the records page's forms, and the tumor sites the boards cover.
 */

import { label, t } from '../i18n/index.js';
import { select } from '../form.js';

/** @typedef {import('../types.js').Board} Board */

/**
 * A `<select>` of the boards the user may see, led by "All boards" (value "").
 * @param {Board[]} boards
 */
export function boardSelect(boards) {
  return select([
    { value: '', text: t('records.all_boards') },
    ...boards.map((b) => ({ value: String(b.id), text: b.name })),
  ]);
}

/**
 * A `<select>` of the boards' tumor sites, each once, led by "All tumor sites" (value "").
 * @param {Board[]} boards
 */
export function tumorSiteSelect(boards) {
  const sites = [...new Set(boards.map((b) => b.tumor_site))].sort();
  return select([
    { value: '', text: t('records.all_tumor_sites') },
    ...sites.map((site) => ({ value: site, text: label('tumor_site', site) })),
  ]);
}
