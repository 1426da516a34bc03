/**
 * Checks an agreed plan's signatures in the browser (no DOM): for each version of the signed
 * export, the RFC 8785 (JCS) canonical form of its payload must hash (SHA-256) to the version's
 * hash, name the previous version's hash, and carry a valid Ed25519 signature over the
 * canonical bytes by a key the server publishes at /api/keys. The plan shown must be the last
 * version signed.
 */

import canonicalize from 'canonicalize';
import { fromBase64, toBase64, toBase64Url } from './base64.js';

/** @typedef {import('../types.js').SignedPlan} SignedPlan */
/** @typedef {import('../types.js').PlanPayload} PlanPayload */

/**
 * What failed: `hash` (payload does not hash to the version's hash), `chain` (it does not name
 * the previous version), `key` (no published key with the signature's id, or not an Ed25519
 * key), `alg` (not an Ed25519 signature), `signature` (invalid), `current` (the plan shown is not
 * the last version signed), `empty` (no versions).
 * @typedef {'hash'|'chain'|'key'|'alg'|'signature'|'current'|'empty'} Problem
 */

/**
 * @typedef {object} Verification
 * @property {'verified'|'failed'|'unsupported'} outcome unsupported: this browser has no
 *   Ed25519 in WebCrypto (or no WebCrypto: a page not served over HTTPS)
 * @property {string[]} kids the keys that signed the versions checked
 * @property {Problem | null} problem
 * @property {number | null} version the version that failed
 */

/**
 * @param {SignedPlan} signed
 * @param {{keys: (JsonWebKey & {kid?: string})[]}} published the server's JWKS
 * @param {PlanPayload} [current] the payload shown as the current version
 * @returns {Promise<Verification>}
 */
export async function verifyPlan(signed, published, current) {
  const subtle = globalThis.crypto?.subtle;
  /** @type {string[]} */
  const kids = [];
  /** @type {(problem: Problem, version?: number | null) => Verification} */
  const failed = (problem, version = null) => ({ outcome: 'failed', kids, problem, version });
  if (!subtle) return { outcome: 'unsupported', kids, problem: null, version: null };
  if (signed.versions.length === 0) return failed('empty');
  /** @type {string | null} */
  let previous = null;
  for (const { payload, hash, signature } of signed.versions) {
    const version = payload.version;
    const bytes = canonicalBytes(payload);
    if (!sameHash(hash, new Uint8Array(await subtle.digest('SHA-256', bytes)))) return failed('hash', version);
    if ((payload.previous?.hash ?? null) !== previous) return failed('chain', version);
    if (!['EdDSA', 'Ed25519'].includes(signature.alg)) return failed('alg', version);
    const jwk = published.keys.find((key) => key.kid === signature.kid);
    if (!jwk || jwk.crv !== 'Ed25519' || !jwk.x) return failed('key', version);
    /** @type {CryptoKey} */
    let key;
    try {
      key = await subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, { name: 'Ed25519' }, false, ['verify']);
    } catch (error) {
      if (error instanceof DOMException && error.name === 'NotSupportedError') {
        return { outcome: 'unsupported', kids, problem: null, version: null };
      }
      return failed('key', version);
    }
    if (!await subtle.verify({ name: 'Ed25519' }, key, fromBase64(signature.value), bytes)) return failed('signature', version);
    if (!kids.includes(signature.kid)) kids.push(signature.kid);
    previous = hash;
  }
  if (current) {
    const last = signed.versions[signed.versions.length - 1];
    if (!sameHash(last.hash, new Uint8Array(await subtle.digest('SHA-256', canonicalBytes(current))))) {
      return failed('current', current.version);
    }
  }
  return { outcome: 'verified', kids, problem: null, version: null };
}

/**
 * The UTF-8 bytes of a value's JCS form.
 * @param {unknown} value
 * @returns {Uint8Array<ArrayBuffer>}
 */
function canonicalBytes(value) {
  return new TextEncoder().encode(canonicalize(value) ?? '');
}

/**
 * Whether a hash as written in the export ("sha256:…" or bare; hex, base64url or base64) is
 * this digest.
 * @param {string} written
 * @param {Uint8Array} digest
 */
function sameHash(written, digest) {
  const value = written.includes(':') ? written.slice(written.indexOf(':') + 1) : written;
  const hex = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
  return value.toLowerCase() === hex || value.replace(/=+$/, '') === toBase64Url(digest)
    || value === toBase64(digest);
}
