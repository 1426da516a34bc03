"""Services: the app-wide collaborators, built once and hung off the application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .audit import AuditLog
from .config import Settings
from .crypto import FieldCipher
from .db import Database
from .export.renderer import Renderer
from .imaging.store import DicomStore
from .keys import KeyRing
from .notes.plan import PlanDesk
from .notes.store import NoteStore
from .notes.templates import TemplateSet
from .ratelimit import LoginThrottle
from .revocations import Revocations
from .security import Passwords, Tokens
from .signing import SigningKeys
from .spool import Spools

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
    signing: SigningKeys
    notes: NoteStore
    plans: PlanDesk
    renderer: Renderer
    logins: LoginThrottle
    spools: Spools
    revocations: Revocations

    @classmethod
    def build(cls, settings: Settings) -> Services:
        keys = KeyRing.load_or_create(settings.data_dir)
        db = Database(settings.effective_database_url)
        cipher = FieldCipher(keys)
        audit = AuditLog()
        signing = SigningKeys.load_or_create(settings.data_dir)
        notes = NoteStore(db, cipher, TemplateSet())
        return cls(
            settings=settings,
            db=db,
            keys=keys,
            cipher=cipher,
            tokens=Tokens(keys.token_secret),
            passwords=Passwords(),
            audit=audit,
            dicom=DicomStore(settings.data_dir / "imaging", keys),
            signing=signing,
            notes=notes,
            plans=PlanDesk(db, cipher, audit, signing, notes),
            renderer=Renderer(settings.export_workers or None),
            logins=LoginThrottle(),
            spools=Spools(settings.data_dir / "spool", settings.uploads_per_user),
            revocations=Revocations(),
        )


SERVICES = web.AppKey("services", Services)
