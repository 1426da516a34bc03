/**
 * A form's labelled fields, and the server's field errors shown next to the field they name.
 */

import { ApiError } from './api.js';
import { t } from './i18n/index.js';
import { ErrorSlot, h, mount } from './ui.js';

/** @typedef {import('./ui.js').Child} Child */
/** @typedef {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} Control */

/**
 * @typedef {object} FieldEntry
 * @property {HTMLElement} slot where the field's error message goes
 * @property {Control[]} controls marked aria-invalid while in error
 */

export class FormFields {
  /**
   * @param {Record<string, string>} [aliases] server field name → form field name,
   *   for fields the form asks differently (e.g. "rrule" → "weekday")
   */
  constructor(aliases = {}) {
    this._aliases = aliases;
    /** @type {Map<string, FieldEntry>} */
    this._fields = new Map();
    this._prefix = `f${Math.random().toString(36).slice(2, 8)}`;
    this._count = 0;
    /** Errors that name no field of this form (or none at all) show here. */
    this.general = new ErrorSlot();
  }

  /**
   * A labelled control with room for its error.
   * @param {string} name the server's field name (dotted for nested fields, e.g. "patient.mrn")
   * @param {string} text the label
   * @param {Control} control
   * @param {{hint?: string, className?: string}} [options]
   */
  field(name, text, control, { hint, className = '' } = {}) {
    const id = this._nextId();
    control.id = id;
    if (!control.name) control.name = name;
    const slot = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
    control.setAttribute('aria-describedby', `${id}-error`);
    this._fields.set(name, { slot, controls: [control] });
    return h('div', { class: `field ${className}`.trim() },
      h('label', { for: id }, text),
      control,
      hint && h('p', { class: 'hint' }, hint),
      slot);
  }

  /**
   * A group of checkboxes or radio buttons under one legend.
   * @param {string} name
   * @param {string} legend
   * @param {{control: HTMLInputElement, text: string}[]} options
   */
  group(name, legend, options) {
    const id = this._nextId();
    const slot = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
    this._fields.set(name, { slot, controls: options.map((o) => o.control) });
    return h('fieldset', { class: 'field group', 'aria-describedby': `${id}-error` },
      h('legend', null, legend),
      h('div', { class: 'choices' }, options.map(({ control, text }) => h('label', { class: 'choice' }, control, text))),
      slot);
  }

  /**
   * Show a failed submission: each field error by its field, the summary above the form.
   * @param {unknown} error
   */
  showError(error) {
    this.clear();
    const unplaced = [];
    for (const fieldError of error instanceof ApiError ? error.errors : []) {
      const entry = this._resolve(fieldError.field);
      if (entry) {
        entry.slot.hidden = false;
        entry.slot.setAttribute('data-testid', 'error');
        mount(entry.slot, entry.slot.textContent ? `${entry.slot.textContent} ${fieldError.message}` : fieldError.message);
        for (const control of entry.controls) control.setAttribute('aria-invalid', 'true');
      } else {
        unplaced.push(fieldError);
      }
    }
    const placed = error instanceof ApiError && unplaced.length < error.errors.length;
    // The placed messages already say what is wrong; above the form, point to them.
    const summary = error instanceof ApiError
      ? new ApiError(error.status, placed ? t('form.check_fields') : error.detail, unplaced)
      : error;
    this.general.show(summary);
  }

  clear() {
    this.general.clear();
    for (const { slot, controls } of this._fields.values()) {
      slot.hidden = true;
      slot.removeAttribute('data-testid');
      slot.replaceChildren();
      for (const control of controls) control.removeAttribute('aria-invalid');
    }
  }

  /**
   * The field a server error names: exactly, after an alias, without a leading "body." style
   * prefix, or by its last part ("mrn" for "patient.mrn").
   * @param {string} field
   */
  _resolve(field) {
    const parts = field.split('.');
    for (let i = 0; i < parts.length; i += 1) {
      const name = parts.slice(i).join('.');
      const entry = this._fields.get(this._aliases[name] ?? name);
      if (entry) return entry;
      // "required_specialties.0" names one item of a list field
      const head = parts.slice(i, -1).join('.');
      if (head && /^\d+$/.test(parts[parts.length - 1]) && this._fields.has(head)) return this._fields.get(head);
    }
    const last = parts[parts.length - 1];
    const endings = [...this._fields.keys()].filter((name) => name.endsWith(`.${last}`));
    return endings.length === 1 ? this._fields.get(endings[0]) : undefined;
  }

  _nextId() {
    this._count += 1;
    return `${this._prefix}-${this._count}`;
  }
}

/**
 * A `<select>` of values with their labels.
 * @param {{value: string, text: string}[]} options
 * @param {import('./ui.js').Attrs} [attrs]
 */
export function select(options, attrs = {}) {
  return h('select', attrs, options.map((o) => h('option', { value: o.value }, o.text)));
}
