"""FieldCipher: AES-GCM encryption of patient data at rest, and keyed hashes for lookup."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .keys import KeyRing

__all__ = ["FieldCipher"]


class FieldCipher:
    """Seals short values as ``<key id>:<base64(nonce | ciphertext)>``.

    The field name is bound in as associated data, so a value copied into another column
    does not decrypt there.
    """

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys

    def seal(self, field: str, value: str) -> str:
        kid = self._keys.active_field_key
        nonce = secrets.token_bytes(12)
        ct = AESGCM(self._keys.field_keys[kid]).encrypt(nonce, value.encode(), field.encode())
        return f"{kid}:{base64.b64encode(nonce + ct).decode('ascii')}"

    def open(self, field: str, sealed: str) -> str:
        kid, _, body = sealed.partition(":")
        key = self._keys.field_keys.get(kid)
        if key is None:
            raise ValueError(f"value sealed with unknown key id {kid!r}")
        raw = base64.b64decode(body)
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], field.encode()).decode()
        except InvalidTag as exc:
            raise ValueError(f"value of {field} does not decrypt with key {kid}") from exc

    def seal_bytes(self, field: str, value: bytes) -> bytes:
        kid = self._keys.active_field_key
        nonce = secrets.token_bytes(12)
        ct = AESGCM(self._keys.field_keys[kid]).encrypt(nonce, value, field.encode())
        return kid.encode() + b":" + nonce + ct

    def open_bytes(self, field: str, sealed: bytes) -> bytes:
        kid, _, body = sealed.partition(b":")
        key = self._keys.field_keys[kid.decode()]
        return AESGCM(key).decrypt(body[:12], body[12:], field.encode())

    def lookup_hash(self, scope: str, value: str) -> str:
        """A keyed hash of a normalised value (e.g. an MRN within an institution)."""
        msg = f"{scope}\x00{value.strip().upper()}".encode()
        return hmac.new(self._keys.hash_key, msg, hashlib.sha256).hexdigest()
