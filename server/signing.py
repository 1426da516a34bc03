"""SigningKeys: each institution's Ed25519 keys for agreed plans, kept in one 0600 file.

A key is never deleted: rotation adds a key and makes it the institution's active one, while
the old keys stay published so plans signed with them still verify.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import ConfigError, Invalid
from .keys import write_private

__all__ = ["SigningKeys", "b64url", "from_b64url", "public_jwk", "read_jwk", "keys_from_jwks"]

log = logging.getLogger(__name__)

FILE_NAME = "signing-keys.json"
_FORMAT = "eboard-signing-keys/1"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_CODE = re.compile(r"[^\s/]{1,16}")


def b64url(raw: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    """The bytes of an unpadded base64url text; raises ValueError unless it is the one encoding
    of those bytes (so a changed character in a signature can never decode to the same bytes)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url without padding") from exc
    if b64url(raw) != text:
        raise ValueError("not the canonical base64url of its bytes")
    return raw


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_jwk(kid: str, institution: str, key: Ed25519PublicKey) -> dict[str, str]:
    """The JWK (RFC 8037) of one public key, with the institution that holds it."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(raw_public(key)),
        "kid": kid,
        "use": "sig",
        "alg": "EdDSA",
        "institution": institution,
    }


def read_jwk(obj: object) -> tuple[str, Ed25519PublicKey]:
    """The kid and key of one Ed25519 JWK; raises ValueError saying what is wrong with it."""
    if not isinstance(obj, dict):
        raise ValueError("is not a JSON object")
    if obj.get("kty") != "OKP" or obj.get("crv") != "Ed25519":
        raise ValueError("is not an Ed25519 key (kty OKP, crv Ed25519)")
    kid, x = obj.get("kid"), obj.get("x")
    if not isinstance(kid, str) or not kid:
        raise ValueError("has no kid")
    if not isinstance(x, str):
        raise ValueError(f"key {kid} has no x")
    try:
        raw = from_b64url(x)
    except ValueError as exc:
        raise ValueError(f"key {kid}: x is {exc}") from exc
    if len(raw) != 32:
        raise ValueError(f"key {kid}: x is {len(raw)} bytes, an Ed25519 key is 32")
    return kid, Ed25519PublicKey.from_public_bytes(raw)


def keys_from_jwks(jwks: object) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS (as served at /api/keys), by kid; other key types are skipped."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise Invalid.on("keys", 'is not a JWKS (an object with a "keys" list)')
    found: dict[str, Ed25519PublicKey] = {}
    for i, entry in enumerate(jwks["keys"]):
        if isinstance(entry, dict) and entry.get("kty") != "OKP":
            continue
        try:
            kid, key = read_jwk(entry)
        except ValueError as exc:
            raise Invalid.on(f"keys[{i}]", str(exc)) from exc
        if kid in found:
            raise Invalid.on(f"keys[{i}]", f"key {kid} appears twice")
        found[kid] = key
    return found


@dataclass(frozen=True)
class _Key:
    kid: str
    institution: str
    private: Ed25519PrivateKey


class SigningKeys:
    """The institutions' signing keys, read from and written through to ``signing-keys.json``.

    Every change is made under a lock on a file beside it, after re-reading it, so two server
    processes on one data directory never lose each other's keys.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str, _Key] = {}
        self._active: dict[str, str] = {}

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKeys:
        path = data_dir / FILE_NAME
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            with _locked(path):
                if not path.exists():
                    write_private(path, {"format": _FORMAT, "keys": [], "active": {}})
                    log.info("SigningKeys(%s) created", path)
        return cls.load(data_dir)

    @classmethod
    def load(cls, data_dir: Path) -> SigningKeys:
        """The keys of an existing file; ConfigError if it is missing, readable by others or
        damaged."""
        path = data_dir / FILE_NAME
        if not path.is_file():
            raise ConfigError(f"signing key file {path} does not exist")
        keys = cls(path)
        keys._refresh()
        return keys

    def ensure(self, institution: str) -> str:
        """The kid of the institution's active key, creating its first key if it has none."""
        self._refresh()
        if institution in self._active:
            return self._active[institution]
        return self._add(institution, only_if_missing=True)

    def rotate(self, institution: str) -> str:
        """Add a new key for the institution and make it active; the old ones stay published."""
        return self._add(institution, only_if_missing=False)

    def sign(self, institution: str, data: bytes) -> tuple[str, bytes]:
        """(kid, 64-byte Ed25519 signature) of data with the institution's active key."""
        kid = self.ensure(institution)
        return kid, self._keys[kid].private.sign(data)

    def public(self, kid: str) -> Ed25519PublicKey | None:
        self._refresh()
        key = self._keys.get(kid)
        return key.private.public_key() if key else None

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Every public key, old ones included, as a JWKS."""
        self._refresh()
        return {
            "keys": [
                public_jwk(k.kid, k.institution, k.private.public_key())
                for k in self._keys.values()
            ]
        }

    def _add(self, institution: str, *, only_if_missing: bool) -> str:
        if not _CODE.fullmatch(institution):
            raise Invalid.on("institution", f"{institution!r} is not an institution code")
        with _locked(self._path):
            self._refresh()
            if only_if_missing and institution in self._active:
                return self._active[institution]
            count = sum(1 for k in self._keys.values() if k.institution == institution)
            kid = f"{institution}-{count + 1}"
            keys = {**self._keys, kid: _Key(kid, institution, Ed25519PrivateKey.generate())}
            self._write(keys, {**self._active, institution: kid})
            self._refresh()
        log.info("SigningKeys(%s) key %s is now active", self._path, kid)
        return kid

    def _write(self, keys: Mapping[str, _Key], active: Mapping[str, str]) -> None:
        write_private(
            self._path,
            {
                "format": _FORMAT,
                "keys": [
                    {
                        "kid": k.kid,
                        "institution": k.institution,
                        "private": b64url(k.private.private_bytes_raw()),
                    }
                    for k in keys.values()
                ],
                "active": dict(active),
            },
        )

    def _refresh(self) -> None:
        """Re-read the file if it changed since it was last read (e.g. by another process)."""
        try:
            st = self._path.stat()
        except OSError as exc:
            raise ConfigError(f"signing key file {self._path} cannot be read ({exc})") from exc
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        mode = st.st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(
                f"signing key file {self._path} must be readable by its owner only (mode {mode:o})"
            )
        try:
            raw = self._path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"signing key file {self._path} cannot be read ({exc})") from exc
        try:
            self._keys, self._active = _parse(json.loads(raw))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"signing key file {self._path} is damaged ({exc})") from exc
        self._stamp = stamp


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _parse(raw: Any) -> tuple[dict[str, _Key], dict[str, str]]:
    if raw["format"] != _FORMAT:
        raise ValueError(f"format is {raw['format']!r}, not {_FORMAT!r}")
    keys: dict[str, _Key] = {}
    for entry in raw["keys"]:
        kid, institution = str(entry["kid"]), str(entry["institution"])
        if kid in keys:
            raise ValueError(f"key {kid} appears twice")
        private = Ed25519PrivateKey.from_private_bytes(from_b64url(entry["private"]))
        keys[kid] = _Key(kid, institution, private)
    active = {str(code): str(kid) for code, kid in raw["active"].items()}
    for code, kid in active.items():
        if kid not in keys or keys[kid].institution != code:
            raise ValueError(f"the active key of {code} is {kid}, which it does not hold")
    return keys, active
