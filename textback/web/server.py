"""The `web:` listener: one aiohttp server on the daemon's loop, security headers on every answer.

Rooms that serve HTTP (the inbox pages, metrics and health, the JSON API)
each contribute a `RouteProvider`; this module owns only the socket, the
connection limits and the headers every response must carry, so no page can
forget them.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from aiohttp import web

from sms_gateway.connection_limits import Listener
from textback.config import WebConfig

log = logging.getLogger("textback.web")

# Scripts and styles only from our own static files; nothing inline, nothing framed.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "media-src 'self'; manifest-src 'self'; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                           "base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

# A request a route marks with this key answers what one session may see: never stored by a
# browser or a shared cache (so Back after signing out shows nothing), and varying by cookie.
PRIVATE = web.RequestKey("private", bool)

RouteProvider = Callable[[web.Application], None]


@web.middleware
async def no_traceback(request: web.Request, handler) -> web.StreamResponse:
    """A failure is a 500 without a traceback (the log has it)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("web request %s %s failed", request.method, request.path)
        raise web.HTTPInternalServerError(text="Something went wrong; it has been logged.") from None


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer carries the headers, set as its headers are about to be sent: an error, a
    file, and a stream such as /events, whose headers leave before its handler returns."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.get(PRIVATE):
        response.headers["Cache-Control"] = "no-store, private"
        if "Cookie" not in response.headers.get("Vary", ""):
            response.headers.add("Vary", "Cookie")


def application(max_body_bytes: int, providers: Iterable[RouteProvider],
                middlewares: Iterable) -> web.Application:
    """An aiohttp application serving `providers`' routes, every answer with the security
    headers: a listener's own (`WebServer`), or one company's behind a shared front
    (`textback.web.front.WebFront`)."""
    app = web.Application(client_max_size=max_body_bytes, middlewares=list(middlewares))
    app.on_response_prepare.append(security_headers)
    for provide in providers:
        provide(app)
    return app


class WebServer:
    def __init__(self, config: WebConfig, providers: Iterable[RouteProvider],
                 max_connections: int = 200, header_seconds: float = 10.0,
                 keepalive_seconds: float = 30.0):
        self.config = config
        # No access log: request lines are chosen by strangers, and URLs may carry sign-in links.
        self._listener = Listener(config.listen_host, config.port, max_connections,
                                  header_seconds, access_log=None,
                                  keepalive_timeout=keepalive_seconds)
        self.app = application(config.max_body_bytes, providers,
                               [self._listener.track, no_traceback])

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked the OS to choose)."""
        return self._listener.port

    async def start(self) -> None:
        await self._listener.open(self.app)
        log.info("web server listening on %s:%d (public URL %s)", self.config.listen_host,
                 self.port, self.config.public_url)

    async def stop(self) -> None:
        await self._listener.close()
