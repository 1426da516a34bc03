/**
 * A date range asked as two dates ("from" and "to", both inclusive), preset to the last days.
 */

import { h } from '../ui.js';

/** @typedef {import('../form.js').FormFields} FormFields */

export class DateRange {
  /**
   * @param {FormFields} fields the form the two dates belong to (their errors show by them)
   * @param {number} days how many days back from today the range starts
   * @param {{from: string, to: string}} labels
   */
  constructor(fields, days, labels) {
    const today = new Date();
    const start = new Date(today);
    start.setDate(today.getDate() - days);
    this.from = h('input', { type: 'date', value: isoDate(start) });
    this.to = h('input', { type: 'date', value: isoDate(today) });
    this.el = [fields.field('from', labels.from, this.from), fields.field('to', labels.to, this.to)];
  }

  /** The dates as the API takes them ("YYYY-MM-DD"; "" when left empty). */
  value() {
    return { from: this.from.value, to: this.to.value };
  }
}

/**
 * A day of the viewer's calendar as "YYYY-MM-DD".
 * @param {Date} date
 */
function isoDate(date) {
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}
