/**
 * The "invite an external specialist" panel of a board's calendar, for coordinators and
 * administrators: it creates a single-use link to send to the specialist.
 */

import { viewerTimeZone } from '../api.js';
import { FormFields, select } from '../form.js';
import { formatDateTime, label, t } from '../i18n/index.js';
import { busy, h, mount } from '../ui.js';
import { SPECIALTIES } from './board-form.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').Board} Board */
/** @typedef {import('../types.js').Institution} Institution */

/**
 * The reply to `POST /api/boards/{id}/invitations`.
 * @typedef {object} CreatedInvitation
 * @property {string} token
 * @property {string} url the join page's address, token included
 * @property {string} expires_at
 */

/**
 * @param {App} app
 * @param {Board} board
 * @param {Institution[]} institutions
 */
export function inviteForm(app, board, institutions) {
  const fields = new FormFields();
  // Invitations are for other institutions' specialists; offer those first.
  const others = institutions.filter((i) => i.id !== board.home_institution_id);
  const institution = select(
    [...others, ...institutions.filter((i) => i.id === board.home_institution_id)]
      .map((i) => ({ value: String(i.id), text: i.name })),
    { 'data-testid': 'invite-institution' });
  const specialty = select(SPECIALTIES.map((s) => ({ value: s, text: label('specialty', s) })), {
    'data-testid': 'invite-specialty',
  });
  const email = h('input', { type: 'email', maxlength: '200', autocomplete: 'off', 'data-testid': 'invite-email' });
  const submit = h('button', { type: 'submit', class: 'button-primary', 'data-testid': 'invite-submit' }, t('invite.submit'));
  const result = h('div', { class: 'invite-result', 'aria-live': 'polite' });

  /** @param {SubmitEvent} event */
  async function onSubmit(event) {
    event.preventDefault();
    fields.clear();
    result.replaceChildren();
    const body = { institution_id: Number(institution.value), specialty: specialty.value, email: email.value.trim() };
    try {
      /** @type {CreatedInvitation} */
      const created = await busy(submit, () => app.api.post(`/boards/${board.id}/invitations`, body));
      mount(result, invitationLink(created));
    } catch (error) {
      fields.showError(error);
    }
  }

  return h('form', { class: 'panel invite-form', onsubmit: onSubmit, novalidate: true, 'data-testid': 'invite-form' },
    h('h2', null, t('invite.title')),
    h('p', { class: 'hint' }, t('invite.lead')),
    fields.general.el,
    h('div', { class: 'inline-fields' },
      fields.field('institution_id', t('invite.institution'), institution),
      fields.field('specialty', t('invite.specialty'), specialty),
      fields.field('email', t('invite.email'), email, { className: 'grow' }),
      h('div', { class: 'field' }, submit)),
    result);
}

/**
 * The created link, read-only, with a button that copies it.
 * @param {CreatedInvitation} created
 */
function invitationLink(created) {
  const link = h('input', { id: 'invite-link', readonly: true, value: created.url, spellcheck: 'false', 'data-testid': 'invite-link' });
  const status = h('span', { class: 'status', role: 'status' });

  async function copy() {
    link.select();
    try {
      await navigator.clipboard.writeText(created.url);
      status.textContent = t('invite.copied');
    } catch {
      // No clipboard access (an insecure origin, or the permission refused): the link is selected.
      status.textContent = t('invite.copy_manually');
    }
  }

  return [
    h('div', { class: 'inline-fields' },
      h('div', { class: 'field grow' },
        h('label', { for: 'invite-link' }, t('invite.link')),
        link),
      h('div', { class: 'field' },
        h('button', { type: 'button', class: 'button-quiet', onclick: () => void copy(), 'data-testid': 'invite-copy' },
          t('invite.copy')))),
    h('p', { class: 'hint' },
      t('invite.expires', { time: formatDateTime(created.expires_at, viewerTimeZone()) }), ' ', status),
  ];
}
