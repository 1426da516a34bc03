/**
 * The login page.
 */

import { t } from './i18n/index.js';
import { ErrorSlot, busy, h } from './ui.js';

/** @typedef {import('./app.js').App} App */
/** @typedef {import('./types.js').User} User */

/** @param {App} app */
export function loginPage(app) {
  const username = h('input', {
    id: 'login-username', name: 'username', autocomplete: 'username', required: true, 'data-testid': 'login-username',
  });
  const password = h('input', {
    id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true,
    'data-testid': 'login-password',
  });
  const submit = h('button', { type: 'submit', class: 'button-primary', 'data-testid': 'login-submit' }, t('login.submit'));
  const errors = new ErrorSlot();

  /** @param {SubmitEvent} event */
  async function onSubmit(event) {
    event.preventDefault();
    errors.clear();
    try {
      /** @type {{user: User}} */
      const result = await busy(submit, () => app.api.post('/login', { username: username.value, password: password.value }));
      app.signedIn(result.user);
    } catch (error) {
      errors.show(error, { showFields: false });
      password.select();
    }
  }

  const form = h('form', { class: 'login-form', onsubmit: onSubmit, 'data-testid': 'login-form' },
    h('h1', null, t('login.title')),
    h('p', { class: 'lead' }, t('login.lead')),
    errors.el,
    h('div', { class: 'field' }, h('label', { for: 'login-username' }, t('login.username')), username),
    h('div', { class: 'field' }, h('label', { for: 'login-password' }, t('login.password')), password),
    h('div', { class: 'form-actions' }, submit));
  setTimeout(() => username.focus(), 0);
  return h('section', { class: 'login-page' }, form);
}
