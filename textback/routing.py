"""The routing table the dialplan's AGI script reads: one JSON file, written by the daemon.

The AGI script runs before the phones ring, so it must start fast: it reads
this table (route, ring targets and timeout, hours) instead of the YAML, and
public-holiday calendars are expanded here into plain dates.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from textback.config import Config, HoursConfig, RingConfig
from textback.durable import write_durably

FORMAT = 1


def route_id(config: Config, e164: str) -> str:
    """A stable, readable id for a business number: its position and digits."""
    index = next(i for i, n in enumerate(config.numbers) if n.number == e164)
    return f"r{index + 1}-{e164.lstrip('+')}"


def ring_plan(ring: RingConfig | None, is_open: bool) -> tuple[str | None, int | None]:
    """What the AGI sets for a number: its Dial targets and ring timeout, open or closed.

    None when the number has no `ring` section: the AGI then sets the dialplan's fallback.
    """
    if ring is None:
        return None, None
    if is_open:
        return ring.targets, ring.timeout_seconds
    return (ring.after_hours_targets or ring.targets,
            ring.after_hours_timeout_seconds or ring.timeout_seconds)


def routing_table(config: Config, today: date) -> dict[str, Any]:
    """Everything the AGI script needs, for this year and the next.

    The business's hours are at the top; a number with its own `hours` carries
    them in its route (an older AGI script ignores them and uses the top).
    """
    routes = {}
    for number in config.numbers:
        targets, timeout = ring_plan(number.ring, is_open=True)
        after_hours_targets, after_hours_timeout = ring_plan(number.ring, is_open=False)
        routes[number.number] = {
            "route": route_id(config, number.number),
            "targets": targets, "timeout": timeout,
            "after_hours_targets": after_hours_targets, "after_hours_timeout": after_hours_timeout,
        }
        if number.hours is not None:
            routes[number.number]["hours"] = _hours_entry(number.hours, today)
    return {"format": FORMAT, "timezone": config.business.timezone,
            **_hours_entry(config.hours, today), "routes": routes}


def _hours_entry(hours: HoursConfig, today: date) -> dict[str, Any]:
    """Windows and holiday dates, with a public-holiday calendar expanded into dates."""
    holidays = {d.isoformat() for d in hours.holidays}
    if hours.holiday_calendar:
        import holidays as holiday_calendars

        country, _, subdivision = hours.holiday_calendar.partition("-")
        calendar = holiday_calendars.country_holidays(
            country, subdiv=subdivision or None, years=[today.year, today.year + 1])
        holidays |= {d.isoformat() for d in calendar}
    return {"windows": [{"days": w.days, "start": w.start, "end": w.end} for w in hours.windows],
            "holidays": sorted(holidays)}


def write_routing_table(config: Config, today: date) -> Path:
    """Write the table atomically, so a call never reads half a file."""
    path = config.agi.routing_file
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, json.dumps(routing_table(config, today), indent=1).encode("utf-8"), 0o644)
    return path
