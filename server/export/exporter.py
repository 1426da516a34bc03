"""Exports of one case's agreed plan: who may have it, for which audience, and the audit.

The REST route, the CLI and bulk exports all come here: the case is read and checked in one
read unit, the file is made by the Renderer (worker processes) with no unit of work open, and
the export is audited afterwards (who, which case and version, format, audience, how).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from ..access import case_for, is_external
from ..db import AsyncSession
from ..errors import Forbidden, Invalid, NotFound
from ..models import Case, Institution, User, utcnow
from ..services import Services
from .gather import plan_record
from .renderer import AUDIENCES, Job, Options

__all__ = ["ExportFile", "Exporter"]


@dataclass(frozen=True)
class ExportFile:
    filename: str
    media_type: str
    data: bytes
    case_number: str
    version: int


def audience_for(user: User | None, case: Case, asked: str | None) -> str:
    """An external user's export is always for the external audience; asking for the home
    audience's (with patient identifiers) is refused."""
    if asked is not None and asked not in AUDIENCES:
        raise Invalid.on(
            "audience", f"unknown audience {asked!r} (use one of {', '.join(AUDIENCES)})"
        )
    if user is not None and is_external(user, case):
        if asked == "home":
            raise Forbidden(
                f"audience: case {case.number} belongs to another institution; "
                "your exports carry its case number only (audience external)"
            )
        return "external"
    return asked or "home"


class Exporter:
    """One case's agreed plan as a file in the format asked for."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def job(self, db: AsyncSession, case: Case, options: Options) -> Job:
        """Everything a worker needs to make the file (raises Conflict with no agreed plan)."""
        services = self._services
        record = await plan_record(db, services, case, external=options.audience == "external")
        institution = await db.get(Institution, case.home_institution_id)
        assert institution is not None
        return Job(
            record=record,
            options=options,
            case_number=case.number,
            institution_code=institution.code,
            zone=institution.timezone,
            control_id=uuid.uuid4().hex[:20],
            at=utcnow(),
            jwks=services.signing.jwks(),
        )

    async def prepare(
        self,
        user: User | None,
        case_ref: int | str,
        *,
        format: str,
        language: str = "both",
        audience: str | None = None,
    ) -> tuple[int, Job]:
        """Check ``user`` may export case ``case_ref`` (its id, or its number from the CLI,
        where ``user`` is None: the server's operator) as asked; its id and the job."""
        async with self._services.db.read() as db:
            case = await self._case(db, user, case_ref)
            options = Options(format, language, audience_for(user, case, audience))
            assert case.id is not None
            return case.id, await self.job(db, case, options)

    async def one(
        self,
        user: User | None,
        case_ref: int | str,
        *,
        format: str,
        language: str = "both",
        audience: str | None = None,
        via: str,
    ) -> ExportFile:
        """The export of case ``case_ref`` for ``user``, made and audited."""
        case_id, job = await self.prepare(
            user, case_ref, format=format, language=language, audience=audience
        )
        data = await self._services.renderer.render(job)
        async with self._services.db.write() as db:
            await self.audit(db, user, case_id, job, via=via)
        return ExportFile(
            filename=job.filename,
            media_type=job.options.kind.media_type,
            data=data,
            case_number=job.case_number,
            version=int(job.record.payload["version"]),
        )

    async def audit(
        self,
        db: AsyncSession,
        user: User | None,
        case_id: int,
        job: Job,
        *,
        via: str,
        bulk: str | None = None,
    ) -> None:
        detail: dict[str, Any] = {
            "format": job.options.format,
            "audience": job.options.audience,
            "version": job.record.payload["version"],
            "hash": job.record.signed["hash"],
            "via": via,
        }
        if job.options.format == "pdf":
            detail["language"] = job.options.language
        if job.options.format == "hl7":
            detail["control_id"] = job.control_id
        if bulk:
            detail["bulk"] = bulk
        await self._services.audit.append(
            db,
            actor_id=user.id if user else None,
            action="plan.export",
            target_type="case",
            target_id=case_id,
            detail=detail,
        )

    @staticmethod
    async def _case(db: AsyncSession, user: User | None, ref: int | str) -> Case:
        if user is not None:
            assert isinstance(ref, int)
            case = await case_for(db, user, ref)
        else:
            query = select(Case).where(
                Case.id == ref if isinstance(ref, int) else Case.number == ref
            )
            found = (await db.exec(query)).first()
            if found is None:
                raise NotFound.on("case", f"there is no case {ref!r}")
            case = found
        return case  # one with no agreed plan is refused by plan_record
