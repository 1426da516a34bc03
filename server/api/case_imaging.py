"""REST: a case's stored imaging — upload (DICOM files or zips), the series list, and the
clearance of a burned-in series for external participants."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import col, select

from ..access import case_for, is_external
from ..errors import Forbidden, Invalid
from ..imaging.copies import REASON_MAX_LENGTH, clear, series_of_case
from ..imaging.dicomweb import METADATA
from ..imaging.store import withheld
from ..imaging.upload import read_parts
from ..models import DicomInstance, DicomSeries, ImagingStudy
from .responses import ClearanceOut, SeriesList, UploadOut
from .roles import CASE_AUTHORS, EVERYONE, MANAGERS
from .routing import Call, RouteTable

routes = RouteTable()


class ClearanceIn(BaseModel):
    reason: str = Field(min_length=1, max_length=REASON_MAX_LENGTH)


# The route reads; the upload streams to a spool and is checked there, and only then does it
# take the write unit, so the server's one write lock is never held while a body arrives.
@routes.add(
    "POST",
    "/api/cases/{case_id}/imaging",
    roles=CASE_AUTHORS,
    summary="Upload DICOM files or zips to a case",
    status=201,
    tag="imaging",
    raw_body="multipart/form-data",
    writes=False,
    response=UploadOut,
    answers=(409, 413),
)
async def upload(call: Call) -> dict[str, object]:
    case_id = call.int_param("case_id")
    case = await case_for(call.session, call.me, case_id)
    if is_external(call.me, case):
        raise Forbidden(f"only staff of case {case.number}'s home institution may add imaging")
    if not call.request.content_type.startswith("multipart/form-data"):
        raise Invalid.on("file", "send the files as multipart/form-data parts named file")
    services = call.services
    assert call.me.id is not None
    # Its database connection is not held while the body arrives (a pool has few).
    await call.session.close()
    async with services.spools.open(call.me.id) as spool:
        files = await read_parts(
            call.request, services.settings.max_imaging_upload_bytes, spool, field="file"
        )
        parsed = await services.dicom.check(files)
        async with services.db.write() as session:
            case = await case_for(session, call.me, case_id)
            stored = await services.dicom.ingest(session, case, call.me, parsed)
            await services.audit.append(
                session,
                actor_id=call.me.id,
                action="case.imaging_upload",
                target_type="case",
                target_id=case.id,
                detail={"files": len(files), "series": len(stored)},
            )
    for series in stored:
        assert series.id is not None
        call.request.app[METADATA].forget(series.id)
    return {
        "series": [{"alias": s.alias, "description": s.description} for s in stored],
        "files": len(files),
    }


@routes.add(
    "GET",
    "/api/cases/{case_id}/imaging",
    roles=EVERYONE,
    summary="List a case's stored series",
    tag="imaging",
    response=SeriesList,
)
async def list_series(call: Call) -> dict[str, object]:
    case = await case_for(call.session, call.me, call.int_param("case_id"))
    # Each audience sees its own copy: external participants the de-identified one.
    rows = await call.session.exec(
        select(DicomSeries, ImagingStudy)
        .where(
            DicomSeries.study_id == ImagingStudy.id,
            ImagingStudy.case_id == case.id,
            ImagingStudy.deidentified == is_external(call.me, case),
        )
        .order_by(col(DicomSeries.number), col(DicomSeries.id))
    )
    out = []
    for series, study in rows:
        count = (
            await call.session.exec(
                select(func.count())
                .select_from(DicomInstance)
                .where(DicomInstance.series_id == series.id)
            )
        ).one()
        # A copy is named on the wire by the alias of the series it was made from, so both
        # audiences follow the same view (schemas/view-state.json).
        source = series
        if series.source_id is not None:
            source = await call.session.get(DicomSeries, series.source_id) or series
        original = source is series
        out.append(
            {
                "alias": source.alias,
                "study_instance_uid": study.study_instance_uid,
                "series_instance_uid": series.series_uid,
                "modality": series.modality,
                "description": series.description,
                "number": series.number,
                "instances": count,
                "burned_in": source.burned_in,
                # Withheld: external participants get no copy until a coordinator clears it.
                "withheld": withheld(source),
                "cleared_at": source.cleared_at.isoformat() if source.cleared_at else None,
                "cleared_by": source.cleared_by if original else None,
                "clearance_reason": source.clearance_reason if original else None,
            }
        )
    return {"series": out}


@routes.add(
    "POST",
    "/api/cases/{case_id}/imaging/{alias}/clearance",
    roles=MANAGERS,
    summary="Clear a burned-in series for external participants",
    body=ClearanceIn,
    status=201,
    tag="imaging",
    response=ClearanceOut,
    answers=(409,),
)
async def post_clearance(call: Call) -> dict[str, object]:
    """A coordinator has looked at every image of the series and found no identifying text
    burned in: the series is recorded as cleared and its de-identified copy is made now."""
    case = await case_for(call.session, call.me, call.int_param("case_id"))
    if is_external(call.me, case):
        raise Forbidden(f"only staff of case {case.number}'s home institution may clear imaging")
    series = await series_of_case(call.session, case, call.request.match_info["alias"])
    copied = await clear(call.session, call.services.dicom, case, series, call.me, call.body.reason)
    for copy in copied.series:
        assert copy.id is not None
        call.request.app[METADATA].forget(copy.id)
    await call.audit(
        action="case.imaging_clearance",
        target_type="case",
        target_id=case.id,
        detail={"series": series.id, "alias": series.alias, "instances": copied.instances},
    )
    assert series.cleared_at is not None
    return {
        "alias": series.alias,
        "burned_in": series.burned_in,
        "withheld": withheld(series),
        "cleared_at": series.cleared_at.isoformat(),
        "cleared_by": series.cleared_by,
        "clearance_reason": series.clearance_reason,
        "copied_instances": copied.instances,
    }
