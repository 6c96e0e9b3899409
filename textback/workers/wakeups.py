"""Wake-ups between the daemons of a fleet: PostgreSQL's LISTEN/NOTIFY.

A trigger on each table a worker waits on (outbox, alerts, notices, events, media) sends
`NOTIFY textback_wake, '<table>:<id>'` in the transaction that inserts the row, so it reaches
the listeners only once the row is committed, whichever daemon or command wrote it. This
worker, on its own connection, sets the matching worker's wake event. The notification
carries ids only; the worker reads the rows as it always does. Polling stays the fallback:
each worker still looks on its own every few seconds, and while the listening connection is
down (each reconnection also wakes every worker, for what may have been missed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Mapping, Protocol, Sequence

from textback.core.fleet import parse_wake

log = logging.getLogger("textback")

RECONNECT_SECONDS = 1.0


class Listening(Protocol):
    async def open(self) -> None: ...
    def notifications(self) -> AsyncIterator[str]: ...
    async def close(self) -> None: ...


class WakeListener:
    """Notifications → the wake events of `wakes` (table name → the events of the workers
    waiting for its rows)."""

    def __init__(self, connection: Listening, wakes: Mapping[str, Sequence[asyncio.Event]],
                 reconnect_seconds: float = RECONNECT_SECONDS):
        self._connection = connection
        self._wakes = wakes
        self._reconnect = reconnect_seconds
        self.received = 0  # notifications that woke a worker

    async def run(self) -> None:
        down_said = False
        while True:
            try:
                await self._connection.open()
                if down_said:
                    log.info("listening for wake-ups again")
                    down_said = False
                for events in self._wakes.values():
                    for wake in events:
                        wake.set()  # rows written while not listening
                async for payload in self._connection.notifications():
                    self._wake(payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the workers poll meanwhile; retried
                if not down_said:
                    log.warning("not listening for wake-ups (%s); the workers poll meanwhile; "
                                "retrying every %.0f s", exc, self._reconnect)
                    down_said = True
            finally:
                await self._connection.close()
            await asyncio.sleep(self._reconnect)

    def _wake(self, payload: str) -> None:
        parsed = parse_wake(payload)
        if parsed is None:
            return
        events = self._wakes.get(parsed[0], ())
        for wake in events:
            wake.set()
        if events:
            self.received += 1
