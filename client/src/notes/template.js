/**
 * A consensus-note template (a JSON Schema with every $ref inlined, GET /api/templates/{id}):
 * what kind of control each field gets, and its labels in the viewer's language.
 *
 * Labels come from `"x-label": {"en": …, "zh-CN": …}` on fields and on the `{const, x-label}`
 * entries of a `oneOf`; `"x-multiline": true` asks for a textarea.
 */

import { getLocale, t } from '../i18n/index.js';

/** @typedef {import('../api.js').Api} Api */

/**
 * The part of JSON Schema that templates use.
 * @typedef {{
 *   type?: string | string[],
 *   properties?: Record<string, Schema>,
 *   required?: string[],
 *   items?: Schema,
 *   oneOf?: Option[],
 *   enum?: unknown[],
 *   const?: unknown,
 *   format?: string,
 *   minimum?: number,
 *   maximum?: number,
 *   maxLength?: number,
 *   maxItems?: number,
 *   title?: string,
 *   description?: string,
 *   'x-label'?: Labels | string,
 *   'x-hint'?: Labels | string,
 *   'x-multiline'?: boolean,
 * }} Schema
 */

/** @typedef {Record<string, string>} Labels by locale */

/**
 * One entry of a `oneOf` value set.
 * @typedef {{const?: unknown, title?: string, 'x-label'?: Labels | string}} Option
 */

/**
 * The control a field gets: `object` (fieldset), `list` (array of objects: ranked items),
 * `choices` (array of coded values: checkboxes), `select` (coded value), `boolean`, `number`,
 * `date`, `text` (free text: a Y.Text, edited character-wise), `line` (a string held as a plain
 * value: free text whose Y.Text the document lacks), `other` (shown, not edited).
 * @typedef {'object'|'list'|'choices'|'select'|'boolean'|'number'|'date'|'text'|'line'|'other'} Kind
 */

/** The templates fetched so far (GET /api/templates/{id}), each fetched once. */
export class Templates {
  /** @param {Api} api */
  constructor(api) {
    this._api = api;
    /** @type {Map<string, Promise<Schema>>} */
    this._byId = new Map();
  }

  /**
   * @param {string} id
   * @returns {Promise<Schema>}
   */
  get(id) {
    let template = this._byId.get(id);
    if (!template) {
      template = this._api.get(`/templates/${encodeURIComponent(id)}`);
      // A failed fetch is not kept: the next call tries again.
      template.catch(() => this._byId.delete(id));
      this._byId.set(id, template);
    }
    return template;
  }
}

/**
 * The JSON types a schema allows, without "null".
 * @param {Schema} schema
 * @returns {string[]}
 */
function typesOf(schema) {
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  return types.filter((type) => type !== 'null');
}

/**
 * @param {Schema} schema
 * @returns {Kind}
 */
export function kindOf(schema) {
  const types = typesOf(schema);
  if (types.includes('object') || (types.length === 0 && schema.properties)) return 'object';
  if (types.includes('array')) {
    const items = schema.items ?? {};
    if (kindOf(items) === 'object') return 'list';
    return optionsOf(items).length > 0 ? 'choices' : 'other';
  }
  if (optionsOf(schema).length > 0) return 'select';
  if (types.includes('boolean')) return 'boolean';
  if (types.includes('integer') || types.includes('number')) return 'number';
  if (types.includes('string')) return schema.format === 'date' ? 'date' : 'text';
  return 'other';
}

/**
 * Whether the field's value is a Y.Text in the note's document.
 * @param {Schema} schema
 */
export function isFreeText(schema) {
  return kindOf(schema) === 'text';
}

/**
 * @param {Schema} schema
 */
export function isInteger(schema) {
  return typesOf(schema).includes('integer');
}

/**
 * Whether null is a valid value (a cleared field is set to null rather than removed).
 * @param {Schema} schema
 */
export function allowsNull(schema) {
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  return types.includes('null') || (schema.oneOf ?? []).some((o) => o.const === null);
}

/**
 * The coded values of a field, from `oneOf` (`const` + `x-label`) or `enum`.
 * @param {Schema} schema
 * @returns {{value: unknown, label: string}[]}
 */
export function optionsOf(schema) {
  if (schema.oneOf) {
    return schema.oneOf
      .filter((o) => o.const !== undefined && o.const !== null)
      .map((o) => ({ value: o.const, label: localized(o['x-label']) ?? o.title ?? String(o.const) }));
  }
  return (schema.enum ?? []).filter((v) => v !== null).map((value) => ({ value, label: String(value) }));
}

/**
 * The fields of an object, in the template's order.
 * @param {Schema} schema
 * @returns {[string, Schema][]}
 */
export function fieldsOf(schema) {
  return Object.entries(schema.properties ?? {});
}

/**
 * @param {Schema} schema the object
 * @param {string} name one of its fields
 */
export function isRequired(schema, name) {
  return (schema.required ?? []).includes(name);
}

/**
 * The label of a field in the current language: its `x-label`, else its title, else its name.
 * @param {Schema} schema
 * @param {string} name
 */
export function labelOf(schema, name) {
  return localized(schema['x-label']) ?? schema.title ?? humanize(name);
}

/**
 * A field's hint in the current language, if it has one.
 * @param {Schema} schema
 */
export function hintOf(schema) {
  return localized(schema['x-hint']) ?? null;
}

/**
 * A value as the reader sees it: the label of a coded value, yes/no, or the text itself.
 * @param {Schema} schema
 * @param {unknown} value
 */
export function displayValue(schema, value) {
  if (value === null || value === undefined || value === '') return '—';
  const option = optionsOf(schema).find((o) => o.value === value);
  if (option) return option.label;
  if (typeof value === 'boolean') return value ? t('common.yes') : t('common.no');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/**
 * @param {Labels | string | undefined} labels
 * @returns {string | undefined}
 */
function localized(labels) {
  if (typeof labels === 'string') return labels;
  if (!labels) return undefined;
  return labels[getLocale()] ?? labels.en ?? Object.values(labels)[0];
}

/**
 * "stage_group" → "Stage group", for a field the template gives no label.
 * @param {string} name
 */
function humanize(name) {
  const words = name.replace(/_/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/**
 * A dot path as the reader knows it: "staging.stage_group" → "Staging › Stage group",
 * "recommendations.0.nct_number" → "Recommendations › 1 › NCT number".
 * @param {Schema} template
 * @param {string} path
 */
export function describePath(template, path) {
  /** @type {Schema | undefined} */
  let schema = template;
  const labels = [];
  for (const part of path.split('.').filter(Boolean)) {
    if (schema && /^\d+$/.test(part) && schema.items) {
      labels.push(String(Number(part) + 1));
      schema = schema.items;
    } else {
      schema = schema?.properties?.[part];
      labels.push(schema ? labelOf(schema, part) : humanize(part));
    }
  }
  return labels.join(' › ');
}
