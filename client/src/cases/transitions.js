/**
 * The buttons that move a case to its next states; rejecting asks for a reason first.
 */

import { label, t } from '../i18n/index.js';
import { busy, h, mount } from '../ui.js';

/** @typedef {import('../types.js').Case} Case */
/** @typedef {import('./page.js').CaseContext} CaseContext */

/**
 * @param {CaseContext} context
 * @param {Case} c
 */
export function transitionsBar(context, c) {
  if (!context.app.may('move') || c.allowed_transitions.length === 0) return null;
  const reasonSlot = h('div', { class: 'reject-slot' });

  /**
   * @param {HTMLButtonElement} button
   * @param {string} to
   * @param {string} [reason]
   */
  async function move(button, to, reason) {
    context.errors.clear();
    try {
      /** @type {Case} */
      const updated = await busy(button, () => context.app.api.post(`/cases/${c.id}/transitions`, reason ? { to, reason } : { to }));
      context.show(updated);
    } catch (error) {
      context.errors.show(error);
    }
  }

  const buttons = c.allowed_transitions.map((to) => {
    const button = h('button', {
      type: 'button',
      class: to === 'rejected' ? 'button-quiet danger' : 'button-primary',
      'data-testid': `transition-${to}`,
      onclick: () => (to === 'rejected' ? mount(reasonSlot, rejectForm(move)) : void move(button, to)),
    }, label('action', to));
    return button;
  });
  return h('section', { class: 'transitions', 'aria-label': t('transition.label') }, buttons, reasonSlot);
}

/**
 * Asks why a case is rejected; the reason goes back to the requesting institution.
 * @param {(button: HTMLButtonElement, to: string, reason: string) => Promise<void>} move
 */
function rejectForm(move) {
  const reason = h('textarea', { id: 'reject-reason', rows: '2', required: true, 'data-testid': 'reject-reason' });
  const confirm = h('button', { type: 'submit', class: 'button-primary danger', 'data-testid': 'reject-confirm' }, t('transition.reject_confirm'));
  const form = h('form', {
    class: 'reject-form',
    onsubmit: (/** @type {SubmitEvent} */ event) => {
      event.preventDefault();
      if (reason.value.trim()) void move(confirm, 'rejected', reason.value.trim());
      else reason.focus();
    },
  },
  h('label', { for: 'reject-reason' }, t('transition.reject_reason')),
  reason,
  h('div', { class: 'form-actions' },
    confirm,
    h('button', { type: 'button', class: 'button-quiet', onclick: () => form.remove() }, t('common.cancel'))));
  setTimeout(() => reason.focus(), 0);
  return form;
}
