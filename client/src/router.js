/**
 * Hash routes ("#/boards/12", "#/join/3?token=abc") mapped to page renderers.
 */

/**
 * A page: given the route's parameters (the pattern's and the query's), builds the element that
 * fills the page.
 * @callback Page
 * @param {Record<string, string>} params
 * @returns {Promise<HTMLElement> | HTMLElement}
 */

/**
 * @typedef {object} Route
 * @property {string} pattern e.g. "/boards/:id"
 * @property {Page} page
 * @property {boolean} [anonymous] true when no login is needed
 */

/**
 * @typedef {object} Match
 * @property {Route} route
 * @property {Record<string, string>} params
 */

/**
 * @typedef {object} Held
 * @property {unknown} value
 * @property {() => void} dispose
 */

export class Router {
  /**
   * @param {Route[]} routes tried in order; the first match wins
   * @param {string} fallback the path to go to when no route matches
   */
  constructor(routes, fallback) {
    this._routes = routes.map((route) => ({ route, regex: compile(route.pattern) }));
    this._fallback = fallback;
    /** @type {(match: Match) => void} */
    this._listener = () => {};
    /** What the current path holds, by name. */
    this._held = /** @type {Map<string, Held>} */ (new Map());
    /** @type {string | null} the path `_held` belongs to */
    this._heldPath = null;
  }

  /**
   * A resource that lives as long as the current path: made on the first call, the same one
   * handed back when the page is shown again (a language switch), disposed when the path
   * changes. A live session's connection is one: it must outlast a re-render, not a visit.
   * A page holding several resources names each.
   * @template T
   * @param {() => T} make
   * @param {(value: T) => void} dispose
   * @param {string} [name]
   * @returns {T}
   */
  hold(make, dispose, name = 'page') {
    if (this._heldPath !== this.path) {
      this._release();
      this._heldPath = this.path;
    }
    const held = this._held.get(name);
    if (held) return /** @type {T} */ (held.value);
    const value = make();
    this._held.set(name, { value, dispose: () => dispose(value) });
    return value;
  }

  /**
   * Call `listener` now and after every change of the hash.
   * @param {(match: Match) => void} listener
   */
  start(listener) {
    this._listener = listener;
    window.addEventListener('hashchange', () => this._dispatch());
    this._dispatch();
  }

  /** The current path, without the "#". */
  get path() {
    return window.location.hash.replace(/^#/, '') || '/';
  }

  /**
   * Go to `path` (e.g. "/cases/3"); re-renders even when it is the current path.
   * @param {string} path
   */
  navigate(path) {
    if (this.path === path) this._dispatch();
    else window.location.hash = `#${path}`;
  }

  /** Render the current route again (after a language switch or a login). */
  refresh() {
    this._dispatch();
  }

  _release() {
    const held = [...this._held.values()];
    this._held.clear();
    this._heldPath = null;
    for (const { dispose } of held) dispose();
  }

  _dispatch() {
    if (this._heldPath !== null && this._heldPath !== this.path) this._release();
    const match = this.match(this.path);
    if (match) this._listener(match);
    else this.navigate(this._fallback);
  }

  /**
   * The route of `path` and its parameters: those of the pattern, and those of the query after
   * a "?" ("/join/3?token=abc" → boardId and token); a pattern's wins over a query's of one name.
   * @param {string} path
   * @returns {Match | null}
   */
  match(path) {
    const mark = path.indexOf('?');
    const pathname = mark < 0 ? path : path.slice(0, mark);
    const query = mark < 0 ? {} : Object.fromEntries(new URLSearchParams(path.slice(mark + 1)));
    for (const { route, regex } of this._routes) {
      const found = regex.exec(pathname);
      if (found) return { route, params: { ...query, ...found.groups } };
    }
    return null;
  }
}

/**
 * "/boards/:id" → /^\/boards\/(?<id>[^/]+)$/
 * @param {string} pattern
 */
function compile(pattern) {
  const source = pattern
    .split('/')
    .map((part) => (part.startsWith(':') ? `(?<${part.slice(1)}>[^/]+)` : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('\\/');
  return new RegExp(`^${source}$`);
}
