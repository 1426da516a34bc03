/**
 * Tiny DOM helpers. Text always enters the page as text nodes or attribute values, never as
 * markup, so data from the server cannot inject HTML.
 */

import { ApiError } from './api.js';
import { t } from './i18n/index.js';

/** @typedef {Node | string | number | null | undefined | false} ChildItem */
/** @typedef {ChildItem | Array<ChildItem | Array<ChildItem>>} Child */

/**
 * Attributes of `h()`: `on<event>` functions become listeners; `value`, `checked`, `disabled`,
 * `selected`, `hidden`, `required` and `multiple` are set as properties (after the children are
 * in, so a select's `value` works); the rest as attributes (null, undefined and false leave one out).
 * @typedef {Record<string, unknown>} Attrs
 */

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'required', 'multiple']);

/**
 * Create an element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs | null} [attrs]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  /** @type {[string, unknown][]} */
  const properties = [];
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2).toLowerCase(), /** @type {EventListener} */ (value));
    } else if (PROPERTIES.has(name)) {
      properties.push([name, value]);
    } else if (value !== null && value !== undefined && value !== false) {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  // After the children, so that a <select>'s value can pick one of its options.
  for (const [name, value] of properties) /** @type {any} */ (el)[name] = value;
  return el;
}

/**
 * @param {Node} parent
 * @param {Child[]} children
 * @returns {void}
 */
function append(parent, children) {
  for (const child of children) {
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else if (child !== null && child !== undefined && child !== false) {
      parent.appendChild(document.createTextNode(String(child)));
    }
  }
}

/**
 * Replace all children of `parent`.
 * @param {Element} parent
 * @param {...Child} children
 */
export function mount(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

/**
 * A sentence for the user about a failure.
 * @param {unknown} error
 */
export function errorText(error) {
  if (error instanceof ApiError) {
    if (error.status === 0) return t('error.network');
    if (error.status === 403) return `${t('error.forbidden')} ${error.detail}`;
    return error.detail;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * An alert box for a failure, with the server's field errors (if any) listed below it.
 * @param {unknown} error
 * @param {{showFields?: boolean}} [options]
 */
export function errorBox(error, { showFields = true } = {}) {
  const fields = showFields && error instanceof ApiError ? error.errors : [];
  return h('div', { class: 'alert', role: 'alert', 'data-testid': 'error' },
    errorText(error),
    fields.length > 0 && h('ul', null, fields.map((e) => h('li', null, e.field ? `${e.field}: ${e.message}` : e.message))));
}

/**
 * An element that shows one error at a time (or nothing).
 */
export class ErrorSlot {
  constructor() {
    this.el = h('div', { class: 'error-slot', 'aria-live': 'polite' });
  }

  /**
   * @param {unknown} error
   * @param {{showFields?: boolean}} [options]
   */
  show(error, options) {
    mount(this.el, errorBox(error, options));
  }

  clear() {
    this.el.replaceChildren();
  }
}

/**
 * Run `action` with `button` disabled, so a double click cannot submit twice.
 * @template T
 * @param {HTMLButtonElement} button
 * @param {() => Promise<T>} action
 * @returns {Promise<T>}
 */
export async function busy(button, action) {
  button.disabled = true;
  try {
    return await action();
  } finally {
    button.disabled = false;
  }
}

/**
 * A page heading with optional actions aligned on the right.
 * @param {string} title
 * @param {...Child} actions
 */
export function pageHeader(title, ...actions) {
  return h('div', { class: 'page-header' }, h('h1', null, title), h('div', { class: 'actions' }, ...actions));
}
