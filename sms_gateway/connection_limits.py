"""Connection limits for textback's aiohttp server: a cap, and time limits a client cannot stretch.

aiohttp has no limit on open connections and no time limit on a request's
headers, so 300 idle clients exhausted the file descriptors (and asyncio
logged every failed accept with a traceback). Here the server's protocol
factory is wrapped: past `max_connections` a new connection gets a 503 and is
closed; a connection that has not sent a whole request head within
`header_seconds` of opening (or of its last response) is closed. Idle
keep-alive and the body's time limit are set on aiohttp itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from aiohttp import web

log = logging.getLogger("textback.callbacks")

BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class RateLimitedLog:
    """One warning per kind per interval, with a count of the rest: a flood must not flood the log."""

    def __init__(self, interval: float = 60.0):
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, kind: str, message: str) -> None:
        self._log(logging.WARNING, kind, message)

    def error(self, kind: str, message: str) -> None:
        self._log(logging.ERROR, kind, message)

    def _log(self, level: int, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -self.interval) < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        more = self._suppressed.pop(kind, 0)
        since = f" ({more} more since the last {logging.getLevelName(level).lower()})"
        log.log(level, "%s%s", message, since if more else "")


class _Limited(asyncio.Protocol):
    """Forwards to aiohttp's handler; closes the connection if a request head is overdue."""

    def __init__(self, limits: "ConnectionLimits", inner: asyncio.Protocol):
        self._limits, self._inner = limits, inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._limits.open[transport] = self
        self.expect_head()
        self._inner.connection_made(transport)

    def expect_head(self) -> None:
        self.head_arrived()
        self._timer = asyncio.get_running_loop().call_later(self._limits.header_seconds, self._overdue)

    def head_arrived(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _overdue(self) -> None:
        self._limits.note("closed a connection that sent no whole request head within "
                          f"{self._limits.header_seconds:g} s")
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.head_arrived()
        self._limits.open.pop(self._transport, None)
        self._inner.connection_lost(exc)


class _Busy(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(BUSY)
        transport.close()


class ConnectionLimits:
    """Wraps aiohttp's protocol factory; `started`/`finished` come from a middleware per request."""

    def __init__(self, make_handler: Callable[[], asyncio.Protocol], max_connections: int,
                 header_seconds: float, log_interval: float = 60.0):
        self._make_handler = make_handler
        self.max_connections = max_connections
        self.header_seconds = header_seconds
        self.open: dict[asyncio.BaseTransport, _Limited] = {}
        self._log = RateLimitedLog(log_interval)

    def __call__(self) -> asyncio.Protocol:
        if len(self.open) >= self.max_connections:
            self.note(f"refused a connection: {self.max_connections} already open")
            return _Busy()
        return _Limited(self, self._make_handler())

    def started(self, transport: asyncio.BaseTransport | None) -> None:
        connection = self.open.get(transport)
        if connection is not None:
            connection.head_arrived()

    def finished(self, transport: asyncio.BaseTransport | None) -> None:
        connection = self.open.get(transport)
        if connection is not None:
            connection.expect_head()

    def note(self, what: str) -> None:
        self._log.warn(what, what)


def tracking(limits: Callable[[], ConnectionLimits]):
    """A middleware: a whole request head arrived, so its connection's header clock stops until
    the answer. `limits` gives the server's ConnectionLimits, made when the server starts."""

    @web.middleware
    async def track(request: web.Request, handler) -> web.StreamResponse:
        limits().started(request.transport)
        try:
            return await handler(request)
        finally:
            limits().finished(request.transport)

    return track
