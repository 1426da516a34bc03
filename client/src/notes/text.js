/**
 * A text input or textarea bound character-wise to a Y.Text: what the user types becomes the
 * smallest delete + insert at the place they typed, so two people typing in one field both keep
 * their words; what others type appears in place while the caret stays where it was.
 *
 * While an input method composes (pinyin, for instance) nothing is sent and nothing is changed
 * under the user's fingers; others' changes meanwhile are applied when the composition ends.
 */

/** @typedef {import('yjs').Text} YText */
/** @typedef {import('yjs').YTextEvent} YTextEvent */
/** @typedef {{insert?: string | object, retain?: number, delete?: number}} DeltaOp */

export class TextBinding {
  /**
   * @param {HTMLInputElement | HTMLTextAreaElement} control
   * @param {YText} text
   */
  constructor(control, text) {
    this.control = control;
    this.text = text;
    /** What the control showed after the last change we know of. */
    this._shown = text.toString();
    this._composing = false;
    /** Others' changes that arrived while the user was composing. */
    this._missed = /** @type {DeltaOp[][]} */ ([]);
    control.value = this._shown;
    control.addEventListener('input', () => { if (!this._composing) this._apply(); });
    control.addEventListener('compositionstart', () => { this._composing = true; });
    control.addEventListener('compositionend', () => {
      this._composing = false;
      this._apply();
    });
  }

  /**
   * The Y.Text changed (not by this binding): show it, keeping the caret where it was.
   * @param {YTextEvent} event
   */
  changed(event) {
    if (event.transaction.origin === this) return;
    const delta = /** @type {DeltaOp[]} */ (event.delta);
    if (this._composing) {
      this._missed.push(delta);
      return;
    }
    this._show([delta]);
  }

  /** Turn what the user changed into a delete and an insert on the Y.Text. */
  _apply() {
    const control = this.control;
    const change = diff(this._shown, control.value, control.selectionEnd ?? undefined);
    const missed = this._missed;
    this._missed = [];
    if (change.removed > 0 || change.inserted) {
      // Positions in what the user saw, moved past what others changed meanwhile.
      const start = missed.reduce((index, delta) => transformIndex(delta, index), change.index);
      const end = missed.reduce((index, delta) => transformIndex(delta, index), change.index + change.removed);
      const apply = () => {
        if (end > start) this.text.delete(start, end - start);
        if (change.inserted) this.text.insert(start, change.inserted);
      };
      if (this.text.doc) this.text.doc.transact(apply, this);
      else apply();
      if (missed.length > 0) this._showAt(start + change.inserted.length);
    } else if (missed.length > 0) {
      this._show(missed);
    }
    this._shown = this.text.toString();
  }

  /**
   * Show the Y.Text, the selection moved through `deltas`.
   * @param {DeltaOp[][]} deltas
   */
  _show(deltas) {
    const control = this.control;
    const text = this.text.toString();
    this._shown = text;
    if (control.value === text) return;
    const focused = control.ownerDocument.activeElement === control;
    const start = control.selectionStart ?? 0;
    const end = control.selectionEnd ?? 0;
    const direction = control.selectionDirection ?? 'none';
    control.value = text;
    if (focused) {
      const move = (/** @type {number} */ index) => deltas.reduce((i, delta) => transformIndex(delta, i), index);
      control.setSelectionRange(move(start), move(end), direction);
    }
  }

  /**
   * Show the Y.Text with the caret at `caret`.
   * @param {number} caret
   */
  _showAt(caret) {
    this._shown = this.text.toString();
    this.control.value = this._shown;
    if (this.control.ownerDocument.activeElement === this.control) this.control.setSelectionRange(caret, caret);
  }
}

/**
 * The one replaced range between two versions of a text: `removed` characters at `index`
 * replaced by `inserted`. Where the text alone is ambiguous ("aa" → "aaa") the caret after the
 * edit says where the user typed.
 * @param {string} before
 * @param {string} after
 * @param {number} [caret] the caret position after the edit
 * @returns {{index: number, removed: number, inserted: string}}
 */
export function diff(before, after, caret) {
  const shorter = Math.min(before.length, after.length);
  let prefix = 0;
  while (prefix < shorter && before[prefix] === after[prefix]) prefix += 1;
  if (caret !== undefined) prefix = Math.min(prefix, Math.max(0, caret - Math.max(0, after.length - before.length)));
  if (prefix > 0 && isHighSurrogate(before.charCodeAt(prefix - 1))) prefix -= 1; // never split a pair
  let suffix = 0;
  while (suffix < shorter - prefix && before[before.length - 1 - suffix] === after[after.length - 1 - suffix]) suffix += 1;
  if (suffix > 0 && isLowSurrogate(before.charCodeAt(before.length - suffix))) suffix -= 1;
  return {
    index: prefix,
    removed: before.length - prefix - suffix,
    inserted: after.slice(prefix, after.length - suffix),
  };
}

/**
 * Where a position in a text is after a change given as a Yjs delta. Text inserted exactly at
 * the position goes after it: someone typing where our caret is does not push the caret on.
 * @param {DeltaOp[]} delta
 * @param {number} index
 */
export function transformIndex(delta, index) {
  let old = 0; // how far into the text before the change the delta has gone
  let shift = 0;
  for (const op of delta) {
    if (old > index) break;
    if (op.retain !== undefined) {
      old += op.retain;
    } else if (op.insert !== undefined) {
      if (old < index) shift += typeof op.insert === 'string' ? op.insert.length : 1;
    } else if (op.delete !== undefined) {
      shift -= Math.min(op.delete, index - old);
      old += op.delete;
    }
  }
  return index + shift;
}

/** @param {number} code */
function isHighSurrogate(code) {
  return code >= 0xd800 && code <= 0xdbff;
}

/** @param {number} code */
function isLowSurrogate(code) {
  return code >= 0xdc00 && code <= 0xdfff;
}
