/**
 * Bytes as base64 text and back, in the browser (no Node Buffer): Yjs updates travel as
 * standard base64, signatures of the signed export as base64url.
 */

/** Bytes per `String.fromCharCode` call: large updates would overflow the argument list. */
const CHUNK = 0x8000;

/**
 * @param {Uint8Array} bytes
 * @returns {string} standard base64 with padding
 */
export function toBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(binary);
}

/**
 * @param {string} text standard base64 or base64url, padded or not
 * @returns {Uint8Array<ArrayBuffer>}
 */
export function fromBase64(text) {
  const standard = text.replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(standard.padEnd(standard.length + ((4 - (standard.length % 4)) % 4), '='));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * @param {Uint8Array} bytes
 * @returns {string} base64url without padding (RFC 4648 §5)
 */
export function toBase64Url(bytes) {
  return toBase64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
