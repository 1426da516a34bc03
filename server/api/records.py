"""REST: the records office's routes — search agreed plans, export one or a date range in bulk
(PDF, FHIR, HL7 v2, signed JSON), and the boards' metrics.

Records staff, coordinators and admins work within their own institution's boards. Exporting
one plan is open to whoever may see the case; a user of another institution gets the external
audience's file (case number, no patient identifiers). An MRN is searched for in a request
body, never in a URL, so it stays out of access logs.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import web
from aiohttp.payload import AsyncIterablePayload
from pydantic import BaseModel, Field
from sqlmodel import col, select

from ..access import board_for
from ..errors import Conflict, Invalid, TooMany
from ..export.exporter import Exporter
from ..export.renderer import FORMATS, Options
from ..models import Board
from ..records.bulk import BulkExport, BulkExports, new_id
from ..records.metrics import board_metrics
from ..records.range import DateRange
from ..records.sealed_stream import open_sealed
from ..records.search import RecordQuery, case_ids, find
from .queries import ExportQuery, MetricsQuery, ViewerQuery
from .responses import BulkJobOut, RecordMetricsOut, RecordSearchOut
from .roles import EVERYONE, RECORD_KEEPERS
from .routing import Call, RouteTable

routes = RouteTable()
_TAG = "records"

# The app's registry of bulk exports (made in create_app, closed when the server stops).
EXPORTS = web.AppKey("exports", BulkExports)
# Single exports being made, per user id, in this process.
EXPORTS_PER_USER = 3
_making: Counter[int] = Counter()
# What one plan's export may be, by format.
EXPORT_MEDIA_TYPES = tuple(f.media_type for f in FORMATS.values())


_MAX_ID = 2**31 - 1  # beyond any row id (and SQLite's and PostgreSQL's integers stay safe)


class SearchIn(BaseModel):
    from_: str | None = Field(default=None, alias="from", max_length=10)
    to: str | None = Field(default=None, max_length=10)
    board_id: int | None = Field(default=None, ge=1, le=_MAX_ID)
    case_number: str | None = Field(default=None, max_length=32)
    mrn: str | None = Field(default=None, max_length=64)
    tumor_site: str | None = Field(default=None, max_length=32)
    state: str | None = Field(default=None, max_length=16)
    limit: int = 50  # both checked by RecordQuery
    offset: int = 0


class BulkIn(BaseModel):
    from_: str = Field(alias="from", max_length=10)
    to: str = Field(max_length=10)
    board_id: int | None = Field(default=None, ge=1, le=_MAX_ID)
    format: str = Field(max_length=16)
    language: str = Field(default="both", max_length=8)
    audience: str = Field(default="home", max_length=16)


def _days(call: Call, start: str | None, end: str | None, *, required: bool) -> DateRange:
    limit = call.services.settings.max_export_range_days
    return DateRange.parse(start, end, max_days=limit, required=required)


async def _board(call: Call, board_id: int | None) -> int | None:
    """A board filter: only a board of the user's own institution."""
    if board_id is None:
        return None
    board = await board_for(call.session, call.me, board_id)
    if board.home_institution_id != call.me.institution_id:
        raise Invalid.on("board_id", f"board {board_id} is not one of your institution's")
    return board_id


@routes.add(
    "POST",
    "/api/records/search",
    roles=RECORD_KEEPERS,
    summary="Search agreed plans (by date, board, case number, MRN, tumor site, state)",
    body=SearchIn,
    tag=_TAG,
    writes=False,
    response=RecordSearchOut,
    query=ViewerQuery,
    answers=(404,),
)
async def search_records(call: Call) -> dict[str, Any]:
    body: SearchIn = call.body
    query = RecordQuery(
        _days(call, body.from_, body.to, required=False),
        board_id=await _board(call, body.board_id),
        case_number=body.case_number or None,
        mrn=(body.mrn or "").strip() or None,
        tumor_site=body.tumor_site or None,
        state=body.state or None,
        limit=body.limit,
        offset=body.offset,
    )
    items, total = await find(
        call.session,
        query,
        institution_id=call.me.institution_id,
        zone=call.viewer_tz,
        cipher=call.services.cipher,
    )
    if query.mrn:
        # Who looked up a patient by MRN is on record (the MRN itself is not).
        async with call.services.db.write() as db:
            await call.services.audit.append(
                db,
                actor_id=call.me.id,
                action="records.search",
                target_type="patient",
                target_id="mrn",
                detail={"by": "mrn", "found": total},
            )
    return {"items": items, "total": total}


@routes.add(
    "GET",
    "/api/cases/{case_id}/plan/export",
    roles=EVERYONE,
    summary="Export a case's agreed plan as PDF, FHIR, HL7 v2 MDM or signed JSON",
    tag=_TAG,
    # The file is made with no unit of work open; the audit has its own.
    writes=False,
    same_site=True,
    query=ExportQuery,
    media_types=EXPORT_MEDIA_TYPES,
    answers=(409, 429, 503),
)
async def export_plan(call: Call) -> web.Response:
    q = call.request.query
    if "format" not in q:
        raise Invalid.on("format", "give a format: pdf, fhir, hl7 or json")
    me = call.me.id
    assert me is not None
    # The export workers are shared by everyone: one user's burst of clicks may not queue
    # ahead of the whole hospital (bulk exports have their own limit).
    if _making[me] >= EXPORTS_PER_USER:
        raise TooMany(f"you have {_making[me]} exports being made; wait for them to finish")
    _making[me] += 1
    try:
        made = await Exporter(call.services).one(
            call.me,
            call.int_param("case_id"),
            format=q["format"],
            language=q.get("language", "both"),
            audience=q.get("audience") or None,
            via="api",
        )
    finally:
        _making[me] -= 1
        if not _making[me]:
            del _making[me]
    return web.Response(
        body=made.data,
        content_type=made.media_type,
        charset="utf-8" if made.media_type != "application/pdf" else None,
        headers={
            "Content-Disposition": f'attachment; filename="{made.filename}"',
            "Cache-Control": "no-store",
        },
    )


@routes.add(
    "POST",
    "/api/exports",
    roles=RECORD_KEEPERS,
    summary="Start a bulk export of the agreed plans of a date range",
    body=BulkIn,
    status=202,
    tag=_TAG,
    writes=False,
    response=BulkJobOut,
    query=ViewerQuery,
    answers=(404, 409, 429),
)
async def start_bulk(call: Call) -> dict[str, Any]:
    body: BulkIn = call.body
    options = Options(body.format, body.language, body.audience)
    days = _days(call, body.from_, body.to, required=True)
    board_id = await _board(call, body.board_id)
    ids = await case_ids(
        call.session,
        days,
        board_id=board_id,
        institution_id=call.me.institution_id,
        zone=call.viewer_tz,
        cipher=call.services.cipher,
    )
    if not ids:
        raise Conflict.on(
            "from", f"no agreed plans were signed between {days.start} and {days.end}"
        )
    job = BulkExport(
        id=new_id(),
        owner_id=call.me.id,
        options=options,
        days=days,
        zone=call.viewer_tz.key,
        board_id=board_id,
        case_ids=ids,
    )
    call.request.app[EXPORTS].start(call.services, call.me, job)
    return job.json()


@routes.add(
    "GET",
    "/api/exports/{job_id}",
    roles=RECORD_KEEPERS,
    summary="A bulk export's progress",
    tag=_TAG,
    response=BulkJobOut,
)
async def get_bulk(call: Call) -> dict[str, Any]:
    return call.request.app[EXPORTS].get(call.me, call.request.match_info["job_id"]).json()


@routes.add(
    "GET",
    "/api/exports/{job_id}/file",
    roles=RECORD_KEEPERS,
    summary="Download a finished bulk export (zip)",
    tag=_TAG,
    writes=True,  # the download is audited
    same_site=True,
    media_types=("application/zip",),
    answers=(409,),
)
async def get_bulk_file(call: Call) -> web.StreamResponse:
    job = call.request.app[EXPORTS].get(call.me, call.request.match_info["job_id"])
    if job.state != "done" or job.path is None or not job.path.exists():
        raise Conflict.on("job_id", f"bulk export {job.id} is {job.state}, not ready to download")
    # Each plan in it was audited as it was made; who took the zip away is on record too.
    await call.services.audit.append(
        call.session,
        actor_id=call.me.id,
        action="export.download",
        target_type="export",
        target_id=job.id,
        detail={
            "format": job.options.format,
            "audience": job.options.audience,
            "plans": len(job.files),
        },
    )
    # The zip is sealed on disk under the job's key: opened a chunk at a time as it is sent,
    # after the handler returns (the audit's unit of work is not held while a client reads).
    chunks = open_sealed(job.path, job.key)
    first = await asyncio.to_thread(next, chunks, b"")  # a broken file fails before the reply
    payload = AsyncIterablePayload(_rest(first, chunks), content_type="application/zip")
    response = web.Response(
        body=payload,
        headers={
            "Content-Disposition": f'attachment; filename="{job.download_name}"',
            "Cache-Control": "no-store",
            "Content-Length": str(job.size),  # the plain zip's: a browser shows its progress
        },
    )
    return response


async def _rest(first: bytes, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    while chunk := await asyncio.to_thread(next, chunks, b""):
        yield chunk


@routes.add(
    "GET",
    "/api/records/metrics",
    roles=RECORD_KEEPERS,
    summary="Board metrics: cases per session, minutes per case, quorum, follow-up, waits",
    tag=_TAG,
    response=RecordMetricsOut,
    query=MetricsQuery,
    answers=(404,),
)
async def get_metrics(call: Call) -> dict[str, Any]:
    q = call.request.query
    days = _days(call, q.get("from"), q.get("to"), required=False)
    raw_board = q.get("board_id")
    if raw_board and not re.fullmatch(r"[1-9][0-9]{0,8}", raw_board):
        raise Invalid.on("board_id", f"{raw_board!r} is not an id")
    board_id = await _board(call, int(raw_board) if raw_board else None)
    query = select(Board).where(Board.home_institution_id == call.me.institution_id)
    if board_id is not None:
        query = query.where(Board.id == board_id)
    boards = list(await call.session.exec(query.order_by(col(Board.name))))
    return {
        "from": str(days.start) if days.start else None,
        "to": str(days.end) if days.end else None,
        "boards": await board_metrics(
            call.session, call.services.plans, boards, days, call.viewer_tz
        ),
    }
