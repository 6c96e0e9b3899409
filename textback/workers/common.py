"""What the daemon's workers share: their clock, their idle poll and their backoff."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime
from zoneinfo import ZoneInfo

log = logging.getLogger("textback")

IDLE_POLL_SECONDS = 5.0  # texts queued by `textback reply` go out within this


def retry_delay(attempts: int, cap: float = 900.0) -> float:
    """Exponential backoff with jitter: about 5 s, 10 s, 20 s ... capped at `cap` (15 minutes)."""
    return min(5.0 * 2 ** (attempts - 1), cap) * random.uniform(0.8, 1.2)


def clock_text(at: float, zone: str) -> str:
    """A moment as the log shows it: the local time of day and the zone."""
    return datetime.fromtimestamp(at, ZoneInfo(zone)).strftime("%H:%M:%S %Z")


class SystemClock:
    """The outbox's time: wall-clock seconds, and waits. Tests pass a faster one."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        """Until `event` is set or `seconds` have passed, whichever is first."""
        await wait_event(event, seconds)


async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` have passed. Not asyncio.wait_for: on Python 3.11 it
    loses a cancellation that arrives as the event is set, and the worker then never stops."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([waiter], timeout=max(0.0, seconds))
    finally:
        waiter.cancel()


def log_failure(task: asyncio.Task) -> None:
    """A done-callback for tasks nobody awaits: an exception that ends one is logged."""
    if not task.cancelled() and task.exception() is not None:
        log.error("internal error", exc_info=task.exception())
