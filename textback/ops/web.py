"""/metrics and /healthz on the `web:` listener (a RouteProvider).

Access: with metrics.token set, every request must carry it as a bearer token
(401 otherwise); without one, only requests from this machine that did not
come through a reverse proxy are answered (403 otherwise), since a proxy on
the same host would make every visitor look local.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from textback.ops.health import problems

if TYPE_CHECKING:
    from textback.web.server import RouteProvider
    from textback.web.context import HttpContext

STORE_TIMEOUT_SECONDS = 2.0
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def allowed(request: web.Request, token: str | None) -> None:
    """Raise 401 or 403 unless the request may read the operations endpoints."""
    if token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 token.encode()):
            raise web.HTTPUnauthorized(text="a bearer token is required\n",
                                       headers={"WWW-Authenticate": 'Bearer realm="textback"'})
        return
    try:
        local = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        local = False
    if not local or any(name in request.headers for name in PROXY_HEADERS):
        raise web.HTTPForbidden(text="only from this machine, or set metrics.token\n")


def ops_routes(context: "HttpContext") -> RouteProvider:
    secret = context.secrets.metrics_token
    token = secret.get_secret_value() if secret is not None else None

    async def backlog() -> tuple[int, float | None, str | None]:
        """Pending texts, the age of the oldest due one, and why the store did not answer."""
        now = time.time()
        try:
            pending, oldest = await asyncio.wait_for(context.store.outbox_backlog(now),
                                                     STORE_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - a health check reports, it never fails
            return 0, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return pending, None if oldest is None else max(0.0, now - oldest), None

    def ami_state() -> bool:
        m = context.metrics
        logged_in = context.ami_logged_in()
        m.ami_connected.set(1 if logged_in else 0)
        seen = context.last_ami_event_at()
        m.ami_event_age.set(max(0.0, time.time() - seen) if seen is not None else float("nan"))
        return logged_in

    async def metrics(request: web.Request) -> web.Response:
        allowed(request, token)
        pending, oldest_age, _ = await backlog()
        context.metrics.outbox_pending.set(pending)
        context.metrics.oldest_due_age.set(oldest_age or 0.0)
        ami_state()
        response = web.Response(body=context.metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def healthz(request: web.Request) -> web.Response:
        allowed(request, token)
        _, oldest_age, store_error = await backlog()
        found = problems(ami_state(), store_error, oldest_age,
                         context.config.metrics.max_due_age_minutes * 60)
        if found:
            return web.Response(status=503, text="".join(f"{line}\n" for line in found))
        return web.Response(text="ok\n")

    def provide(app: web.Application) -> None:
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)

    return provide
