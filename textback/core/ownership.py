"""Who owns a new conversation. No I/O: the caller passes the local time and the turn."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the core reads config values; it never builds them
    from textback.config import NumberConfig


_WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def choose_owner(number: NumberConfig, local_now: datetime, turn: int) -> tuple[str, str]:
    """(owner id, why) for the `turn`-th new conversation on this number at `local_now`."""
    if number.assignment == "round_robin":
        owner = number.owners[turn % len(number.owners)]
        return owner, f"round robin ({turn % len(number.owners) + 1} of {len(number.owners)})"
    if number.assignment == "schedule":
        day, clock = _WEEKDAYS[local_now.weekday()], local_now.strftime("%H:%M")
        for shift in number.schedule:
            if day in shift.days and shift.start <= clock < shift.end:
                return shift.owner, f"on call {'/'.join(shift.days)} {shift.start}-{shift.end}"
        return number.owner, "no shift covers this time; the number's owner"
    return number.owner, "fixed owner"
