/**
 * The small form that asks for an arrow's text, inside the viewer (Cornerstone's default is the
 * browser's blocking `prompt()`).
 */

import { t } from '../i18n/index.js';
import { h } from '../ui.js';

export class TextPrompt {
  constructor() {
    this.input = h('input', { type: 'text', maxlength: '200', 'data-testid': 'viewer-text-input', 'aria-label': t('viewer.arrow_text') });
    this.form = h('form', { class: 'viewer-prompt', hidden: true, 'data-testid': 'viewer-text-prompt' },
      h('label', null, t('viewer.arrow_text'), ' ', this.input),
      h('button', { type: 'submit', class: 'button-primary', 'data-testid': 'viewer-text-ok' }, t('viewer.ok')),
      h('button', { type: 'button', 'data-testid': 'viewer-text-cancel', onclick: () => this._finish(null) }, t('common.cancel')));
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this._finish(this.input.value.trim() || null);
    });
    this.form.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') this._finish(null);
      event.stopPropagation(); // typing must not scroll the images
    });
    /** @type {((text: string | null) => void) | null} */
    this._done = null;
    this.el = this.form;
  }

  /**
   * Ask for a text; `done` gets it, or null when the user cancels.
   * @param {string} initial
   * @param {(text: string | null) => void} done
   */
  ask(initial, done) {
    this._finish(null); // a question still open is cancelled by a new one
    this._done = done;
    this.input.value = initial;
    this.form.hidden = false;
    this.input.focus();
  }

  /** @param {string | null} text */
  _finish(text) {
    const done = this._done;
    this._done = null;
    this.form.hidden = true;
    done?.(text);
  }
}
