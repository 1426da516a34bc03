/**
 * The client's one door to the REST API: JSON in and out, cookie auth, problem+json errors.
 */

/**
 * One field named by a problem+json `errors[]` entry.
 * @typedef {object} FieldError
 * @property {string} field
 * @property {string} message
 */

/** An API call that failed: the HTTP status and the server's problem details. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, or 0 when the server could not be reached
   * @param {string} detail one sentence from the server
   * @param {FieldError[]} [errors]
   */
  constructor(status, detail, errors = []) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
    this.errors = errors;
  }
}

/** @typedef {Record<string, string | number | boolean | null | undefined>} Query */

/** The viewer's own IANA zone; the server returns every instant in it as well. */
export function viewerTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

export class Api {
  /**
   * @param {object} [options]
   * @param {() => void} [options.onUnauthorized] called on any 401 except a failed login
   * @param {string} [options.base] URL prefix of the API
   */
  constructor({ onUnauthorized = () => {}, base = '/api' } = {}) {
    this._onUnauthorized = onUnauthorized;
    this._base = base;
  }

  /**
   * GET a JSON resource; always sends the viewer's zone as `tz`.
   * @template T
   * @param {string} path
   * @param {Query} [query]
   * @returns {Promise<T>}
   */
  get(path, query = {}) {
    return this._send('GET', this.url(path, { tz: viewerTimeZone(), ...query }));
  }

  /**
   * @template T
   * @param {string} path
   * @param {unknown} [body]
   * @param {Query} [query] e.g. the viewer's zone, for a body whose dates are calendar days
   * @returns {Promise<T>}
   */
  post(path, body, query = {}) {
    return this._send('POST', this.url(path, query), body);
  }

  /**
   * @template T
   * @param {string} path
   * @param {unknown} body
   * @returns {Promise<T>}
   */
  put(path, body) {
    return this._send('PUT', this.url(path), body);
  }

  /**
   * @template T
   * @param {string} path
   * @param {unknown} body
   * @returns {Promise<T>}
   */
  patch(path, body) {
    return this._send('PATCH', this.url(path), body);
  }

  /**
   * @param {string} path
   * @returns {Promise<void>}
   */
  async delete(path) {
    await this._send('DELETE', this.url(path));
  }

  /**
   * POST one file as multipart/form-data, in the part named `file`.
   * @template T
   * @param {string} path
   * @param {File} file
   * @returns {Promise<T>}
   */
  upload(path, file) {
    const form = new FormData();
    form.append('file', file, file.name);
    return this._send('POST', this.url(path), form);
  }

  /**
   * GET a file the server sends as an attachment: its content and the name the server gives it
   * (Content-Disposition), or the last part of `path` when it gives none.
   * @param {string} path
   * @param {Query} [query]
   * @returns {Promise<{blob: Blob, filename: string}>}
   */
  async file(path, query = {}) {
    const response = await this._fetch('GET', this.url(path, query));
    const filename = attachmentName(response.headers.get('Content-Disposition')) ?? path.slice(path.lastIndexOf('/') + 1);
    return { blob: await response.blob(), filename };
  }

  /**
   * The absolute path of an API resource, for links and downloads.
   * @param {string} path starting with "/"
   * @param {Query} [query] entries that are null, undefined or "" are left out
   */
  url(path, query = {}) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== null && value !== undefined && value !== '') params.set(key, String(value));
    }
    const search = params.toString();
    return this._base + path + (search ? `?${search}` : '');
  }

  /**
   * @param {string} method
   * @param {string} url
   * @param {unknown} [body] a FormData goes as is, anything else as JSON
   * @returns {Promise<any>}
   */
  async _send(method, url, body) {
    return readBody(await this._fetch(method, url, body));
  }

  /**
   * The server's response when it succeeded; an ApiError otherwise.
   * @param {string} method
   * @param {string} url
   * @param {unknown} [body]
   * @returns {Promise<Response>}
   */
  async _fetch(method, url, body) {
    /** @type {RequestInit} */
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { ...init.headers, 'Content-Type': 'application/json' };
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch {
      throw new ApiError(0, 'The server could not be reached.');
    }
    if (response.ok) return response;
    const error = problemToError(response.status, await readBody(response));
    // A failed login is a wrong password, not an expired session.
    if (error.status === 401 && url !== `${this._base}/login`) this._onUnauthorized();
    throw error;
  }
}

/**
 * @param {Response} response
 * @returns {Promise<unknown>}
 */
async function readBody(response) {
  if (response.status === 204) return null;
  const type = response.headers.get('Content-Type') ?? '';
  if (type.includes('json')) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  return response.text();
}

/**
 * The file name of a Content-Disposition header: `filename*=UTF-8''…` when given, else `filename=`.
 * @param {string | null} header
 * @returns {string | null}
 */
function attachmentName(header) {
  if (!header) return null;
  const extended = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(header);
  if (extended) {
    try {
      return decodeURIComponent(extended[1].trim());
    } catch {
      // a malformed escape: fall back to the plain name
    }
  }
  const plain = /filename\s*=\s*(?:"([^"]*)"|([^;]+))/i.exec(header);
  const name = plain ? (plain[1] ?? plain[2]).trim() : '';
  return name || null;
}

/**
 * @param {number} status
 * @param {unknown} payload a problem+json object, or text
 */
function problemToError(status, payload) {
  if (payload && typeof payload === 'object') {
    const problem = /** @type {{detail?: unknown, title?: unknown, errors?: unknown}} */ (payload);
    const detail = typeof problem.detail === 'string' && problem.detail ? problem.detail
      : typeof problem.title === 'string' && problem.title ? problem.title
        : `HTTP ${status}`;
    const errors = Array.isArray(problem.errors)
      ? problem.errors.map((e) => ({ field: String(e?.field ?? ''), message: String(e?.message ?? '') }))
      : [];
    return new ApiError(status, detail, errors);
  }
  const text = typeof payload === 'string' ? payload.trim() : '';
  return new ApiError(status, text && text.length < 300 ? text : `HTTP ${status}`);
}
