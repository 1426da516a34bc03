/**
 * The application: who is signed in, the page frame (header + main area), and which page shows.
 */

import { Api, ApiError } from './api.js';
import { renderHeader } from './header.js';
import { t } from './i18n/index.js';
import { Router } from './router.js';
import { errorBox, h, mount } from './ui.js';

/** @typedef {import('./types.js').User} User */
/** @typedef {import('./router.js').Route} Route */
/** @typedef {import('./router.js').Match} Match */

/**
 * Which roles may do what; the server enforces the same table, the client only hides controls
 * a user could not use.
 */
const PERMISSIONS = {
  /** create boards, build session agendas */
  schedule: ['admin', 'coordinator'],
  /** request cases, attach documents and studies */
  author: ['admin', 'coordinator', 'chair', 'specialist'],
  /** move cases through their workflow */
  move: ['admin', 'coordinator', 'chair'],
  /** give a preliminary opinion */
  opine: ['chair', 'specialist'],
  /** find agreed plans, export them, see board metrics */
  records: ['admin', 'coordinator', 'records'],
};

/** @typedef {keyof typeof PERMISSIONS} Permission */

export class App {
  /**
   * @param {HTMLElement} root
   * @param {(app: App) => Route[]} routes the pages, given this app to work with
   */
  constructor(root, routes) {
    this.api = new Api({ onUnauthorized: () => this._signedOut() });
    this.router = new Router(routes(this), '/boards');
    /** @type {User | null} */
    this._user = null;
    /** The page to return to after logging in. */
    this._returnTo = '/boards';
    this._renders = 0;
    this._header = h('header', { class: 'app-header' });
    this._main = h('main', { id: 'main', class: 'app-main', tabindex: '-1' });
    mount(root, h('a', { class: 'skip-link', href: '#main', onclick: skipToMain }, t('nav.skip')), this._header, this._main);
  }

  start() {
    this.router.start((match) => void this._show(match));
  }

  /** The signed-in user; only pages that need a login are shown, so there is one. */
  get user() {
    if (!this._user) throw new Error('no user is signed in');
    return this._user;
  }

  /**
   * Whether the signed-in user's role allows `action`.
   * @param {Permission} action
   */
  may(action) {
    return this._user !== null && PERMISSIONS[action].includes(this._user.role);
  }

  /** @param {string} path */
  navigate(path) {
    this.router.navigate(path);
  }

  /**
   * Called once the server has set the login cookie: the login page accepted the password, or
   * the join page an invitation.
   * @param {User} user
   * @param {string} [target] the page to show; by default the one that asked for the login
   */
  signedIn(user, target = this._returnTo) {
    this._user = user;
    this._returnTo = '/boards';
    this.navigate(target);
  }

  async logout() {
    try {
      await this.api.post('/logout');
    } catch (error) {
      // Signed out here either way; an expired session or a lost connection changes nothing.
      console.warn('App logout failed: %s', error instanceof Error ? error.message : error);
    }
    this._user = null;
    this.navigate('/login');
  }

  /** Show the current page again, e.g. in another language. */
  refresh() {
    this.router.refresh();
  }

  _signedOut() {
    const path = this.router.path;
    // On a page that needs no login a 401 is that page's own answer (an expired invitation),
    // not a lost session.
    if (this.router.match(path)?.route.anonymous) return;
    this._user = null;
    this._returnTo = path;
    this.navigate('/login');
  }

  /** @param {Match} match */
  async _show({ route, params }) {
    const render = ++this._renders;
    if (!route.anonymous && !this._user) {
      try {
        this._user = await this.api.get('/me');
      } catch (error) {
        // A 401 has already sent the user to the login page.
        if (render === this._renders && !(error instanceof ApiError && error.status === 401)) {
          mount(this._main, errorBox(error));
        }
        return;
      }
    }
    if (render !== this._renders) return;
    this._renderHeader();
    mount(this._main, h('p', { class: 'loading' }, t('common.loading')));
    /** @type {HTMLElement} */
    let page;
    try {
      page = await route.page(params);
    } catch (error) {
      page = h('section', null, errorBox(error));
    }
    if (render !== this._renders) return; // the user has moved on to another page meanwhile
    mount(this._main, page);
  }

  _renderHeader() {
    mount(this._header, renderHeader(this, this._user, this.router.path));
  }
}

/** @param {Event} event */
function skipToMain(event) {
  event.preventDefault(); // the hash is the router's, not an anchor
  document.getElementById('main')?.focus();
}
