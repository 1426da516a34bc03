"""DateRange: the days a records search, bulk export or metric covers, checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..errors import Invalid

__all__ = ["DateRange"]

FIRST_YEAR, LAST_YEAR = 1900, 2999


def _day(raw: str | None, field: str) -> date | None:
    if raw is None or raw == "":
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise Invalid.on(field, f"{raw!r} is not a date (use YYYY-MM-DD)") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        # Out there, a day's midnight in a zone is not a datetime Python can hold.
        raise Invalid.on(field, f"{raw} is not a day between {FIRST_YEAR} and {LAST_YEAR}")
    return day


@dataclass(frozen=True)
class DateRange:
    """Whole days ``start``..``end`` inclusive; ``bounds`` places them in a zone (the viewer's
    on the records page, ``--zone`` for the CLI)."""

    start: date | None
    end: date | None

    @classmethod
    def parse(
        cls, start: str | None, end: str | None, *, max_days: int, required: bool = False
    ) -> DateRange:
        first, last = _day(start, "from"), _day(end, "to")
        if required and first is None:
            raise Invalid.on("from", "give the first day of the range (YYYY-MM-DD)")
        if required and last is None:
            raise Invalid.on("to", "give the last day of the range (YYYY-MM-DD)")
        if first is not None and last is not None:
            if last < first:
                raise Invalid.on("to", f"the range ends ({last}) before it starts ({first})")
            days = (last - first).days + 1
            if days > max_days:
                raise Invalid.on(
                    "to", f"the range spans {days} days; at most {max_days} are allowed"
                )
        return cls(first, last)

    def bounds(self, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
        """The UTC instants [start of the first day, start of the day after the last)."""

        def midnight(day: date) -> datetime:
            return datetime.combine(day, time(0), zone).astimezone(UTC)

        low = midnight(self.start) if self.start else None
        high = midnight(self.end + timedelta(days=1)) if self.end else None
        return low, high
