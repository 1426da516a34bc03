"""REST: a case's imaging, imported from the hospital PACS."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import col, select

from ..access import case_for, is_external
from ..db import AsyncSession
from ..errors import Conflict, Forbidden
from ..imaging.dicomweb import METADATA
from ..imaging.pacs import Pacs
from ..models import Case, DicomInstance, DicomSeries, ImagingStudy
from .responses import ImportedStudyOut
from .roles import CASE_AUTHORS
from .routing import Call, RouteTable

__all__ = ["routes"]

routes = RouteTable()


class ImportIn(BaseModel):
    study_instance_uid: str = Field(min_length=1, max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")


# The route reads; its writes go in a unit of their own once the PACS has answered, so the
# server's one write lock is not held while a whole study crosses the hospital network.
@routes.add(
    "POST",
    "/api/cases/{case_id}/imaging/import",
    roles=CASE_AUTHORS,
    summary="Import a study from the hospital PACS",
    body=ImportIn,
    tag="imaging",
    writes=False,
    response=ImportedStudyOut,
    answers=(409, 413, 502),
)
async def import_study(call: Call) -> dict[str, object]:
    case = await case_for(call.session, call.me, call.int_param("case_id"))
    if is_external(call.me, case):
        raise Forbidden(f"only staff of case {case.number}'s home institution may change it")
    settings = call.services.settings
    if not settings.pacs_url:
        raise Conflict(
            "no PACS is configured: set pacs-url (EBOARD_PACS_URL) to the PACS's DICOMweb root"
        )
    uid = call.body.study_instance_uid
    pacs = Pacs(settings.pacs_url, max_bytes=settings.max_imaging_upload_bytes)
    services = call.services
    assert call.me.id is not None
    # The study arrives in a spool and is checked there, never in memory whole, and no
    # database connection is held meanwhile.
    await call.session.close()
    async with services.spools.open(call.me.id) as spool:
        files = await pacs.retrieve_study(uid, spool)
        parsed = await services.dicom.check(files)
        async with services.db.write() as session:
            stored = await services.dicom.ingest(session, case, call.me, parsed)
            await services.audit.append(
                session,
                actor_id=call.me.id,
                action="case.imaging_import",
                target_type="case",
                target_id=case.id,
                detail={"pacs": pacs.name, "instances": len(files), "series": len(stored)},
            )
            body = await _study_json(session, case, uid, len(files))
    cache = call.request.app[METADATA]
    for series in stored:
        assert series.id is not None
        cache.forget(series.id)
    return body


async def _study_json(
    session: AsyncSession, case: Case, uid: str, retrieved: int
) -> dict[str, object]:
    study = (
        await session.exec(
            select(ImagingStudy).where(
                ImagingStudy.case_id == case.id, ImagingStudy.study_instance_uid == uid
            )
        )
    ).one()
    rows = await session.exec(
        select(DicomSeries, func.count(col(DicomInstance.id)))
        .where(DicomSeries.study_id == study.id, DicomInstance.series_id == DicomSeries.id)
        .group_by(col(DicomSeries.id))
        .order_by(col(DicomSeries.number), col(DicomSeries.id))
    )
    return {
        "id": study.id,
        "study_instance_uid": study.study_instance_uid,
        "description": study.description,
        "modality": study.modality,
        "study_date": study.study_date.isoformat(),
        "retrieved": retrieved,
        "series": [
            {
                "alias": s.alias,
                "study_instance_uid": study.study_instance_uid,
                "series_instance_uid": s.series_uid,
                "modality": s.modality,
                "description": s.description,
                "number": s.number,
                "instances": count,
                "burned_in": s.burned_in,
            }
            for s, count in rows
        ],
    }
