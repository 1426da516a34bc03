"""Scheduling: boards' recurrence, their sessions in UTC, zones, and iCalendar output."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dateutil.rrule import rrule, rrulestr
from icalendar import Calendar, Event, vCalAddress, vText

from .errors import Invalid

__all__ = [
    "zone",
    "parse_rrule",
    "parse_start_time",
    "occurrences",
    "TimeTriple",
    "SessionSlot",
    "CalendarEntry",
    "calendar_ics",
]

_FREQ_RE = re.compile(r"(?:^|;)FREQ=(DAILY|WEEKLY|MONTHLY|YEARLY)(?:;|$)")
_MAX_OCCURRENCES = 400
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def zone(name: str, field: str = "timezone") -> ZoneInfo:
    """The IANA zone ``name``; an unknown name is an error naming ``field``."""
    if not name or name not in _zone_names():
        raise Invalid.on(field, f"unknown time zone {name!r} (use an IANA name like Asia/Shanghai)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid.on(field, f"unknown time zone {name!r}") from exc


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_start_time(value: str) -> time:
    match = _TIME_RE.match(value or "")
    if not match:
        raise Invalid.on("start_time", f"{value!r} is not a time of day as HH:MM")
    return time(int(match.group(1)), int(match.group(2)))


def parse_rrule(text: str, start: datetime) -> rrule:
    """Parse an RFC 5545 RRULE (without DTSTART) anchored at the naive local ``start``."""
    body = (text or "").strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    if not body or "\n" in body or "DTSTART" in body.upper():
        raise Invalid.on("rrule", "give one RRULE such as FREQ=WEEKLY;BYDAY=TU, without DTSTART")
    if "COUNT=" in body.upper() and "UNTIL=" in body.upper():
        raise Invalid.on("rrule", "COUNT and UNTIL must not both be given (RFC 5545)")
    if re.search(r"BY(HOUR|MINUTE|SECOND)", body.upper()):
        raise Invalid.on("rrule", "the time of day comes from start_time, not BYHOUR/BYMINUTE")
    try:
        rule = rrulestr(body, dtstart=start)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise Invalid.on("rrule", f"does not parse as an RRULE ({exc})") from exc
    if not isinstance(rule, rrule) or not _FREQ_RE.search(body.upper()):
        raise Invalid.on("rrule", "FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY")
    if rule.after(start, inc=True) is None:
        raise Invalid.on("rrule", "yields no occurrence")
    return rule


def occurrences(rule: rrule, tz: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """UTC start instants of the rule's occurrences in [after, until).

    Each occurrence is a wall-clock time in the board's zone, converted on its own date: so a
    07:30 Chicago board is 13:30 UTC in winter and 12:30 UTC in summer.
    """
    out: list[datetime] = []
    for local in rule:
        instant = local.replace(tzinfo=tz).astimezone(UTC)
        if instant >= until or len(out) >= _MAX_OCCURRENCES:
            break
        if instant >= after:
            out.append(instant)
    return out


@dataclass(frozen=True)
class TimeTriple:
    """One instant shown in UTC, in the board's zone and in the viewer's zone."""

    instant: datetime
    board_tz: ZoneInfo
    viewer_tz: ZoneInfo

    def as_json(self) -> dict[str, str]:
        return {
            "utc": self.instant.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "board": self.instant.astimezone(self.board_tz).isoformat(),
            "board_tz": self.board_tz.key,
            "viewer": self.instant.astimezone(self.viewer_tz).isoformat(),
            "viewer_tz": self.viewer_tz.key,
        }


@dataclass(frozen=True)
class SessionSlot:
    start: datetime
    end: datetime


def next_slots(
    rrule_text: str,
    tz_name: str,
    start_date: date,
    start_time: str,
    duration_minutes: int,
    *,
    after: datetime,
    weeks: int,
) -> list[SessionSlot]:
    """The sessions a recurrence produces from ``after`` for ``weeks`` weeks."""
    tz = zone(tz_name)
    anchor = datetime.combine(start_date, parse_start_time(start_time))
    rule = parse_rrule(rrule_text, anchor)
    starts = occurrences(rule, tz, after, after + timedelta(weeks=weeks))
    length = timedelta(minutes=duration_minutes)
    return [SessionSlot(s, s + length) for s in starts]


@dataclass(frozen=True)
class CalendarEntry:
    """What one VEVENT says about a session."""

    uid: str
    summary: str
    start: datetime
    end: datetime
    tz_name: str
    url: str
    description: str
    organizer: tuple[str, str] | None
    attendees: list[tuple[str, str]]
    cancelled: bool = False


def calendar_ics(entries: list[CalendarEntry], *, name: str) -> bytes:
    """An iCalendar file with one VEVENT per entry, in the board's zone (TZID + VTIMEZONE)."""
    cal = Calendar()
    cal.add("prodid", "-//eBoard//tumor boards//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    stamp = datetime.now(UTC)
    for entry in entries:
        tz = ZoneInfo(entry.tz_name)
        event = Event()
        event.add("uid", entry.uid)
        event.add("dtstamp", stamp)
        event.add("summary", entry.summary)
        event.add("dtstart", entry.start.astimezone(tz))
        event.add("dtend", entry.end.astimezone(tz))
        event.add("url", entry.url)
        event.add("location", entry.url)
        event.add("description", entry.description)
        event.add("status", "CANCELLED" if entry.cancelled else "CONFIRMED")
        if entry.organizer:
            event.add("organizer", _address(*entry.organizer))
        for attendee in entry.attendees:
            event.add("attendee", _address(*attendee), encode=False)
        cal.add_component(event)
    cal.add_missing_timezones()
    ical: bytes = cal.to_ical()
    return ical


def _address(email: str, name: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    address.params["cn"] = vText(name)
    return address
