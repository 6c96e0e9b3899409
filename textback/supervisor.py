"""The daemon's workers kept alive: one bad item is logged and skipped, a dead worker restarted.

A worker that dies takes its whole queue with it (every later text stays
pending until a restart), so nothing may end one silently. Each worker
catches what goes wrong with one item (`ItemFailures`), and the supervisor
restarts, with backoff, a worker that died anyway, logs why and counts it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Awaitable, Callable, Hashable, Iterable

log = logging.getLogger("textback")

FIRST_RESTART_SECONDS = 1.0
MAX_RESTART_SECONDS = 60.0
# A worker that ran this long before dying starts again at the first delay.
HEALTHY_SECONDS = 300.0
# A task not ended this long after its cancel is cancelled again (cancel_and_wait).
CANCEL_AGAIN_SECONDS = 1.0


class Supervisor:
    def __init__(self) -> None:
        self.restarts: Counter[str] = Counter()
        self._tasks: list[asyncio.Task] = []

    def start(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        self._tasks.append(asyncio.create_task(self._keep(name, work), name=name))

    async def _keep(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        delay = FIRST_RESTART_SECONDS
        while True:
            began = time.monotonic()
            try:
                await work()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - whatever killed it is logged, then it runs again
                self.restarts[name] += 1
                if time.monotonic() - began > HEALTHY_SECONDS:
                    delay = FIRST_RESTART_SECONDS
                log.exception("the %s worker stopped on an error; restarting it in %.0f s "
                              "(restart %d)", name, delay, self.restarts[name])
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_SECONDS)

    async def stop(self) -> None:
        """Cancel every worker and wait for each to end (`cancel_and_wait`)."""
        await cancel_and_wait(self._tasks)


async def cancel_and_wait(tasks: Iterable[asyncio.Future]) -> None:
    """Cancel `tasks` and return once every one has ended; their outcomes are read, not raised.

    A task still running CANCEL_AGAIN_SECONDS after its cancel is cancelled again: on Python
    3.11 `asyncio.wait_for` can swallow a cancel that lands as its inner wait completes
    (psycopg-pool waits for a connection with it; the AMI's actions wait with it), and the task
    would then run on, past the stop of what owns it, or hold that stop forever. Every place
    that cancels a task and waits for it goes through here, at whatever depth it is.

    If the caller is itself cancelled meanwhile, the tasks are still waited for (a cancelled
    stop must not leave them running on a closed store), then the cancel goes on up."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    running = {task for task in tasks if not task.done()}
    cancelled = False
    while running:
        try:
            _, running = await asyncio.wait(running, timeout=CANCEL_AGAIN_SECONDS)
        except asyncio.CancelledError:
            cancelled = True
        for task in running:
            task.cancel()
    for task in tasks:  # retrieved, so that an ending exception is not logged as never read
        if not task.cancelled():
            task.exception()
    if cancelled:
        raise asyncio.CancelledError


class ItemFailures:
    """Logs an item's failure with its traceback the first time, then once a line per pass."""

    def __init__(self, worker: str):
        self._worker = worker
        self._seen: set[Hashable] = set()

    def failed(self, item: Hashable, what: str) -> None:
        if item in self._seen:
            log.error("%s worker: %s failed again; skipped", self._worker, what)
            return
        self._seen.add(item)
        log.exception("%s worker: %s failed; skipped, the others go on", self._worker, what)
