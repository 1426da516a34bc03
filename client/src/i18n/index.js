/**
 * The user's language: message lookup and locale-aware formatting of dates and times.
 */

import en from './en.js';
import zhCN from './zh-CN.js';

/** @typedef {keyof typeof en} MessageKey */
/** @typedef {'en' | 'zh-CN'} Locale */

/** @type {Record<Locale, Record<MessageKey, string>>} */
const CATALOGUES = { en, 'zh-CN': zhCN };

/** @type {Locale[]} */
export const LOCALES = ['en', 'zh-CN'];

const STORAGE_KEY = 'eboard.locale';

// The one piece of page-wide state: which language the page is shown in.
let current = initialLocale();

/** @returns {Locale} */
function initialLocale() {
  const stored = safeStorage()?.getItem(STORAGE_KEY);
  if (stored === 'en' || stored === 'zh-CN') return stored;
  return navigator.language.toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

function safeStorage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled by the browser's privacy settings
  }
}

/** @returns {Locale} */
export function getLocale() {
  return current;
}

/**
 * Switch the language and remember the choice in this browser.
 * @param {Locale} locale
 */
export function setLocale(locale) {
  current = locale;
  safeStorage()?.setItem(STORAGE_KEY, locale);
  document.documentElement.lang = locale;
}

/**
 * The message for `key` in the current language, with `{name}` placeholders filled in.
 * @param {MessageKey} key
 * @param {Record<string, string | number>} [params]
 */
export function t(key, params = {}) {
  const template = CATALOGUES[current][key] ?? en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/**
 * The label of an enumerated server value (a state, role, specialty, ...), or the value itself
 * when the catalogue has no label for it (the server may know values this client does not).
 * @param {string} group e.g. "state"
 * @param {string | null | undefined} value e.g. "in_preparation"
 */
export function label(group, value) {
  if (value === null || value === undefined || value === '') return '—';
  const key = `${group}.${value}`;
  return key in en ? t(/** @type {MessageKey} */ (key)) : value;
}

/**
 * An instant as date and time in `timeZone`, in the current language.
 * @param {string} iso
 * @param {string} timeZone IANA zone
 */
export function formatDateTime(iso, timeZone) {
  return formatInstant(iso, timeZone, { dateStyle: 'medium', timeStyle: 'short' });
}

/**
 * The time of day of an instant in `timeZone`, in the current language.
 * @param {string} iso
 * @param {string} timeZone IANA zone
 */
export function formatTime(iso, timeZone) {
  return formatInstant(iso, timeZone, { timeStyle: 'short' });
}

/**
 * @param {string} iso
 * @param {string} timeZone
 * @param {Intl.DateTimeFormatOptions} options
 */
function formatInstant(iso, timeZone, options) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  try {
    return new Intl.DateTimeFormat(current, { ...options, timeZone }).format(date);
  } catch {
    // An unknown zone name: show the instant in the browser's own zone rather than nothing.
    return new Intl.DateTimeFormat(current, options).format(date);
  }
}

/**
 * A calendar date ("1961-03-02") in the current language.
 * @param {string | null | undefined} isoDate
 */
export function formatDate(isoDate) {
  if (!isoDate) return '—';
  const date = new Date(`${isoDate.slice(0, 10)}T00:00:00Z`);
  if (Number.isNaN(date.getTime())) return isoDate;
  return new Intl.DateTimeFormat(current, { timeZone: 'UTC', dateStyle: 'medium' }).format(date);
}

/**
 * Words joined as a list ("Radiology, Pathology" / "影像科、病理科").
 * @param {string[]} items
 */
export function formatList(items) {
  // Intl.ListFormat's "unit" lists are space-separated in English and run together in Chinese.
  return items.join(current === 'zh-CN' ? '、' : ', ');
}

/**
 * A file size in bytes, as KB or MB.
 * @param {number} bytes
 */
export function formatSize(bytes) {
  const format = new Intl.NumberFormat(current, { maximumFractionDigits: 1 });
  if (bytes < 1024) return `${format.format(bytes)} B`;
  if (bytes < 1024 * 1024) return `${format.format(bytes / 1024)} KB`;
  return `${format.format(bytes / (1024 * 1024))} MB`;
}

/**
 * A fraction as a percentage ("2.5%"), in the current language.
 * @param {number} fraction
 */
export function formatPercent(fraction) {
  return new Intl.NumberFormat(current, { style: 'percent', maximumFractionDigits: 1 }).format(fraction);
}

/**
 * A bit rate given in kbit/s, as "450 kbit/s" or "1.2 Mbit/s", in the current language.
 * @param {number} kbps
 */
export function formatRate(kbps) {
  const format = new Intl.NumberFormat(current, { maximumFractionDigits: 1 });
  if (kbps < 1000) return `${format.format(Math.round(kbps))} kbit/s`;
  return `${format.format(kbps / 1000)} Mbit/s`;
}

document.documentElement.lang = current;
