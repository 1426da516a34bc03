/**
 * A ranked list of the note form (recommendations, follow-up actions): one block per item with
 * its rank, up / down / remove, and "add" below. Items are kept by identity, so when someone
 * adds or removes an item the others' inputs stay where they are (with their caret).
 */

import * as Y from 'yjs';
import { t } from '../i18n/index.js';
import { h } from '../ui.js';
import { addItem, moveItem, removeItem } from './items.js';
import { labelOf } from './template.js';

/** @typedef {import('./template.js').Schema} Schema */
/** @typedef {import('./form.js').NoteForm} NoteForm */
/** @typedef {import('./form.js').Scope} Scope */

/**
 * @typedef {object} Entry
 * @property {HTMLLIElement} el
 * @property {Scope} scope
 */

export class ItemList {
  /**
   * @param {NoteForm} form builds the fields of each item
   * @param {Y.Array<unknown>} list
   * @param {Schema} itemSchema
   * @param {string} listLabel
   * @param {string[]} path
   * @param {Scope} scope
   * @param {number} [maxItems] the template's limit: the server refuses an item beyond it
   */
  constructor(form, list, itemSchema, listLabel, path, scope, maxItems = Infinity) {
    this._form = form;
    this._list = list;
    this._schema = itemSchema;
    this._path = path;
    this._scope = scope;
    /** The item's name ("Recommendation"), or the list's when the template gives none. */
    this._itemLabel = itemSchema['x-label'] || itemSchema.title ? labelOf(itemSchema, '') : listLabel;
    /** @type {Map<unknown, Entry>} */
    this._entries = new Map();
    this._items = h('ol', { class: 'note-items' });
    this._empty = h('p', { class: 'empty' }, t('note.list_empty'));
    this._maxItems = maxItems;
    const add = h('button', {
      type: 'button', class: 'button-quiet small note-add', 'data-note-add': path.join('.'),
      onclick: () => {
        addItem(list, itemSchema);
        this._focusItem(list.length - 1, 'input, textarea, select');
      },
    }, t('note.add_item', { item: this._itemLabel }));
    this._add = add;
    this.el = h('div', { class: 'note-list-body' }, this._items, this._empty, add);
    scope.observe(list, () => this._render());
    this._render();
  }

  /** Bring the shown items in line with the list: remove the gone, insert the new, renumber. */
  _render() {
    const items = this._list.toArray();
    for (const [item, entry] of this._entries) {
      if (items.includes(item)) continue;
      entry.scope.dispose();
      entry.el.remove();
      this._entries.delete(item);
    }
    items.forEach((item, index) => {
      let entry = this._entries.get(item);
      if (!entry) {
        entry = this._entry(item, index);
        // Plain values have no identity to keep: they are rebuilt each time.
        if (item instanceof Y.Map) this._entries.set(item, entry);
      }
      const here = this._items.children[index];
      if (here !== entry.el) this._items.insertBefore(entry.el, here ?? null);
      this._number(entry.el, index, items.length);
    });
    while (this._items.children.length > items.length) this._items.lastElementChild?.remove();
    this._empty.hidden = items.length > 0;
    // Full: one more would be refused by the server (and cost the edits typed meanwhile).
    this._add.disabled = items.length >= this._maxItems;
    this._form.repath(this._items);
  }

  /**
   * @param {unknown} item
   * @param {number} index
   * @returns {Entry}
   */
  _entry(item, index) {
    const scope = this._scope.child();
    const path = [...this._path, String(index)];
    const button = (/** @type {string} */ role, /** @type {string} */ text, /** @type {string} */ label, /** @type {() => void} */ action) => h('button', {
      type: 'button', class: 'button-quiet small', 'data-move': role, 'aria-label': label, title: label, onclick: action,
    }, text);
    const indexOf = () => this._list.toArray().indexOf(item);
    const move = (/** @type {number} */ by, /** @type {string} */ role) => {
      const from = indexOf();
      moveItem(this._list, from, from + by);
      this._focusItem(from + by, `[data-move="${role}"]:not(:disabled)`);
    };
    const el = h('li', { class: 'note-item', 'data-key': String(index) },
      h('div', { class: 'note-item-head' },
        h('span', { class: 'rank' }),
        h('span', { class: 'note-item-title' }, this._itemLabel),
        h('span', { class: 'note-item-buttons' },
          button('up', '↑', t('note.move_up'), () => move(-1, 'up')),
          button('down', '↓', t('note.move_down'), () => move(1, 'down')),
          button('remove', '✕', t('note.remove_item', { item: this._itemLabel }), () => removeItem(this._list, indexOf())))),
      item instanceof Y.Map ? this._form.fields(this._schema, item, path, scope) : h('p', { class: 'meta' }, String(item)));
    return { el, scope };
  }

  /**
   * Show an item's rank and which moves it allows.
   * @param {HTMLLIElement} el
   * @param {number} index
   * @param {number} count
   */
  _number(el, index, count) {
    el.dataset.key = String(index);
    const rank = el.querySelector(':scope > .note-item-head > .rank');
    if (rank) rank.textContent = String(index + 1);
    const up = el.querySelector(':scope > .note-item-head [data-move="up"]');
    const down = el.querySelector(':scope > .note-item-head [data-move="down"]');
    if (up instanceof HTMLButtonElement) up.disabled = index === 0;
    if (down instanceof HTMLButtonElement) down.disabled = index === count - 1;
  }

  /**
   * Put the keyboard focus into the item at `index` (after adding or moving it).
   * @param {number} index
   * @param {string} selector
   */
  _focusItem(index, selector) {
    const target = this._items.children[index]?.querySelector(selector);
    if (target instanceof HTMLElement) target.focus();
  }
}
