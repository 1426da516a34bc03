/**
 * The debug hook `window.__eboard`: live objects of the page for the end-to-end tests and for
 * support. It holds nothing the user could not see anyway.
 */

/** Whether this browser asked for the debug hook (`localStorage['eboard.debug']`, e.g. tests). */
export function debugging() {
  try {
    return window.localStorage.getItem('eboard.debug') !== null;
  } catch {
    return false;
  }
}

/** The hook object, made on first use. */
export function debugHook() {
  const page = /** @type {{__eboard?: Record<string, unknown>}} */ (/** @type {unknown} */ (window));
  page.__eboard ??= {};
  return page.__eboard;
}
