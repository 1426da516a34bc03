/**
 * The join page: an external specialist opens an invitation link, sees what they are invited to
 * and creates their account. It needs no login; the link's token is the credential.
 */

import { ApiError, viewerTimeZone } from './api.js';
import { FormFields } from './form.js';
import { formatDateTime, label, t } from './i18n/index.js';
import { busy, h, mount } from './ui.js';

/** @typedef {import('./app.js').App} App */
/** @typedef {import('./types.js').User} User */

/**
 * An invitation as `GET /api/invitations/{token}` shows it to the person invited.
 * @typedef {object} Invitation
 * @property {number} board_id
 * @property {string} board_name
 * @property {string} specialty
 * @property {string} institution_name
 * @property {string} expires_at
 */

/** How the server refuses an invitation's token: forged or expired (401), unknown (404), used (409). */
const REFUSED = new Set([401, 404, 409]);

/**
 * @param {App} app
 * @param {Record<string, string>} params `boardId` from the path, `token` from the query
 */
export async function joinPage(app, { boardId, token = '' }) {
  if (!token) return invalidNotice(null);
  /** @type {Invitation} */
  let invitation;
  try {
    invitation = await app.api.get(`/invitations/${encodeURIComponent(token)}`);
  } catch (error) {
    if (error instanceof ApiError && REFUSED.has(error.status)) return invalidNotice(error);
    throw error;
  }
  // The server would refuse the account for another board; say so before the form is filled in.
  if (String(invitation.board_id) !== boardId) return invalidNotice(null);
  const page = h('section', { class: 'login-page join-page' });
  mount(page, joinForm(app, invitation, token, (error) => mount(page, invitationRefused(error))));
  return page;
}

/**
 * @param {App} app
 * @param {Invitation} invitation
 * @param {string} token
 * @param {(error: ApiError) => void} onRefused the token stopped working while the form was open
 */
function joinForm(app, invitation, token, onRefused) {
  const fields = new FormFields();
  const displayName = h('input', { required: true, maxlength: '200', autocomplete: 'name', 'data-testid': 'join-display-name' });
  const username = h('input', {
    required: true, maxlength: '64', autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false',
    'data-testid': 'join-username',
  });
  const password = h('input', { type: 'password', required: true, autocomplete: 'new-password', 'data-testid': 'join-password' });
  const password2 = h('input', { type: 'password', required: true, autocomplete: 'new-password', 'data-testid': 'join-password2' });
  const submit = h('button', { type: 'submit', class: 'button-primary', 'data-testid': 'join-submit' }, t('join.submit'));

  /** @param {SubmitEvent} event */
  async function onSubmit(event) {
    event.preventDefault();
    fields.clear();
    if (password.value !== password2.value) {
      const message = t('join.password_mismatch');
      fields.showError(new ApiError(422, message, [{ field: 'password2', message }]));
      password2.select();
      return;
    }
    const body = {
      token,
      board_id: invitation.board_id,
      username: username.value.trim(),
      password: password.value,
      display_name: displayName.value.trim(),
    };
    try {
      await busy(submit, () => app.api.post('/invitations/accept', body));
      // The reply set the login cookie; from here on the app has a session like after a login.
      /** @type {User} */
      const user = await app.api.get('/me');
      app.signedIn(user, '/boards');
    } catch (error) {
      if (error instanceof ApiError && isTokenRefusal(error)) onRefused(error);
      else fields.showError(error);
    }
  }

  return h('form', { class: 'login-form join-form', onsubmit: onSubmit, novalidate: true, 'data-testid': 'join-form' },
    h('h1', null, t('join.title')),
    h('p', { class: 'lead' }, t('join.lead')),
    invitationFacts(invitation),
    h('h2', null, t('join.account')),
    fields.general.el,
    fields.field('display_name', t('join.display_name'), displayName),
    fields.field('username', t('login.username'), username, { hint: t('join.username_hint') }),
    fields.field('password', t('login.password'), password, { hint: t('join.password_hint') }),
    fields.field('password2', t('join.password2'), password2),
    h('div', { class: 'form-actions' }, submit));
}

/**
 * Whether accepting failed because of the invitation itself, not because of the form's fields.
 * @param {ApiError} error
 */
function isTokenRefusal(error) {
  return error.status === 401 || (error.status === 409 && error.errors.some((e) => e.field.endsWith('token')));
}

/** @param {Invitation} invitation */
function invitationFacts(invitation) {
  return h('dl', { class: 'facts' },
    fact(t('join.board'), invitation.board_name, 'join-board-name'),
    fact(t('join.institution'), invitation.institution_name, 'join-institution'),
    fact(t('join.specialty'), label('specialty', invitation.specialty), 'join-specialty'),
    fact(t('join.expires'), formatDateTime(invitation.expires_at, viewerTimeZone()), 'join-expires'));
}

/**
 * @param {string} term
 * @param {string} value
 * @param {string} testid
 */
function fact(term, value, testid) {
  return h('div', null, h('dt', null, term), h('dd', { 'data-testid': testid }, value));
}

/**
 * The page in place of the form when the link cannot be used.
 * @param {ApiError | null} error null for a link that is malformed on its face
 */
function invalidNotice(error) {
  return h('section', { class: 'login-page join-page' }, invitationRefused(error));
}

/** @param {ApiError | null} error */
function invitationRefused(error) {
  const used = error?.status === 409;
  return h('div', { class: 'login-form', role: 'alert', 'data-testid': 'join-invalid' },
    h('h1', null, t('join.invalid_title')),
    h('p', null, used ? t('join.used') : t('join.invalid')),
    used && h('p', null, h('a', { href: '#/login' }, t('join.login'))));
}
