"""Copies made after ingest: for a burned-in series a coordinator clears, and for a board that
gains an external member.

Ingest copies what arrives while the case's board has external members (``DicomStore.ingest``).
Two events make copies later, and both do it synchronously, inside the unit of work of the
request that causes them (the clearance; the added member or accepted invitation):

- the caller learns the outcome in the response, and external participants see the copies as
  soon as it commits; nothing runs behind anyone's back or is lost when the server stops;
- a study's copy is written to disk whole before any of it is indexed, and its files are
  removed if anything fails, so no partial copy is ever indexed or left behind (as with
  ingest, only a failure later in the same unit, e.g. of its commit, can strand files);
- the cost: de-identifying runs in worker threads (the event loop stays free) but inside the
  server's one write lock, one to two seconds per 120 × 512² series, so other writes wait while
  a board with much imaging gains an external member. A background job with its own
  ``cleanup_ctx`` would lift that, at the price of copies that appear later.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from sqlmodel import col, select

from ..access import board_has_external_members
from ..audit import AuditLog
from ..db import AsyncSession
from ..errors import Conflict, EboardError, Invalid, NotFound
from ..models import Board, BoardMember, Case, DicomSeries, ImagingStudy, User, utcnow
from .store import Copies, DicomStore, withheld

__all__ = ["REASON_MAX_LENGTH", "Copied", "series_of_case", "clear", "for_new_member"]

log = logging.getLogger(__name__)

REASON_MAX_LENGTH = 500
_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass
class Copied:
    """What one clearance or new member made: copy series, instances, studies left out."""

    series: list[DicomSeries] = field(default_factory=list)
    instances: int = 0
    failed_studies: list[int] = field(default_factory=list)


async def series_of_case(session: AsyncSession, case: Case, alias: str) -> DicomSeries:
    """The stored series ``alias`` of ``case``. An alias of another case's series gets the same
    404 as one that does not exist, so nothing outside the case is revealed."""
    missing = NotFound.on("alias", f"case {case.number} has no series {alias[:32]!r}")
    if not _ALIAS.fullmatch(alias):
        raise missing
    found = (
        await session.exec(
            select(DicomSeries).where(
                DicomSeries.alias == alias,
                DicomSeries.study_id == ImagingStudy.id,
                ImagingStudy.case_id == case.id,
            )
        )
    ).first()
    if found is None:
        raise missing
    return found


async def clear(
    session: AsyncSession,
    store: DicomStore,
    case: Case,
    series: DicomSeries,
    user: User,
    reason: str,
) -> Copied:
    """Record that ``user`` found nothing identifying burned into ``series`` (of ``case``), and
    make its copy if the case's board has external members. All or nothing."""
    text = reason.strip()
    if not text:
        raise Invalid.on("reason", "must say what was checked; it is blank")
    if len(text) > REASON_MAX_LENGTH:
        raise Invalid.on("reason", f"has {len(text)} characters; at most {REASON_MAX_LENGTH}")
    if series.source_id is not None:
        raise Conflict.on(
            "alias", f"series {series.alias} is a de-identified copy; clear its original"
        )
    if not series.burned_in:
        raise Conflict.on(
            "alias", f"series {series.alias} has no burned-in annotation: nothing withholds it"
        )
    if series.cleared_at is not None:
        when = f"{series.cleared_at:%Y-%m-%d %H:%M} UTC"
        raise Conflict.on("alias", f"series {series.alias} was cleared already, at {when}")
    assert user.id is not None
    series.cleared_at = utcnow()
    series.cleared_by = user.id
    series.clearance_reason = text
    session.add(series)
    await session.flush()
    out = Copied()
    board = await session.get(Board, case.board_id)
    assert board is not None
    if await board_has_external_members(session, board):
        study = await session.get(ImagingStudy, series.study_id)
        assert study is not None
        written = await store.write_copies(session, case, [series])
        out.series = await store.index_copies(session, written, added_by=study.added_by)
        out.instances = len(written.rows)
    return out


async def for_new_member(
    session: AsyncSession,
    store: DicomStore,
    audit: AuditLog,
    board: Board,
    member: BoardMember,
    *,
    actor_id: int | None,
) -> Copied:
    """Copies for ``member``, just added to ``board``: if they are external, every original
    study of the board's cases gets what it lacks of its copy (withheld series aside).

    Each study's copy is made whole or not at all. One that cannot be made (a stored file gone
    unreadable, say) is left without a copy, logged and reported in ``failed_studies``; the
    others are kept, and the next external member tries it again.
    """
    user = await session.get(User, member.user_id)
    assert user is not None
    if user.institution_id == board.home_institution_id:
        return Copied()
    out = Copied()
    indexed: list[Copies] = []
    try:
        rows = await session.exec(
            select(ImagingStudy, Case)
            .where(
                ImagingStudy.case_id == Case.id,
                Case.board_id == board.id,
                col(ImagingStudy.deidentified).is_(False),
            )
            .order_by(col(ImagingStudy.id))
        )
        for study, case in list(rows):
            written = await _study_copies(session, store, study, case)
            if written is None:
                out.failed_studies.append(study.id or 0)
                continue
            if not written.rows:
                continue
            indexed.append(written)
            out.series += await store.index_copies(session, written, added_by=study.added_by)
            out.instances += len(written.rows)
            await audit.append(
                session,
                actor_id=actor_id,
                action="case.imaging_copy",
                target_type="case",
                target_id=case.id,
                detail={"study": study.id, "board": board.id, "instances": len(written.rows)},
            )
    except BaseException:
        # The unit of work rolls back the rows; the files indexed in it must go too.
        for written in indexed:
            store.discard(written)
        raise
    return out


async def _study_copies(
    session: AsyncSession, store: DicomStore, study: ImagingStudy, case: Case
) -> Copies | None:
    """The copy of ``study`` written to disk, or None if it cannot be made."""
    sources = [
        s
        for s in await session.exec(
            select(DicomSeries)
            .where(DicomSeries.study_id == study.id)
            .order_by(col(DicomSeries.id))
        )
        if not withheld(s)
    ]
    try:
        return await store.write_copies(session, case, sources)
    except (OSError, ValueError, EboardError) as exc:
        log.warning(
            "Copies(study %s) no copy for board %s: %s", study.id, case.board_id, type(exc).__name__
        )
        return None
