"""Board metrics: how each board's sessions and agreed plans went over a range of days.

- sessions, cases per session and minutes per case come from the sessions held in the range
  (begun, not cancelled, someone joined) and the media attendance of their agenda items: a
  case's minutes run from the first join to the last leave of its item;
- quorum, recommendations and time from request to finalized come from the cases whose plan
  was first signed in the range: quorum as recorded in the first signed version, recommendations as
  followed up (done, not done by reason, still planned), days from the case's request to its
  first signed version.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import col, select

from ..db import AsyncSession
from ..models import (
    AgendaItem,
    AgreedPlan,
    Attendance,
    Board,
    BoardSession,
    Case,
    PlanFollowup,
    utcnow,
)
from ..notes.plan import PlanDesk
from .range import DateRange

__all__ = ["board_metrics"]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def board_metrics(
    db: AsyncSession,
    plans: PlanDesk,
    boards: list[Board],
    days: DateRange,
    zone: ZoneInfo,
) -> list[dict[str, Any]]:
    low, high = days.bounds(zone)
    now = utcnow()
    return [await _one(db, plans, board, low, high, now) for board in boards]


async def _one(
    db: AsyncSession,
    plans: PlanDesk,
    board: Board,
    low: datetime | None,
    high: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    # Held: begun in the range, not cancelled, and someone was there (recurring slots that
    # nobody joined are not sessions the board held).
    sessions = select(BoardSession).where(
        BoardSession.board_id == board.id,
        BoardSession.status != "cancelled",
        BoardSession.start_at <= now,
        col(BoardSession.id).in_(select(Attendance.session_id)),
    )
    if low is not None:
        sessions = sessions.where(BoardSession.start_at >= low)
    if high is not None:
        sessions = sessions.where(BoardSession.start_at < high)
    held = list(await db.exec(sessions))
    held_ids = [s.id for s in held]
    items = list(await db.exec(select(AgendaItem).where(col(AgendaItem.session_id).in_(held_ids))))
    spans: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
    for a in await db.exec(
        select(Attendance).where(
            col(Attendance.agenda_item_id).in_([i.id for i in items]),
            col(Attendance.left_at).is_not(None),
        )
    ):
        assert a.agenda_item_id is not None and a.left_at is not None
        spans[a.agenda_item_id].append((a.joined_at, a.left_at))
    minutes = [
        (max(end for _, end in s) - min(start for start, _ in s)).total_seconds() / 60
        for s in spans.values()
    ]

    # Cases whose plan was first signed in the range; quorum as recorded when it was first
    # agreed (later amendments do not change what the board had then).
    first_plans = select(AgreedPlan, Case).where(
        AgreedPlan.case_id == Case.id, Case.board_id == board.id, AgreedPlan.version == 1
    )
    if low is not None:
        first_plans = first_plans.where(AgreedPlan.signed_at >= low)
    if high is not None:
        first_plans = first_plans.where(AgreedPlan.signed_at < high)
    firsts = list(await db.exec(first_plans))
    case_ids = [case.id for _, case in firsts]
    quorum_met = sum(
        1
        for plan, _ in firsts
        if not (plans.signed(plan)["payload"].get("quorum") or {}).get("missing")
    )
    followups = list(
        await db.exec(select(PlanFollowup).where(col(PlanFollowup.case_id).in_(case_ids)))
    )
    status = Counter(f.status for f in followups)
    reasons = Counter(f.reason for f in followups if f.status == "not_done" and f.reason)
    waits = [(plan.signed_at - case.created_at).total_seconds() / 86400 for plan, case in firsts]
    total_recs = len(followups)
    return {
        "board_id": board.id,
        "board_name": board.name,
        "tumor_site": board.tumor_site,
        "sessions": len(held),
        "cases": len(items),
        "cases_per_session": round(len(items) / len(held), 2) if held else None,
        "minutes_per_case": round(statistics.fmean(minutes), 1) if minutes else None,
        "plans": len(firsts),
        "quorum": {
            "met": quorum_met,
            "total": len(firsts),
            "share": _share(quorum_met, len(firsts)),
        },
        "recommendations": {
            "total": total_recs,
            "implemented": status["done"],
            "not_done": status["not_done"],
            "planned": status["planned"],
            "share_implemented": _share(status["done"], total_recs),
            "share_not_done": _share(status["not_done"], total_recs),
            "not_done_by_reason": dict(sorted(reasons.items())),
        },
        "request_to_final_days": {
            "median": round(statistics.median(waits), 1) if waits else None,
            "n": len(waits),
        },
    }
