/**
 * The chair's "Amend…": asks why the agreed plan is corrected, then opens an amendment (the note
 * becomes editable; finalizing it again signs the next version).
 */

import { t } from '../i18n/index.js';
import { ErrorSlot, busy, h } from '../ui.js';

/** @typedef {import('../api.js').Api} Api */

/**
 * The "Amend…" button and, once pressed, the reason form below it.
 * @param {Api} api
 * @param {number} caseId
 * @param {() => void} opened called once the server has opened the amendment
 */
export function amendControl(api, caseId, opened) {
  const slot = h('div', { class: 'amend-slot' });
  const button = h('button', {
    type: 'button', class: 'button-quiet', 'data-note-amend': '',
    onclick: () => {
      if (!slot.firstChild) slot.append(amendForm(api, caseId, () => { slot.replaceChildren(); opened(); }, () => slot.replaceChildren()));
    },
  }, t('note.amend'));
  return h('div', { class: 'amend' }, button, slot);
}

/**
 * @param {Api} api
 * @param {number} caseId
 * @param {() => void} opened
 * @param {() => void} cancel
 */
function amendForm(api, caseId, opened, cancel) {
  const errors = new ErrorSlot();
  const id = `amend-reason-${caseId}`;
  const reason = h('textarea', { id, rows: '2', 'data-note-amend-reason': '' });
  const confirm = h('button', { type: 'submit', class: 'button-primary', 'data-note-amend-confirm': '' }, t('note.amend_confirm'));
  const form = h('form', {
    class: 'amend-form',
    onsubmit: async (/** @type {SubmitEvent} */ event) => {
      event.preventDefault();
      errors.clear();
      if (!reason.value.trim()) {
        reason.setAttribute('aria-invalid', 'true');
        errors.show(new Error(t('note.amend_reason_needed')));
        reason.focus();
        return;
      }
      try {
        await busy(confirm, () => api.post(`/cases/${caseId}/plan/amendments`, { reason: reason.value.trim() }));
        opened();
      } catch (error) {
        errors.show(error);
      }
    },
  },
  h('label', { for: id }, t('note.amend_reason')),
  reason,
  errors.el,
  h('div', { class: 'form-actions' },
    confirm,
    h('button', { type: 'button', class: 'button-quiet', onclick: cancel }, t('common.cancel'))));
  setTimeout(() => reason.focus(), 0);
  return form;
}
