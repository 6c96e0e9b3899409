"""textback's aiohttp listeners: one socket each, with a cap on connections and time limits a
client cannot stretch.

aiohttp has no limit on open connections and no time limit on a request's
headers, so 300 idle clients exhausted the file descriptors (and asyncio
logged every failed accept with a traceback). Here the server's protocol
factory is wrapped: past `max_connections` a new connection gets a 503 and is
closed; a connection that has not sent a whole request head within
`header_seconds` of opening (or of its last response) is closed. Idle
keep-alive and the body's time limit are set on aiohttp itself.

`Listener` puts one application on one socket with those limits: the gateway callbacks'
server, the web server and the companies' web front each open one, so the socket, the limits
and the order of closing are written once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

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


class Listener:
    """One aiohttp application on `host`:`port`, its connections limited (ConnectionLimits).

    The application must carry `track` among its middlewares, so that a request's head stops
    its connection's header clock. `runner_options` go to aiohttp's AppRunner (keep-alive, the
    access log, the request line's limits)."""

    def __init__(self, host: str, port: int, max_connections: int, header_seconds: float,
                 **runner_options: Any):
        self.host, self.bind_port = host, port
        self._max_connections = max_connections
        self._header_seconds = header_seconds
        self._runner_options = runner_options
        self.limits: ConnectionLimits | None = None  # made when the listener opens
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self.track = _tracking(self)

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked the OS to choose); the asked one until open."""
        if self._server is None or not self._server.sockets:
            return self.bind_port
        return self._server.sockets[0].getsockname()[1]

    async def open(self, app: web.Application) -> None:
        """Serve `app`: set up its runner, then bind the socket (raises OSError if it cannot;
        `close` still cleans the runner up)."""
        self._runner = web.AppRunner(app, **self._runner_options)
        await self._runner.setup()
        self.limits = ConnectionLimits(self._runner.server, self._max_connections,
                                       self._header_seconds)
        self._server = await asyncio.get_running_loop().create_server(
            self.limits, self.host, self.bind_port)

    async def close(self) -> None:
        """Stop accepting, let the requests in flight end (the runner's cleanup waits for them,
        then closes their connections), then wait for the socket to close. Closing twice, or a
        listener that never opened, does nothing."""
        server, runner = self._server, self._runner
        self._server = self._runner = None
        if server is not None:
            server.close()
        if runner is not None:
            await runner.cleanup()
        if server is not None:
            await server.wait_closed()


def _tracking(listener: Listener):
    """A middleware: a whole request head arrived, so its connection's header clock stops until
    the answer. The listener's ConnectionLimits are made when it opens, so they are read per
    request."""

    @web.middleware
    async def track(request: web.Request, handler) -> web.StreamResponse:
        listener.limits.started(request.transport)
        try:
            return await handler(request)
        finally:
            listener.limits.finished(request.transport)

    return track
