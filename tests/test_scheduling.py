"""Recurrence, zones and iCalendar: unit level and through the API."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import icalendar
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func
from sqlmodel import select

from server.errors import Invalid
from server.models import Board, BoardSession
from server.scheduling import next_slots
from server.services import SERVICES

CHICAGO_BOARD = {
    "name": "Breast MDT",
    "tumor_site": "breast",
    "timezone": "America/Chicago",
    "rrule": "FREQ=WEEKLY;BYDAY=TU",
    "start_time": "07:30",
    "duration_minutes": 60,
    "required_specialties": ["radiology", "pathology"],
}


def test_weekly_chicago_board_keeps_its_wall_clock_across_dst() -> None:
    # US DST ends 2026-11-01: Tuesday 27 Oct is CDT (UTC-5), Tuesday 3 Nov is CST (UTC-6).
    slots = next_slots(
        "FREQ=WEEKLY;BYDAY=TU",
        "America/Chicago",
        date(2026, 10, 20),
        "07:30",
        90,
        after=datetime(2026, 10, 20, tzinfo=UTC),
        weeks=3,
    )
    starts = [s.start for s in slots]
    assert starts == [
        datetime(2026, 10, 20, 12, 30, tzinfo=UTC),
        datetime(2026, 10, 27, 12, 30, tzinfo=UTC),
        datetime(2026, 11, 3, 13, 30, tzinfo=UTC),
    ]
    # Shanghai has no DST, so the same board moves from 20:30 to 21:30 there.
    from zoneinfo import ZoneInfo

    shanghai = [s.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%H:%M") for s in starts]
    assert shanghai == ["20:30", "20:30", "21:30"]


def test_spring_forward_moves_utc_start_an_hour_earlier() -> None:
    # US DST starts 2027-03-14.
    slots = next_slots(
        "FREQ=WEEKLY;BYDAY=TU",
        "America/Chicago",
        date(2027, 3, 9),
        "07:30",
        90,
        after=datetime(2027, 3, 1, tzinfo=UTC),
        weeks=3,
    )
    assert [s.start.hour for s in slots] == [13, 12]
    assert all(s.end - s.start == (slots[0].end - slots[0].start) for s in slots)


@pytest.mark.parametrize(
    ("rrule", "fragment"),
    [
        ("FREQ=WEEKLY;BYDAY=XX", "does not parse"),
        ("not a rule", "does not parse"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "no occurrence"),
        ("FREQ=WEEKLY;COUNT=1;UNTIL=20000101T000000", "COUNT and UNTIL"),
        ("FREQ=MINUTELY", "FREQ must be"),
        ("FREQ=WEEKLY;BYHOUR=9", "start_time"),
        ("DTSTART:20260101T000000\nRRULE:FREQ=WEEKLY", "without DTSTART"),
    ],
)
def test_bad_rrule_is_refused_naming_the_field(rrule: str, fragment: str) -> None:
    with pytest.raises(Invalid) as caught:
        next_slots(
            rrule,
            "America/Chicago",
            date(2026, 12, 1),
            "07:30",
            60,
            after=datetime(2026, 11, 1, tzinfo=UTC),
            weeks=4,
        )
    assert caught.value.errors[0].field == "rrule"
    assert fragment in caught.value.errors[0].message


async def _board_count(client: TestClient[Any, Any]) -> tuple[int, int]:
    async with client.app[SERVICES].db.read() as session:
        boards = (await session.exec(select(func.count()).select_from(Board))).one()
        sessions = (await session.exec(select(func.count()).select_from(BoardSession))).one()
    return boards, sessions


async def test_created_board_shows_next_session_in_board_and_viewer_zones(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]]
) -> None:
    resp = await client.post(
        "/api/boards?tz=Asia/Shanghai", json=CHICAGO_BOARD, headers=auth["coordinator"]
    )
    assert resp.status == 201, await resp.text()
    board = await resp.json()
    nxt = board["next_session"]
    assert nxt["start"]["board_tz"] == "America/Chicago"
    assert nxt["start"]["viewer_tz"] == "Asia/Shanghai"
    assert nxt["start"]["board"][11:16] == "07:30"
    utc = datetime.fromisoformat(nxt["start"]["utc"].replace("Z", "+00:00"))
    assert datetime.fromisoformat(nxt["start"]["viewer"]) == utc
    assert datetime.fromisoformat(nxt["start"]["board"]) == utc
    assert datetime.fromisoformat(nxt["start"]["board"]).weekday() == 1  # Tuesday
    sessions = await (
        await client.get(f"/api/boards/{board['id']}/sessions", headers=auth["coordinator"])
    ).json()
    assert len(sessions["items"]) >= 25  # 26 weeks generated


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "rrule"),
        ({"rrule": "FREQ=WEEKLY;UNTIL=20200101T000000"}, "rrule"),
        ({"start_time": "25:00"}, "start_time"),
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"required_specialties": ["astrology"]}, "required_specialties"),
        ({"name": ""}, "name"),
        ({"note_template": "astrology"}, "note_template"),
    ],
)
async def test_bad_board_is_refused_and_nothing_is_stored(
    client: TestClient[Any, Any],
    auth: dict[str, dict[str, str]],
    change: dict[str, Any],
    field: str,
) -> None:
    before = await _board_count(client)
    resp = await client.post(
        "/api/boards", json={**CHICAGO_BOARD, **change}, headers=auth["coordinator"]
    )
    assert resp.status == 422, await resp.text()
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["errors"][0]["field"] == field
    assert await _board_count(client) == before


async def test_session_end_before_start_is_refused(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    before = await _board_count(client)
    resp = await client.post(
        f"/api/boards/{ids['board_id']}/sessions",
        json={"start": "2026-12-01T15:00:00Z", "end": "2026-12-01T13:30:00Z"},
        headers=auth["coordinator"],
    )
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == "end"
    assert await _board_count(client) == before
    ok = await client.post(
        f"/api/boards/{ids['board_id']}/sessions",
        json={"start": "2026-12-01T13:30:00Z", "end": "2026-12-01T15:00:00+00:00"},
        headers=auth["coordinator"],
    )
    assert ok.status == 201
    assert (await ok.json())["start"]["board"] == "2026-12-01T07:30:00-06:00"


async def test_viewer_zone_must_be_known(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    resp = await client.get(
        f"/api/boards/{ids['board_id']}?tz=Nowhere/Land", headers=auth["coordinator"]
    )
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == "tz"


async def test_cancelled_session_stays_listed_as_cancelled(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    listed = await (
        await client.get(f"/api/boards/{ids['board_id']}/sessions", headers=auth["coordinator"])
    ).json()
    second = listed["items"][1]["id"]
    resp = await client.post(f"/api/sessions/{second}/cancel", headers=auth["coordinator"])
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    again = await client.post(f"/api/sessions/{second}/cancel", headers=auth["coordinator"])
    assert again.status == 409


async def test_session_ics_parses_back_to_the_same_utc_instant(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sessions = await (
        await client.get(f"/api/boards/{ids['board_id']}/sessions", headers=auth["radiologist"])
    ).json()
    first = sessions["items"][0]
    resp = await client.get(
        f"/api/sessions/{first['id']}/calendar.ics", headers=auth["radiologist"]
    )
    assert resp.status == 200
    assert resp.content_type == "text/calendar"
    cal = icalendar.Calendar.from_ical(await resp.read())
    events = list(cal.walk("VEVENT"))
    assert len(events) == 1
    start = events[0].decoded("dtstart")
    assert str(start.tzinfo) == "America/Chicago"
    assert start.astimezone(UTC) == datetime.fromisoformat(
        first["start"]["utc"].replace("Z", "+00:00")
    )
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["America/Chicago"]
    attendees = [str(a) for a in events[0].get("attendee")]
    assert "mailto:external@roc.example" in attendees
    assert str(events[0]["organizer"]) == "mailto:coordinator@hz.example"
    assert f"/#/sessions/{first['id']}" in str(events[0]["url"])


async def test_my_calendar_feed_lists_my_boards_sessions_only(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]]
) -> None:
    created = await client.post("/api/boards", json=CHICAGO_BOARD, headers=auth["coordinator"])
    assert created.status == 201
    resp = await client.get("/api/me/calendar.ics", headers=auth["radiologist"])
    cal = icalendar.Calendar.from_ical(await resp.read())
    summaries = {str(e["summary"]) for e in cal.walk("VEVENT")}
    assert summaries == {"Thoracic MDT — tumor board"}
