"""Services: the app-wide collaborators, built once and hung off the application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .audit import AuditLog
from .config import Settings
from .crypto import FieldCipher
from .db import Database
from .imaging.store import DicomStore
from .keys import KeyRing
from .security import Passwords, Tokens

__all__ = ["Services", "SERVICES"]


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    keys: KeyRing
    cipher: FieldCipher
    tokens: Tokens
    passwords: Passwords
    audit: AuditLog
    dicom: DicomStore

    @classmethod
    def build(cls, settings: Settings) -> Services:
        keys = KeyRing.load_or_create(settings.data_dir)
        return cls(
            settings=settings,
            db=Database(settings.effective_database_url),
            keys=keys,
            cipher=FieldCipher(keys),
            tokens=Tokens(keys.token_secret),
            passwords=Passwords(),
            audit=AuditLog(),
            dicom=DicomStore(settings.data_dir / "imaging", keys.hash_key),
        )


SERVICES = web.AppKey("services", Services)
