"""How far back the store keeps calls, texts and alerts, and in what steps it forgets. No I/O.

Whole calendar months go, in the business's time zone: with `retention.months`
= 24, in March 2027 everything before 1 March 2025 is pruned. Each month is
summed up into its scorecard rows before anything of it is deleted, so
`textback report --month` still answers for it. Deletes run in batches sized
so that none holds the write lock longer than a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

# What one batch aims to hold the write lock for, and the most it may (the daemon's writes wait).
TARGET_BATCH_SECONDS = 0.010
MAX_BATCH_SECONDS = 0.050
FIRST_BATCH, MIN_BATCH, MAX_BATCH = 200, 10, 5000


@dataclass(frozen=True)
class Month:
    label: str  # YYYY-MM
    start: float
    end: float


def _first_of(year: int, month: int, zone: ZoneInfo) -> datetime:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=zone)


def horizon(now: float, months: int, timezone: str) -> float:
    """The moment before which nothing is kept: the first of the month `months` months back."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(now, zone)
    return _first_of(local.year, local.month - months, zone).timestamp()


def months_between(first: float, cutoff: float, timezone: str) -> list[Month]:
    """The calendar months from the one holding `first` up to `cutoff` (a first of the month)."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(first, zone)
    year, month, found = local.year, local.month, []
    while (start := _first_of(year, month, zone)).timestamp() < cutoff:
        end = _first_of(year, month + 1, zone)
        found.append(Month(f"{start:%Y-%m}", start.timestamp(), end.timestamp()))
        year, month = end.year, end.month
    return found


def next_batch(size: int, seconds: float) -> int:
    """The next batch's size after one of `size` rows took `seconds`: about TARGET_BATCH_SECONDS
    (a commit's own fsync is most of a small batch's time, so only a clear miss changes it)."""
    if seconds > 2 * TARGET_BATCH_SECONDS:
        return max(MIN_BATCH, size // 2)
    if seconds < TARGET_BATCH_SECONDS / 2:
        return min(MAX_BATCH, size * 2)
    return size
