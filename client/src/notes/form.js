/**
 * The consensus-note form, rendered from the template and bound to the note's Yjs document.
 *
 * Each control carries `data-field` with its dot path ("staging.stage_group",
 * "recommendations.0.detail"); objects and lists carry `data-group`. Free text is edited
 * character-wise (text.js); coded values, numbers, dates and yes/no are set in their parent
 * Y.Map on change. Each control watches only its own shared value, so a change re-renders that
 * control and nothing else; a list re-renders its items when items come, go or move.
 */

import * as Y from 'yjs';
import { t } from '../i18n/index.js';
import { h, mount } from '../ui.js';
import { ItemList } from './list.js';
import { TextBinding } from './text.js';
import {
  allowsNull, fieldsOf, hintOf, isInteger, isRequired, kindOf, labelOf, optionsOf,
} from './template.js';

/** @typedef {import('./template.js').Schema} Schema */
/** @typedef {import('./template.js').Kind} Kind */
/** @typedef {import('./sync.js').Presence} Presence */
/** @typedef {import('../api.js').FieldError} FieldError */
/** @typedef {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} Control */
/** @typedef {Y.Map<unknown>} YMap */

/** Kinds whose value is a shared type: the field is built anew when that type is replaced. */
const SHARED = new Set(['object', 'list', 'choices', 'text']);

/** Observers of one part of the form, removed together when that part goes. */
export class Scope {
  constructor() {
    /** @type {(() => void)[]} */
    this._undo = [];
  }

  /**
   * @template {Y.YEvent<any>} E
   * @param {Y.AbstractType<E>} type
   * @param {(event: E) => void} observer
   */
  observe(type, observer) {
    type.observe(observer);
    this._undo.push(() => type.unobserve(observer));
  }

  child() {
    const scope = new Scope();
    this._undo.push(() => scope.dispose());
    return scope;
  }

  dispose() {
    for (const undo of this._undo.splice(0)) undo();
  }
}

export class NoteForm {
  /**
   * @param {Schema} template
   * @param {{onFocus?: (field: string | null) => void}} [options] presence: the field the user is in
   */
  constructor(template, { onFocus = () => {} } = {}) {
    this.template = template;
    this._prefix = `note${Math.random().toString(36).slice(2, 8)}`;
    this._count = 0;
    this._scope = new Scope();
    /** @type {Presence[]} */
    this._presence = [];
    this._self = -1;
    this._onFocus = onFocus;
    /** @type {HTMLElement | null} the control the user is in, and the path last sent for it */
    this._focused = null;
    this._focusedPath = '';
    // A disabled fieldset disables every control in it: that is the read-only lock.
    this.el = h('fieldset', { class: 'note-form' });
    this.el.addEventListener('focusin', (event) => this._focus(controlOf(event.target)));
    this.el.addEventListener('focusout', (event) => {
      if (!controlOf(event.relatedTarget)) this._focus(null);
    });
    const edited = (/** @type {Event} */ event) => clearMark(controlOf(event.target));
    this.el.addEventListener('input', edited);
    this.el.addEventListener('change', edited);
  }

  /**
   * Show the note's document (again, after the document was replaced).
   * @param {YMap} root
   */
  bind(root) {
    this._focus(null);
    this._scope.dispose();
    this._scope = new Scope();
    mount(this.el, this.fields(this.template, root, [], this._scope));
    this._showPresence();
  }

  /** @param {boolean} readonly */
  setReadonly(readonly) {
    if (readonly) this._focus(null); // a control disabled under the user sends no blur
    this.el.disabled = readonly;
    this.el.classList.toggle('readonly', readonly);
  }

  /**
   * Show who is in which field (not ourselves).
   * @param {Presence[]} presence
   * @param {number} self our user id
   */
  setPresence(presence, self) {
    this._presence = presence;
    this._self = self;
    this._showPresence();
  }

  /**
   * Mark the fields the server named (by dot path; a path the form does not show marks the
   * nearest part that it does).
   * @param {FieldError[]} errors
   */
  markErrors(errors) {
    this.clearErrors();
    for (const error of errors) {
      const target = this._find(error.field);
      if (!target) continue;
      const wrapper = wrapperOf(target);
      target.setAttribute('aria-invalid', 'true');
      const slot = wrapper?.querySelector(':scope > .field-error');
      if (slot instanceof HTMLElement) {
        slot.hidden = false;
        slot.textContent = slot.textContent ? `${slot.textContent} ${error.message}` : error.message;
      }
    }
  }

  clearErrors() {
    for (const marked of this.el.querySelectorAll('[aria-invalid="true"]')) clearMark(marked);
  }

  destroy() {
    this._scope.dispose();
  }

  // -- building ---------------------------------------------------------------------------

  /**
   * The fields of an object.
   * @param {Schema} schema
   * @param {YMap} map
   * @param {string[]} path
   * @param {Scope} scope
   * @returns {HTMLElement[]}
   */
  fields(schema, map, path, scope) {
    return fieldsOf(schema).map(([name, field]) => this._slot(isRequired(schema, name), name, field, map, [...path, name], scope));
  }

  /**
   * One field; built anew when its shared value is replaced (not when it changes).
   * @param {boolean} required
   * @param {string} name
   * @param {Schema} schema
   * @param {YMap} map the parent
   * @param {string[]} path
   * @param {Scope} scope
   */
  _slot(required, name, schema, map, path, scope) {
    const kind = kindOf(schema);
    let inner = scope.child();
    let el = this._field(required, name, schema, kind, map, path, inner);
    if (SHARED.has(kind)) {
      let bound = map.get(name);
      scope.observe(map, (event) => {
        if (!event.keysChanged.has(name) || map.get(name) === bound) return;
        bound = map.get(name);
        inner.dispose();
        inner = scope.child();
        const next = this._field(required, name, schema, kind, map, pathOf(el, this.el), inner);
        el.replaceWith(next);
        el = next;
        if (this._focused && !this._focused.isConnected) this._focus(null);
        this._showPresence();
      });
    }
    return el;
  }

  /**
   * @param {boolean} required
   * @param {string} name
   * @param {Schema} schema
   * @param {Kind} kind
   * @param {YMap} map
   * @param {string[]} path
   * @param {Scope} scope
   * @returns {HTMLElement}
   */
  _field(required, name, schema, kind, map, path, scope) {
    const value = map.get(name);
    const label = labelOf(schema, name);
    switch (kind) {
      case 'object':
        return this._group('note-group', name, label, required, path,
          value instanceof Y.Map ? this.fields(schema, value, path, scope) : [missing()]);
      case 'list':
        return this._group('note-list', name, label, required, path,
          value instanceof Y.Array ? [new ItemList(this, value, schema.items ?? {}, label, path, scope, schema.maxItems).el] : [missing()]);
      case 'choices':
        return this._group('note-choices', name, label, required, path,
          value instanceof Y.Array ? [this._choices(schema.items ?? {}, value, path, scope)] : [missing()]);
      case 'text':
        if (value instanceof Y.Text) return this._wrap(name, schema, kind, required, this._text(schema, value, path, scope));
        return this._wrap(name, schema, kind, required, this._plain(schema, 'line', map, name, path, scope));
      default:
        return this._wrap(name, schema, kind, required, this._plain(schema, kind, map, name, path, scope));
    }
  }

  /**
   * A labelled control with room for presence and an error.
   * @param {string} name
   * @param {Schema} schema
   * @param {Kind} kind
   * @param {boolean} required
   * @param {Control | HTMLOutputElement} control
   */
  _wrap(name, schema, kind, required, control) {
    control.id = `${this._prefix}-${++this._count}`;
    if (required) control.setAttribute('aria-required', 'true');
    const hint = hintOf(schema);
    return h('div', { class: `note-field kind-${kind}`, 'data-key': name },
      h('div', { class: 'note-label' },
        h('label', { for: control.id }, labelOf(schema, name), required && requiredMark()),
        h('span', { class: 'presence' })),
      control,
      hint && h('p', { class: 'hint' }, hint),
      h('p', { class: 'field-error', hidden: true }));
  }

  /**
   * A fieldset for an object, a list or a set of choices.
   * @param {string} className
   * @param {string} name
   * @param {string} label
   * @param {boolean} required
   * @param {string[]} path
   * @param {HTMLElement[]} content
   */
  _group(className, name, label, required, path, content) {
    return h('fieldset', { class: className, 'data-key': name, 'data-group': path.join('.') },
      h('legend', null, label, required && requiredMark(), h('span', { class: 'presence' })),
      h('p', { class: 'field-error', hidden: true }),
      content);
  }

  /**
   * Free text, character-wise.
   * @param {Schema} schema
   * @param {Y.Text} text
   * @param {string[]} path
   * @param {Scope} scope
   */
  _text(schema, text, path, scope) {
    const control = schema['x-multiline']
      ? h('textarea', { rows: '3', 'data-field': path.join('.') })
      : h('input', { type: 'text', 'data-field': path.join('.') });
    if (schema.maxLength !== undefined) control.maxLength = schema.maxLength;
    const binding = new TextBinding(control, text);
    scope.observe(text, (event) => binding.changed(event));
    return control;
  }

  /**
   * A plain value of `map`, set when the control changes.
   * @param {Schema} schema
   * @param {Kind} kind
   * @param {YMap} map
   * @param {string} name
   * @param {string[]} path
   * @param {Scope} scope
   * @returns {Control | HTMLOutputElement}
   */
  _plain(schema, kind, map, name, path, scope) {
    const field = path.join('.');
    if (kind === 'other') {
      const output = h('output', { 'data-field': field });
      const show = () => { output.textContent = JSON.stringify(map.get(name) ?? null); };
      scope.observe(map, (event) => { if (event.keysChanged.has(name)) show(); });
      show();
      return output;
    }
    const { control, read, write } = plainControl(schema, kind, field);
    control.addEventListener('change', () => {
      const value = read();
      if (value === undefined) return; // not a value (e.g. "1e" in a number input)
      if (value === null) {
        if (allowsNull(schema)) map.set(name, null);
        else if (map.has(name)) map.delete(name);
      } else if (map.get(name) !== value) {
        map.set(name, value);
      }
    });
    scope.observe(map, (event) => { if (event.keysChanged.has(name)) write(map.get(name)); });
    write(map.get(name));
    return control;
  }

  /**
   * Checkboxes for a list of coded values.
   * @param {Schema} itemSchema
   * @param {Y.Array<unknown>} list
   * @param {string[]} path
   * @param {Scope} scope
   */
  _choices(itemSchema, list, path, scope) {
    const boxes = optionsOf(itemSchema).map((option) => {
      const box = h('input', { type: 'checkbox', 'data-field': path.join('.') });
      box.addEventListener('change', () => {
        const at = list.toArray().indexOf(option.value);
        if (box.checked && at < 0) list.push([option.value]);
        else if (!box.checked && at >= 0) list.delete(at, 1);
      });
      return { box, option };
    });
    const show = () => {
      const values = list.toArray();
      for (const { box, option } of boxes) box.checked = values.includes(option.value);
    };
    scope.observe(list, show);
    show();
    return h('div', { class: 'choices' }, boxes.map(({ box, option }) => h('label', { class: 'choice' }, box, option.label)));
  }

  // -- presence and paths -----------------------------------------------------------------

  _showPresence() {
    for (const slot of this.el.querySelectorAll('.presence')) slot.replaceChildren();
    for (const person of this._presence) {
      if (person.user_id === this._self || !person.field) continue;
      const target = this._find(person.field, false);
      const slot = target && wrapperOf(target)?.querySelector(':scope > .note-label .presence, :scope > legend .presence');
      slot?.append(h('span', {
        class: 'presence-chip', 'data-presence': person.field, 'data-user': person.user_id,
        title: t('note.in_field', { name: person.name }),
      }, person.name));
    }
  }

  /**
   * Presence: tell where the user is, when that changed.
   * @param {HTMLElement | null} control
   */
  _focus(control) {
    const path = control?.dataset.field ?? '';
    this._focused = path ? control : null;
    if (path === this._focusedPath) return;
    this._focusedPath = path;
    this._onFocus(path || null);
  }

  /**
   * Set every `data-field` and `data-group` below `el` from the `data-key`s above them (after
   * list items moved).
   * @param {Element} el
   */
  repath(el) {
    for (const node of el.querySelectorAll('[data-field], [data-group]')) {
      const path = pathOf(node, this.el).join('.');
      if (node instanceof HTMLElement && node.dataset.field !== undefined) node.dataset.field = path;
      else if (node instanceof HTMLElement) node.dataset.group = path;
    }
    // The user's field moved with its item, or went with it (a removed element sends no blur).
    if (this._focused) this._focus(this._focused.isConnected ? this._focused : null);
    this._showPresence();
  }

  /**
   * The control (or group) of a dot path; with `nearest`, of the nearest enclosing path shown.
   * @param {string} field
   * @param {boolean} [nearest]
   * @returns {HTMLElement | null}
   */
  _find(field, nearest = true) {
    const parts = field.split('.');
    while (parts.length > 0) {
      const path = CSS.escape(parts.join('.'));
      const found = this.el.querySelector(`[data-field="${path}"], [data-group="${path}"]`);
      if (found instanceof HTMLElement) return found;
      if (!nearest) return null;
      parts.pop();
    }
    return null;
  }
}

/**
 * A control for a plain value, with how to read it (undefined: not a value; null: empty) and
 * how to show one.
 * @param {Schema} schema
 * @param {Kind} kind
 * @param {string} field
 * @returns {{control: Control, read: () => unknown, write: (value: unknown) => void}}
 */
function plainControl(schema, kind, field) {
  if (kind === 'select' || kind === 'boolean') {
    const options = kind === 'boolean'
      ? [{ value: true, label: t('common.yes') }, { value: false, label: t('common.no') }]
      : optionsOf(schema);
    const control = h('select', { 'data-field': field },
      h('option', { value: '' }, '—'),
      options.map((option, i) => h('option', { value: String(i) }, option.label)));
    return {
      control,
      read: () => (control.value === '' ? null : options[Number(control.value)].value),
      write: (value) => {
        const at = options.findIndex((o) => o.value === value);
        if (at < 0 && value !== null && value !== undefined) {
          // A value this template does not list: show it rather than hide it.
          options.push({ value, label: String(value) });
          control.append(h('option', { value: String(options.length - 1) }, String(value)));
          control.value = String(options.length - 1);
        } else {
          control.value = at < 0 ? '' : String(at);
        }
      },
    };
  }
  if (kind === 'number') {
    const control = h('input', {
      type: 'number', 'data-field': field, step: isInteger(schema) ? '1' : 'any',
      min: schema.minimum ?? null, max: schema.maximum ?? null, inputmode: isInteger(schema) ? 'numeric' : 'decimal',
    });
    return {
      control,
      read: () => {
        if (control.value === '') return control.validity.badInput ? undefined : null;
        const number = Number(control.value);
        return Number.isFinite(number) ? number : undefined;
      },
      write: (value) => { control.value = typeof value === 'number' ? String(value) : ''; },
    };
  }
  const control = h('input', { type: kind === 'date' ? 'date' : 'text', 'data-field': field });
  return {
    control,
    read: () => (control.value === '' ? null : control.value),
    write: (value) => { control.value = typeof value === 'string' ? value : ''; },
  };
}

/**
 * The `data-key`s from the form down to `el`: its dot path.
 * @param {Element} el
 * @param {Element} form
 */
function pathOf(el, form) {
  const keys = [];
  for (let node = /** @type {Element | null} */ (el); node && node !== form; node = node.parentElement) {
    if (node instanceof HTMLElement && node.dataset.key !== undefined) keys.unshift(node.dataset.key);
  }
  return keys;
}

/**
 * @param {EventTarget | null} target
 * @returns {HTMLElement | null}
 */
function controlOf(target) {
  const control = target instanceof HTMLElement ? target.closest('[data-field]') : null;
  return control instanceof HTMLElement ? control : null;
}

/**
 * The field or group a control (or group) belongs to.
 * @param {Element} el
 */
function wrapperOf(el) {
  return el.matches('[data-group]') ? el : el.closest('.note-field');
}

/**
 * Remove an error mark (the field was edited since).
 * @param {Element | null} el
 */
function clearMark(el) {
  if (!el?.hasAttribute('aria-invalid')) return;
  el.removeAttribute('aria-invalid');
  const slot = wrapperOf(el)?.querySelector(':scope > .field-error');
  if (slot instanceof HTMLElement) {
    slot.hidden = true;
    slot.textContent = '';
  }
}

function requiredMark() {
  return h('span', { class: 'required', title: t('note.required') }, ' *');
}

/** A part of the note the document does not have (yet): nothing to edit. */
function missing() {
  return h('p', { class: 'meta' }, t('note.unavailable'));
}
