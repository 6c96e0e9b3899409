"""Business hours: is the business open at a moment, and when does it next open. No I/O.

Windows are wall-clock times in the business's time zone (zoneinfo), so a
window keeps its meaning across DST changes. Several windows a day allow
split shifts; holidays are whole days closed, listed by date or taken from a
public-holiday calendar (the `holidays` package).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True)
class Window:
    days: tuple[str, ...]
    start: str  # "HH:MM"
    end: str  # "HH:MM", or "24:00"
    template: str | None = None  # the named first text for misses inside this window


@dataclass(frozen=True)
class Hours:
    timezone: str
    windows: tuple[Window, ...]
    holidays: frozenset[date] = frozenset()
    calendar: str | None = None  # e.g. "US", "US-NY", "CA-ON"

    def is_holiday(self, day: date) -> bool:
        if day in self.holidays:
            return True
        if self.calendar:
            import holidays as holiday_calendars  # only here: the AGI script imports this module

            country, _, subdivision = self.calendar.partition("-")
            return day in holiday_calendars.country_holidays(country, subdiv=subdivision or None,
                                                             years=day.year)
        return False

    def is_open(self, at: float) -> bool:
        return self.window_at(at) is not None

    def in_hours(self, at: float) -> bool:
        """Open at `at`; a business with no windows configured has no after-hours at all."""
        return not self.windows or self.is_open(at)

    def window_at(self, at: float) -> Window | None:
        """The window open at `at` (the first listed, if several overlap); None when closed."""
        local = datetime.fromtimestamp(at, ZoneInfo(self.timezone))
        if self.is_holiday(local.date()):
            return None
        clock = local.strftime("%H:%M")
        day = WEEKDAYS[local.weekday()]
        return next((w for w in self.windows if day in w.days and w.start <= clock < w.end), None)

    def open_seconds_between(self, start: float, end: float) -> float:
        """How many seconds of business hours lie between two moments."""
        if not self.windows or end <= start:
            return 0.0
        zone = ZoneInfo(self.timezone)
        first = datetime.fromtimestamp(start, zone).date()
        last = datetime.fromtimestamp(end, zone).date()
        total = 0.0
        for offset in range((last - first).days + 1):
            day = first + timedelta(days=offset)
            if self.is_holiday(day):
                continue
            for window in self.windows:
                if WEEKDAYS[day.weekday()] not in window.days:
                    continue
                opens = datetime.combine(day, _clock(window.start), zone).timestamp()
                closes = (datetime.combine(day + timedelta(days=1), time(0), zone).timestamp()
                          if window.end == "24:00"
                          else datetime.combine(day, _clock(window.end), zone).timestamp())
                total += max(0.0, min(end, closes) - max(start, opens))
        return total

    def next_opening(self, at: float) -> float | None:
        """When the business next opens after `at` (now, if open); None without any window."""
        if not self.windows:
            return None
        zone = ZoneInfo(self.timezone)
        local = datetime.fromtimestamp(at, zone)
        if self.is_open(at):
            return at
        for offset in range(0, 15):
            day = local.date() + timedelta(days=offset)
            if self.is_holiday(day):
                continue
            starts = sorted(w.start for w in self.windows if WEEKDAYS[day.weekday()] in w.days)
            for start in starts:
                opening = datetime.combine(day, _clock(start), zone)
                if opening.timestamp() > at:
                    return opening.timestamp()
        return None


def _clock(value: str) -> time:
    hour, minute = (int(part) for part in value.split(":"))
    return time(hour, minute)


def minutes_waited(business_hours: Hours | None, since: float, now: float) -> float:
    """Minutes from `since` to `now` that count: open minutes of `business_hours`, or all of them."""
    if business_hours is None:
        return (now - since) / 60
    return business_hours.open_seconds_between(since, now) / 60
