"""Finding agreed plans: the records search and the selection of a bulk export.

A case is found when it has a signed plan; its date is when its latest version was signed.
Searches are confined to one institution's boards (records staff see only their own); the
CLI, run by the server's operator, may search them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from ..crypto import FieldCipher
from ..db import AsyncSession
from ..errors import Invalid
from ..models import AgreedPlan, Board, BoardSession, Case, Note, Patient, PlanFollowup, User
from .range import DateRange

__all__ = ["RecordQuery", "STATES", "find", "case_ids"]

# finalized and closed are the case's states (closed: every recommendation followed up);
# amending: the note is open for an amendment, its last signed version still stands.
STATES = ("finalized", "closed", "amending")
MAX_LIMIT = 200
MAX_OFFSET = 1_000_000


@dataclass(frozen=True)
class RecordQuery:
    days: DateRange
    board_id: int | None = None
    case_number: str | None = None
    mrn: str | None = None
    tumor_site: str | None = None
    state: str | None = None
    limit: int = 50
    offset: int = 0

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in STATES:
            raise Invalid.on(
                "state", f"unknown state {self.state!r} (use one of {', '.join(STATES)})"
            )
        if not 1 <= self.limit <= MAX_LIMIT:
            raise Invalid.on("limit", f"must be between 1 and {MAX_LIMIT}, not {self.limit}")
        if not 0 <= self.offset <= MAX_OFFSET:
            raise Invalid.on("offset", f"must be between 0 and {MAX_OFFSET}, not {self.offset}")


def _latest() -> Any:
    """Each case's latest signed version number."""
    return (
        select(AgreedPlan.case_id, func.max(AgreedPlan.version).label("version"))
        .group_by(col(AgreedPlan.case_id))
        .subquery()
    )


def _filtered(
    query: Any,
    q: RecordQuery,
    *,
    institution_id: int | None,
    zone: ZoneInfo,
    cipher: FieldCipher,
) -> Any:
    low, high = q.days.bounds(zone)
    if low is not None:
        query = query.where(col(AgreedPlan.signed_at) >= low)
    if high is not None:
        query = query.where(col(AgreedPlan.signed_at) < high)
    if institution_id is not None:
        query = query.where(Case.home_institution_id == institution_id)
    if q.board_id is not None:
        query = query.where(Case.board_id == q.board_id)
    if q.case_number:
        query = query.where(  # % and _ in what was typed are themselves
            col(Case.number).icontains(q.case_number.strip(), autoescape=True)
        )
    if q.tumor_site:
        query = query.where(Board.tumor_site == q.tumor_site)
    if q.state in ("finalized", "closed"):
        query = query.where(Case.state == q.state, col(Note.status) != "amending")
    elif q.state == "amending":
        query = query.where(Note.status == "amending")
    if q.mrn:
        if institution_id is None:
            raise Invalid.on("mrn", "an MRN is searched within one institution")
        digest = cipher.lookup_hash(f"mrn:{institution_id}", q.mrn)
        query = query.where(Case.patient_id == Patient.id, Patient.mrn_hash == digest)
    return query


def _base(columns: Any) -> Any:
    latest = _latest()
    return (
        select(*columns)
        .select_from(AgreedPlan)
        .join(
            latest,
            (latest.c.case_id == AgreedPlan.case_id) & (latest.c.version == AgreedPlan.version),
        )
        .join(Case, col(Case.id) == AgreedPlan.case_id)
        .join(Board, col(Board.id) == Case.board_id)
        .outerjoin(Note, col(Note.case_id) == Case.id)
    )


async def find(
    db: AsyncSession,
    q: RecordQuery,
    *,
    institution_id: int | None,
    zone: ZoneInfo,
    cipher: FieldCipher,
) -> tuple[list[dict[str, Any]], int]:
    """One page of the plans found, newest first, and how many there are in all."""
    signer = aliased(User)
    recommendations = (
        select(func.count(col(PlanFollowup.id)))
        .where(PlanFollowup.case_id == Case.id)
        .correlate(Case)
        .scalar_subquery()
    )
    rows = await db.exec(
        _filtered(
            _base(
                [
                    Case,
                    Board,
                    AgreedPlan,
                    Note,
                    signer.display_name,
                    BoardSession.start_at,
                    recommendations,
                ]
            )
            .join(signer, signer.id == AgreedPlan.signed_by)
            .outerjoin(BoardSession, col(BoardSession.id) == AgreedPlan.session_id),
            q,
            institution_id=institution_id,
            zone=zone,
            cipher=cipher,
        )
        .order_by(col(AgreedPlan.signed_at).desc(), col(Case.id).desc())
        .limit(q.limit)
        .offset(q.offset)
    )
    items = [
        {
            "case_id": case.id,
            "case_number": case.number,
            "board_id": board.id,
            "board_name": board.name,
            "tumor_site": board.tumor_site,
            "state": case.state,
            "note_status": note.status if note is not None else None,
            "version": plan.version,
            "finalized_at": _iso(plan.signed_at),
            "finalized_by": signer_name,
            "session_start_at": _iso(start) if start is not None else None,
            "recommendations": count,
        }
        for case, board, plan, note, signer_name, start, count in rows
    ]
    total = (
        await db.exec(
            _filtered(
                _base([func.count(col(Case.id))]),
                q,
                institution_id=institution_id,
                zone=zone,
                cipher=cipher,
            )
        )
    ).one()
    return items, int(total)


async def case_ids(
    db: AsyncSession,
    days: DateRange,
    *,
    board_id: int | None,
    institution_id: int | None,
    zone: ZoneInfo,
    cipher: FieldCipher,
) -> list[int]:
    """Every case with a plan whose latest version was signed in ``days`` (a bulk export's
    selection), oldest first."""
    q = RecordQuery(days, board_id=board_id, limit=1)
    rows = await db.exec(
        _filtered(
            _base([Case.id]), q, institution_id=institution_id, zone=zone, cipher=cipher
        ).order_by(col(AgreedPlan.signed_at), col(Case.id))
    )
    return [int(i) for i in rows]


def _iso(at: datetime) -> str:
    return at.replace(microsecond=0).isoformat().replace("+00:00", "Z")
