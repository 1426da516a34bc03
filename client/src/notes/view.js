/**
 * A note's content read-only, labelled from its template: the agreed plan as the reader sees it.
 * Fields without a value are left out; lists keep their order (the rank).
 */

import { formatDate } from '../i18n/index.js';
import { h } from '../ui.js';
import { displayValue, fieldsOf, kindOf, labelOf, optionsOf } from './template.js';

/** @typedef {import('./template.js').Schema} Schema */

/**
 * @param {Schema} template
 * @param {Record<string, unknown>} note
 */
export function noteView(template, note) {
  return h('div', { class: 'note-view' }, objectView(template, note, []));
}

/**
 * @param {Schema} schema
 * @param {Record<string, unknown>} value
 * @param {string[]} path
 * @returns {HTMLElement | null}
 */
function objectView(schema, value, path) {
  const rows = fieldsOf(schema)
    .filter(([name]) => !isEmpty(value[name]))
    .map(([name, field]) => fieldView(name, field, value[name], [...path, name]));
  return rows.length > 0 ? h('dl', { class: 'note-facts' }, rows) : null;
}

/**
 * @param {string} name
 * @param {Schema} schema
 * @param {unknown} value
 * @param {string[]} path
 * @returns {HTMLElement}
 */
function fieldView(name, schema, value, path) {
  const kind = kindOf(schema);
  const label = labelOf(schema, name);
  const field = path.join('.');
  if (kind === 'object' && isRecord(value)) {
    return h('div', { class: 'note-fact group', 'data-view-field': field },
      h('dt', null, label), h('dd', null, objectView(schema, value, path)));
  }
  if (kind === 'list' && Array.isArray(value)) {
    const items = schema.items ?? {};
    return h('div', { class: 'note-fact list', 'data-view-field': field },
      h('dt', null, label),
      h('dd', null, h('ol', { class: 'note-view-items' }, value.map((item, i) => h('li', null, /** @type {import('../ui.js').Child} */ (
        isRecord(item) ? objectView(items, item, [...path, String(i)]) : displayValue(items, item)))))));
  }
  if (kind === 'choices' && Array.isArray(value)) {
    const items = schema.items ?? {};
    const labels = value.map((v) => optionsOf(items).find((o) => o.value === v)?.label ?? String(v));
    return h('div', { class: 'note-fact', 'data-view-field': field }, h('dt', null, label), h('dd', null, labels.join(', ')));
  }
  const text = kind === 'date' && typeof value === 'string' ? formatDate(value) : displayValue(schema, value);
  return h('div', { class: `note-fact kind-${kind}`, 'data-view-field': field },
    h('dt', null, label), h('dd', { class: kind === 'text' ? 'note-text' : null }, text));
}

/** @param {unknown} value */
function isEmpty(value) {
  if (value === null || value === undefined || value === '') return true;
  if (Array.isArray(value)) return value.length === 0;
  if (isRecord(value)) return Object.values(value).every(isEmpty);
  return false;
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
function isRecord(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
