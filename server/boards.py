"""Boards: creating them, their members, and the sessions their recurrence produces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import col, select

from .access import membership
from .accounts import SPECIALTIES
from .db import AsyncSession
from .errors import Conflict, Invalid, NotFound
from .models import AgendaItem, Board, BoardMember, BoardSession, User, utcnow
from .scheduling import TimeTriple, next_slots, zone

__all__ = [
    "BoardSpec",
    "MEMBER_ROLES",
    "create_board",
    "add_member",
    "add_session",
    "cancel_session",
    "board_json",
    "session_json",
    "sessions_of",
    "members_of",
]

MEMBER_ROLES = ("chair", "specialist", "observer", "coordinator")


@dataclass(frozen=True)
class BoardSpec:
    name: str
    tumor_site: str
    timezone: str
    rrule: str
    start_time: str
    duration_minutes: int
    required_specialties: list[str]
    start_date: date | None = None
    readiness_max_age_days: int = 90
    # The consensus-note template; None: the one serving the tumor site (checked by the caller,
    # who knows the templates).
    note_template: str | None = None


async def create_board(
    session: AsyncSession, spec: BoardSpec, *, home_institution_id: int, horizon_weeks: int
) -> Board:
    if not spec.name.strip():
        raise Invalid.on("name", "must not be empty")
    if not 5 <= spec.duration_minutes <= 24 * 60:
        raise Invalid.on("duration_minutes", "must be between 5 and 1440")
    for s in spec.required_specialties:
        if s not in SPECIALTIES:
            raise Invalid.on("required_specialties", f"unknown specialty {s!r}")
    if spec.readiness_max_age_days <= 0:
        raise Invalid.on("readiness_max_age_days", "must be positive")
    tz = zone(spec.timezone)
    start_date = spec.start_date or datetime.now(tz).date()
    now = utcnow()
    # Validates the recurrence (parse errors, no occurrence) before anything is stored.
    slots = next_slots(
        spec.rrule,
        spec.timezone,
        start_date,
        spec.start_time,
        spec.duration_minutes,
        after=now,
        weeks=horizon_weeks,
    )
    if not slots:
        raise Invalid.on("rrule", f"yields no occurrence in the next {horizon_weeks} weeks")
    board = Board(
        name=spec.name.strip(),
        tumor_site=spec.tumor_site,
        home_institution_id=home_institution_id,
        timezone=spec.timezone,
        rrule=spec.rrule.strip().removeprefix("RRULE:"),
        start_time=spec.start_time,
        start_date=start_date,
        duration_minutes=spec.duration_minutes,
        required_specialties=list(spec.required_specialties),
        readiness_max_age_days=spec.readiness_max_age_days,
        note_template=spec.note_template,
        created_at=now,
    )
    session.add(board)
    await session.flush()
    assert board.id is not None
    for slot in slots:
        session.add(BoardSession(board_id=board.id, start_at=slot.start, end_at=slot.end))
    await session.flush()
    return board


async def add_member(session: AsyncSession, board: Board, user_id: int, role: str) -> BoardMember:
    if role not in MEMBER_ROLES:
        raise Invalid.on(
            "role", f"unknown board role {role!r}; use one of {', '.join(MEMBER_ROLES)}"
        )
    if await session.get(User, user_id) is None:
        raise Invalid.on("user_id", f"no user {user_id}")
    assert board.id is not None
    if await membership(session, board.id, user_id):
        raise Conflict.on("user_id", f"user {user_id} is already a member of this board")
    assert board.id is not None
    member = BoardMember(board_id=board.id, user_id=user_id, role=role)
    session.add(member)
    await session.flush()
    return member


async def add_session(
    session: AsyncSession, board: Board, start: datetime, end: datetime
) -> BoardSession:
    if start.tzinfo is None:
        raise Invalid.on("start", "needs a UTC offset or Z")
    if end.tzinfo is None:
        raise Invalid.on("end", "needs a UTC offset or Z")
    if end <= start:
        raise Invalid.on("end", f"{end.isoformat()} is not after start {start.isoformat()}")
    if end - start > timedelta(hours=24):
        raise Invalid.on("end", "a session lasts at most 24 hours")
    assert board.id is not None
    item = BoardSession(board_id=board.id, start_at=start, end_at=end, origin="added")
    session.add(item)
    await session.flush()
    return item


async def cancel_session(session: AsyncSession, item: BoardSession) -> BoardSession:
    if item.status == "cancelled":
        raise Conflict.on("status", f"session {item.id} is already cancelled")
    item.status = "cancelled"
    session.add(item)
    await session.flush()
    return item


async def members_of(session: AsyncSession, board_id: int) -> list[tuple[BoardMember, User]]:
    rows = await session.exec(
        select(BoardMember, User)
        .where(BoardMember.board_id == board_id, BoardMember.user_id == User.id)
        .order_by(col(BoardMember.id))
    )
    return list(rows.all())


async def sessions_of(
    session: AsyncSession,
    board_id: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 200,
) -> list[BoardSession]:
    query = select(BoardSession).where(BoardSession.board_id == board_id)
    if start:
        query = query.where(col(BoardSession.start_at) >= start)
    if end:
        query = query.where(col(BoardSession.start_at) < end)
    rows = await session.exec(query.order_by(col(BoardSession.start_at)).limit(limit))
    return list(rows)


async def session_json(
    session: AsyncSession, item: BoardSession, board: Board, viewer_tz: ZoneInfo
) -> dict[str, object]:
    board_tz = ZoneInfo(board.timezone)
    count = (
        await session.exec(
            select(func.count()).select_from(AgendaItem).where(AgendaItem.session_id == item.id)
        )
    ).one()
    return {
        "id": item.id,
        "board_id": board.id,
        "board_name": board.name,
        "start": TimeTriple(item.start_at, board_tz, viewer_tz).as_json(),
        "end": TimeTriple(item.end_at, board_tz, viewer_tz).as_json(),
        "status": item.status,
        "origin": item.origin,
        "agenda_count": count,
    }


async def board_json(session: AsyncSession, board: Board, viewer_tz: ZoneInfo) -> dict[str, object]:
    assert board.id is not None
    upcoming = await sessions_of(session, board.id, start=utcnow(), limit=20)
    scheduled = [s for s in upcoming if s.status == "scheduled"]
    return {
        "id": board.id,
        "name": board.name,
        "tumor_site": board.tumor_site,
        "home_institution_id": board.home_institution_id,
        "timezone": board.timezone,
        "rrule": board.rrule,
        "start_time": board.start_time,
        "start_date": board.start_date.isoformat(),
        "duration_minutes": board.duration_minutes,
        "required_specialties": board.required_specialties,
        "readiness_max_age_days": board.readiness_max_age_days,
        "note_template": board.note_template,
        "members": [
            {
                "user_id": user.id,
                "username": user.username,
                "display_name": user.display_name,
                "role": member.role,
                "specialty": user.specialty,
                "institution_id": user.institution_id,
            }
            for member, user in await members_of(session, board.id)
        ],
        "next_session": (
            await session_json(session, scheduled[0], board, viewer_tz) if scheduled else None
        ),
    }


async def get_session(session: AsyncSession, session_id: int) -> BoardSession:
    item = await session.get(BoardSession, session_id)
    if item is None:
        raise NotFound(f"no session {session_id}")
    return item
