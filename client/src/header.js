/**
 * The page header: application name, navigation, the signed-in user, language, logout.
 */

import { LOCALES, getLocale, label, setLocale, t } from './i18n/index.js';
import { h } from './ui.js';

/** @typedef {import('./app.js').App} App */
/** @typedef {import('./types.js').User} User */
/** @typedef {import('./i18n/index.js').Locale} Locale */

/**
 * @param {App} app
 * @param {User | null} user null on the login page
 * @param {string} path the current route, to mark the active navigation link
 */
export function renderHeader(app, user, path) {
  return h('div', { class: 'header-inner' },
    h('a', { class: 'brand', href: user ? '#/boards' : '#/login' },
      h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, 'e'),
      h('span', null, t('app.name'))),
    user && h('nav', { 'aria-label': t('nav.label') },
      navLink('#/boards', t('nav.boards'), 'nav-boards', path.startsWith('/boards') || path.startsWith('/sessions')),
      navLink('#/cases', t('nav.cases'), 'nav-cases', path.startsWith('/cases')),
      app.may('records') && navLink('#/records', t('nav.records'), 'nav-records', path.startsWith('/records'))),
    h('div', { class: 'header-tools' },
      user && h('span', { class: 'current-user', 'data-testid': 'current-user' },
        h('span', { class: 'user-name' }, user.display_name),
        h('span', { class: 'user-role' }, label('role', user.role))),
      languageSwitch(app),
      user && h('button', {
        type: 'button',
        class: 'button-quiet',
        'data-testid': 'logout',
        onclick: () => void app.logout(),
      }, t('nav.logout'))));
}

/**
 * @param {string} href
 * @param {string} text
 * @param {string} testid
 * @param {boolean} active
 */
function navLink(href, text, testid, active) {
  return h('a', { href, 'data-testid': testid, 'aria-current': active ? 'page' : null }, text);
}

/** @param {App} app */
function languageSwitch(app) {
  const select = h('select', {
    'data-testid': 'lang-switch',
    'aria-label': t('nav.language'),
    onchange: () => {
      setLocale(/** @type {Locale} */ (select.value));
      app.refresh();
    },
  }, LOCALES.map((locale) => h('option', { value: locale, selected: locale === getLocale() }, t(localeKey(locale)))));
  return select;
}

/**
 * Each language is named in itself, so a reader of the other one can still find it.
 * @param {Locale} locale
 * @returns {import('./i18n/index.js').MessageKey}
 */
function localeKey(locale) {
  return locale === 'zh-CN' ? 'language.zh-CN' : 'language.en';
}
