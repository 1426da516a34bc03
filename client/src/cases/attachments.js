/**
 * A case's attached documents (pathology reports) and the form to upload one.
 */

import { viewerTimeZone } from '../api.js';
import { formatDateTime, formatSize, t } from '../i18n/index.js';
import { ErrorSlot, busy, h } from '../ui.js';

/** @typedef {import('../types.js').Case} Case */
/** @typedef {import('../types.js').Attachment} Attachment */
/** @typedef {import('./page.js').CaseContext} CaseContext */

const ACCEPTED_TYPES = ['application/pdf', 'text/plain'];
const MAX_BYTES = 10 * 1024 * 1024;

/**
 * @param {CaseContext} context
 * @param {Case} c
 */
export function attachmentsSection(context, c) {
  return h('section', { class: 'panel attachments', 'aria-labelledby': 'attachments-heading' },
    h('h2', { id: 'attachments-heading' }, t('attachments.title')),
    c.attachments.length === 0
      ? h('p', { class: 'empty' }, t('attachments.empty'))
      : h('ul', { class: 'file-list' }, c.attachments.map((a) => attachmentRow(context, c, a))),
    context.app.may('author') && uploadForm(context, c));
}

/**
 * @param {CaseContext} context
 * @param {Case} c
 * @param {Attachment} a
 */
function attachmentRow(context, c, a) {
  return h('li', { 'data-testid': 'attachment-item' },
    h('a', { href: context.app.api.url(`/cases/${c.id}/attachments/${a.id}`), target: '_blank', rel: 'noopener' }, a.filename),
    h('span', { class: 'meta' }, ` ${formatSize(a.size)} · ${formatDateTime(a.uploaded_at, viewerTimeZone())}`));
}

/**
 * @param {CaseContext} context
 * @param {Case} c
 */
function uploadForm(context, c) {
  const errors = new ErrorSlot();
  const file = h('input', { id: 'attachment-file', type: 'file', accept: ACCEPTED_TYPES.join(','), 'data-testid': 'attachment-file' });
  const submit = h('button', { type: 'submit', class: 'button-primary', 'data-testid': 'attachment-submit' }, t('attachments.upload'));

  /** @param {SubmitEvent} event */
  async function onSubmit(event) {
    event.preventDefault();
    errors.clear();
    const chosen = file.files?.[0];
    if (!chosen) return errors.show(new Error(t('attachments.choose_file')));
    if (chosen.size > MAX_BYTES) return errors.show(new Error(t('attachments.too_large')));
    try {
      await busy(submit, () => context.app.api.upload(`/cases/${c.id}/attachments`, chosen));
      await context.reload();
    } catch (error) {
      errors.show(error);
    }
    return undefined;
  }

  return h('form', { class: 'upload-form', onsubmit: onSubmit, 'data-testid': 'attachment-form' },
    h('label', { for: 'attachment-file' }, t('attachments.file_label')),
    h('div', { class: 'inline-fields' }, file, submit),
    h('p', { class: 'hint' }, t('attachments.hint')),
    errors.el);
}
