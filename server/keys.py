"""KeyRing: the server's secrets, kept in one 0600 file in the data directory."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["KeyRing", "write_private"]

log = logging.getLogger(__name__)

_FILE_NAME = "keys.json"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class KeyRing:
    """Token-signing secret, field-encryption keys (by id) and the keyed-hash key.

    Field keys are never deleted: a value names the key it was sealed with, so rotation adds a
    key and makes it active while old values stay readable.
    """

    path: Path
    token_secret: bytes
    field_keys: dict[str, bytes]
    active_field_key: str
    hash_key: bytes

    @classmethod
    def load_or_create(cls, data_dir: Path) -> KeyRing:
        path = data_dir / _FILE_NAME
        if not path.exists():
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fresh = {
                "token_secret": _b64(secrets.token_bytes(32)),
                "field_keys": {"k1": _b64(secrets.token_bytes(32))},
                "active_field_key": "k1",
                "hash_key": _b64(secrets.token_bytes(32)),
            }
            write_private(path, fresh)
            log.info("KeyRing(%s) created", path)
        return cls._read(path)

    @classmethod
    def _read(cls, path: Path) -> KeyRing:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(f"key file {path} must be readable by its owner only (mode {mode:o})")
        try:
            raw = json.loads(path.read_text())
            keys = {kid: base64.b64decode(v) for kid, v in raw["field_keys"].items()}
            ring = cls(
                path=path,
                token_secret=base64.b64decode(raw["token_secret"]),
                field_keys=keys,
                active_field_key=raw["active_field_key"],
                hash_key=base64.b64decode(raw["hash_key"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"key file {path} is damaged ({exc})") from exc
        if ring.active_field_key not in keys:
            raise ConfigError(f"key file {path} names an active key that it does not hold")
        return ring

    def rotate(self) -> KeyRing:
        """Add a new field-encryption key, make it active, and return the new ring."""
        new_id = f"k{len(self.field_keys) + 1}"
        keys = {**self.field_keys, new_id: secrets.token_bytes(32)}
        write_private(
            self.path,
            {
                "token_secret": _b64(self.token_secret),
                "field_keys": {kid: _b64(v) for kid, v in keys.items()},
                "active_field_key": new_id,
                "hash_key": _b64(self.hash_key),
            },
        )
        return KeyRing._read(self.path)


def write_private(path: Path, content: Mapping[str, object]) -> None:
    # Written beside the target with 0600 from the first byte, then renamed over it.
    # A leftover temporary file (a crash mid-write) is removed first: O_CREAT would keep its
    # mode, whatever that is. Flushed to disk before the rename, so a key is never half there.
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(content, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
