/**
 * Items of a note's ranked lists (recommendations, follow-up actions) in the Yjs document: each
 * item is a Y.Map whose free-text fields are Y.Text; the order of the Y.Array is the rank.
 * Each change is one transaction, so others see it whole.
 */

import * as Y from 'yjs';
import { fieldsOf, isFreeText, kindOf } from './template.js';

/** @typedef {import('./template.js').Schema} Schema */

/**
 * Add an empty item at the end of `list`.
 * @param {Y.Array<unknown>} list
 * @param {Schema} itemSchema
 */
export function addItem(list, itemSchema) {
  transact(list, () => {
    const item = new Y.Map();
    list.push([item]);
    fillSkeleton(item, itemSchema);
  });
}

/**
 * Move the item at `from` to `to`: a fresh copy inserted and the old one deleted, in one
 * transaction (Yjs has no move).
 * @param {Y.Array<unknown>} list
 * @param {number} from
 * @param {number} to
 */
export function moveItem(list, from, to) {
  if (from === to || to < 0 || to >= list.length) return;
  transact(list, () => {
    const copy = snapshot(list.get(from));
    list.delete(from, 1);
    const item = prelim(copy);
    list.insert(to, [item]);
    if (item instanceof Y.AbstractType) fill(item, copy);
  });
}

/**
 * @param {Y.Array<unknown>} list
 * @param {number} index
 */
export function removeItem(list, index) {
  if (index >= 0 && index < list.length) list.delete(index, 1);
}

/**
 * @param {Y.AbstractType<any>} type
 * @param {() => void} change
 */
function transact(type, change) {
  if (type.doc) type.doc.transact(change);
  else change();
}

/**
 * Give a new item's fields their shared types: Y.Text for free text, Y.Map for nested
 * objects, Y.Array for lists. Plain values stay unset until someone chooses one.
 * @param {Y.Map<unknown>} map integrated in a document
 * @param {Schema} schema
 */
function fillSkeleton(map, schema) {
  for (const [name, field] of fieldsOf(schema)) {
    if (isFreeText(field)) {
      map.set(name, new Y.Text());
    } else if (kindOf(field) === 'object') {
      fillSkeleton(map.set(name, new Y.Map()), field);
    } else if (kindOf(field) === 'list' || kindOf(field) === 'choices') {
      map.set(name, new Y.Array());
    }
  }
}

/**
 * What a shared value holds, read before it is deleted.
 * @typedef {{kind: 'text', text: string} | {kind: 'map', entries: [string, Copy][]}
 *   | {kind: 'array', items: Copy[]} | {kind: 'value', value: unknown}} Copy
 */

/**
 * @param {unknown} value
 * @returns {Copy}
 */
function snapshot(value) {
  if (value instanceof Y.Text) return { kind: 'text', text: value.toString() };
  if (value instanceof Y.Map) return { kind: 'map', entries: [...value.entries()].map(([k, v]) => [k, snapshot(v)]) };
  if (value instanceof Y.Array) return { kind: 'array', items: value.toArray().map(snapshot) };
  return { kind: 'value', value };
}

/**
 * An empty shared type (or the plain value) for a copy, to insert before filling it.
 * @param {Copy} copy
 */
function prelim(copy) {
  switch (copy.kind) {
    case 'text': return new Y.Text();
    case 'map': return new Y.Map();
    case 'array': return new Y.Array();
    default: return copy.value;
  }
}

/**
 * Fill an integrated shared type from a copy.
 * @param {Y.AbstractType<any>} target
 * @param {Copy} copy
 */
function fill(target, copy) {
  if (copy.kind === 'text' && target instanceof Y.Text) {
    target.insert(0, copy.text);
  } else if (copy.kind === 'map' && target instanceof Y.Map) {
    for (const [name, entry] of copy.entries) {
      const value = target.set(name, prelim(entry));
      if (value instanceof Y.AbstractType) fill(value, entry);
    }
  } else if (copy.kind === 'array' && target instanceof Y.Array) {
    copy.items.forEach((entry, i) => {
      const value = prelim(entry);
      target.insert(i, [value]);
      if (value instanceof Y.AbstractType) fill(value, entry);
    });
  }
}
