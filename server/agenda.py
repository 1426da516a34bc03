"""Agenda: the ordered, time-boxed cases of one session."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlmodel import col, select

from .db import AsyncSession
from .errors import Conflict, Invalid, NotFound
from .models import AgendaItem, Board, BoardSession, Case
from .scheduling import TimeTriple

__all__ = ["LANES", "items_of", "add_item", "reorder", "update_item", "remove_item", "agenda_json"]

LANES = ("discussion", "standard_of_care")
MAX_TIMEBOX = 240


def _check_timebox(minutes: int) -> None:
    if minutes <= 0:
        raise Invalid.on("timebox_minutes", f"must be more than 0 minutes, not {minutes}")
    if minutes > MAX_TIMEBOX:
        raise Invalid.on("timebox_minutes", f"must be at most {MAX_TIMEBOX} minutes")


def _check_lane(lane: str) -> None:
    if lane not in LANES:
        raise Invalid.on("lane", f"unknown lane {lane!r}; use one of {', '.join(LANES)}")


def _check_open(item: BoardSession) -> None:
    if item.status == "cancelled":
        raise Conflict.on("session_id", f"session {item.id} is cancelled")


async def items_of(session: AsyncSession, session_id: int) -> list[AgendaItem]:
    rows = await session.exec(
        select(AgendaItem)
        .where(AgendaItem.session_id == session_id)
        .order_by(col(AgendaItem.position), col(AgendaItem.id))
    )
    return list(rows)


async def add_item(
    session: AsyncSession, board_session: BoardSession, case_id: int, timebox: int, lane: str
) -> AgendaItem:
    _check_open(board_session)
    _check_timebox(timebox)
    _check_lane(lane)
    case = await session.get(Case, case_id)
    if case is None or case.board_id != board_session.board_id:
        # Another board's case is not named: its number is not the caller's to learn.
        raise Invalid.on(
            "case_id", f"no case {case_id} on this board (a case of another board cannot join)"
        )
    if case.state != "ready":
        raise Invalid.on("case_id", f"case {case.number} is {case.state}, not ready")
    current = await items_of(session, board_session.id or 0)
    if any(i.case_id == case_id for i in current):
        raise Conflict.on("case_id", f"case {case.number} is already on this agenda")
    assert board_session.id is not None
    item = AgendaItem(
        session_id=board_session.id,
        case_id=case_id,
        position=len(current),
        timebox_minutes=timebox,
        lane=lane,
    )
    session.add(item)
    await session.flush()
    return item


async def reorder(
    session: AsyncSession, board_session: BoardSession, item_ids: list[int]
) -> list[AgendaItem]:
    _check_open(board_session)
    current = {i.id: i for i in await items_of(session, board_session.id or 0)}
    if len(item_ids) != len(set(item_ids)):
        raise Invalid.on("item_ids", "names an item more than once")
    if set(item_ids) != set(current):
        missing = sorted(i for i in current if i is not None and i not in item_ids)
        extra = sorted(set(item_ids) - set(current))
        raise Invalid.on(
            "item_ids",
            f"must list every item of the session once (missing {missing}, "
            f"not on this agenda {extra})",
        )
    for position, item_id in enumerate(item_ids):
        item = current[item_id]
        item.position = position
        session.add(item)
    await session.flush()
    return await items_of(session, board_session.id or 0)


async def get_item(session: AsyncSession, item_id: int) -> AgendaItem:
    item = await session.get(AgendaItem, item_id)
    if item is None:
        raise NotFound(f"no agenda item {item_id}")
    return item


async def update_item(
    session: AsyncSession, item: AgendaItem, *, timebox: int | None, lane: str | None
) -> AgendaItem:
    board_session = await session.get(BoardSession, item.session_id)
    assert board_session is not None
    _check_open(board_session)
    if timebox is not None:
        _check_timebox(timebox)
        item.timebox_minutes = timebox
    if lane is not None:
        _check_lane(lane)
        item.lane = lane
    session.add(item)
    await session.flush()
    return item


async def remove_item(session: AsyncSession, item: AgendaItem) -> None:
    session_id = item.session_id
    await session.delete(item)
    await session.flush()
    for position, rest in enumerate(await items_of(session, session_id)):
        rest.position = position
        session.add(rest)
    await session.flush()


async def agenda_json(
    session: AsyncSession, board_session: BoardSession, board: Board, viewer_tz: ZoneInfo
) -> dict[str, object]:
    """The agenda with each discussed case's planned start; standard-of-care cases are listed,
    not discussed, so they take no time on the clock."""
    board_tz = ZoneInfo(board.timezone)
    clock = board_session.start_at
    out: list[dict[str, object]] = []
    total = 0
    for item in await items_of(session, board_session.id or 0):
        case = await session.get(Case, item.case_id)
        assert case is not None
        planned = None
        if item.lane == "discussion":
            planned = TimeTriple(clock, board_tz, viewer_tz).as_json()
            clock += timedelta(minutes=item.timebox_minutes)
            total += item.timebox_minutes
        out.append(
            {
                "id": item.id,
                "session_id": item.session_id,
                "case_id": item.case_id,
                "case_number": case.number,
                "clinical_question": case.clinical_question,
                "position": item.position,
                "timebox_minutes": item.timebox_minutes,
                "lane": item.lane,
                "planned_start": planned,
            }
        )
    length = int((board_session.end_at - board_session.start_at).total_seconds() // 60)
    return {"items": out, "total_minutes": total, "session_minutes": length}
