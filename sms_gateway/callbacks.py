"""The webhook server: providers call it with inbound texts and delivery reports.

One path per gateway endpoint (/twilio/inbound, /telnyx, /kannel/inbound ...)
plus GET /healthz. For every request, in this order:

1. the body is read up to a size limit (413 past it);
2. the gateway checks the signature or shared secret, before the body is
   interpreted; a failure answers 403, is logged (rate-limited, never the
   body) and delivers nothing;
3. the gateway turns the body into an InboundText or a DeliveryStatus;
4. the matching coroutine commits it (the daemon's receive_text, or the
   store's delivery update), and only when it has returned is 2xx answered.
   If it raises, the provider gets a 500 and sends the webhook again; the
   store recognises the repeat by the provider's message id. A request that
   cannot be decoded gets a 400, never a 500 that a provider would retry
   forever.

Resources are bounded (sms_gateway/connection_limits.py): open connections,
the time to send a request head and a body, idle keep-alive, and a request
line long enough for Kannel's GET of a long text in UTF-16.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Literal, Protocol, Sequence, runtime_checkable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from multidict import CIMultiDictProxy, MultiDictProxy
from pydantic import SecretStr

from sms_gateway.base import InboundText
from sms_gateway.connection_limits import Listener, RateLimitedLog

log = logging.getLogger("textback.callbacks")

DeliveryState = Literal["queued", "sent", "delivered", "undelivered", "failed"]
# Kannel GETs an inbound text in the query string: 1,600 CJK characters in UTF-16 take ~10 KB.
MAX_REQUEST_LINE = 32768
# What a request that cannot be decoded raises inside a gateway's reader.
UNREADABLE = (ValueError, LookupError, UnicodeError, RecursionError)


@dataclass(frozen=True)
class DeliveryStatus:
    """A provider's report on a text we sent, in one shape for every provider."""

    gateway_id: str
    status: DeliveryState
    error_code: str | None = None


@dataclass(frozen=True)
class CallbackRequest:
    """What a provider sent, read within the size limit and not yet trusted."""

    method: str
    path: str
    query: MultiDictProxy[str]
    raw_query: str  # as sent, still percent-encoded (Kannel may send UTF-16 bytes)
    headers: CIMultiDictProxy[str]
    body: bytes
    public_url: str  # the URL the provider called, as seen from outside any proxy


class Refused(Exception):
    """The request is not from the provider (bad or missing signature or secret)."""


class NotConfigured(Refused):
    """The request says it is signed in a way textback is not configured for (a key or an
    algorithm it does not have): refused like a forgery, but it may be the provider's own
    configuration, so it is logged as an error and reported (an incident), never only counted."""


Event = InboundText | DeliveryStatus | None  # None: a genuine event we have no use for


@dataclass(frozen=True)
class Endpoint:
    """One webhook path of a gateway, mounted at /<gateway name><path>.

    `read` raises Refused before interpreting anything when the request is
    not authentic, and otherwise returns the event it carries.
    """

    path: str
    read: Callable[[CallbackRequest], Event]
    methods: tuple[str, ...] = ("POST",)
    reply_body: str = ""
    reply_type: str = "text/plain"


@runtime_checkable
class HasCallbacks(Protocol):
    name: str

    def callback_endpoints(self) -> Sequence[Endpoint]: ...


def _endpoints_of(gateway: object) -> Sequence[Endpoint]:
    """A gateway's callback endpoints. A plugin written before the method was renamed still
    calls it `webhook_endpoints`: it is read, with a warning, rather than its texts lost."""
    if isinstance(gateway, HasCallbacks):
        return gateway.callback_endpoints()
    old = getattr(gateway, "webhook_endpoints", None)
    if old is None:
        return ()
    log.warning("gateway %s names its callback endpoints webhook_endpoints(); please rename the "
                "method callback_endpoints()", getattr(gateway, "name", "?"))
    return old()


DeliverText = Callable[[InboundText, str], Awaitable[None]]
ReportStatus = Callable[[DeliveryStatus, str], Awaitable[None]]


def check_token(request: CallbackRequest, token: SecretStr) -> None:
    """Shared-secret check for providers that cannot sign: `?token=` or `Authorization: Bearer`."""
    given = request.query.get("token")
    if given is None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        given = value if scheme.lower() == "bearer" else None
    if not given:
        raise Refused("no token")
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise Refused("wrong token")


# A webhook's answer, as the label of its count.
RESULTS = {403: "refused", 400: "unreadable", 413: "too_large", 408: "too_slow", 500: "not_committed"}


class _QuietAccessLog(AbstractAccessLogger):
    """Method, path and status only: query strings may carry a shared secret."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, duration: float) -> None:
        self.logger.debug("%s %s %d (%.0f ms)", request.method, request.path, response.status,
                          duration * 1000)


class CallbackServer:
    def __init__(self, gateways: Sequence[object], deliver: DeliverText, report: ReportStatus,
                 host: str = "127.0.0.1", port: int = 8780, public_base_url: str | None = None,
                 max_body_bytes: int = 65536, refusal_log_interval: float = 60.0,
                 max_connections: int = 100, header_seconds: float = 10.0,
                 body_seconds: float = 10.0, keepalive_seconds: float = 15.0,
                 on_result: Callable[[str, str], None] = lambda gateway, result: None,
                 on_not_configured: Callable[[str, str], None] = lambda gateway, why: None):
        self._deliver = deliver
        self._on_result = on_result  # (gateway, result) for each request: the daemon counts them
        self._on_not_configured = on_not_configured  # (gateway, why): the daemon's incident
        self._body_seconds = body_seconds
        self._report = report
        self._public_base = (public_base_url or "").rstrip("/")
        self._max_body = max_body_bytes
        self._refusals = RateLimitedLog(refusal_log_interval)
        self._listener = Listener(
            host, port, max_connections, header_seconds,
            access_log_class=_QuietAccessLog,
            access_log=logging.getLogger("textback.callbacks.access"),
            keepalive_timeout=keepalive_seconds, max_line_size=MAX_REQUEST_LINE,
            max_field_size=16384)
        self.app = web.Application(client_max_size=max_body_bytes,
                                   middlewares=[self._listener.track])
        self.app.router.add_get("/healthz", self._healthz)
        self.paths: dict[str, str] = {}  # path -> gateway name
        for gateway in gateways:
            for endpoint in _endpoints_of(gateway):
                path = f"/{gateway.name}{endpoint.path}"
                self.paths[path] = gateway.name
                for method in endpoint.methods:
                    self.app.router.add_route(method, path, self._handler(gateway.name, endpoint))

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked the OS to choose)."""
        return self._listener.port

    async def start(self) -> None:
        await self._listener.open(self.app)
        log.info("webhook server listening on %s:%d (%s)", self._listener.host, self.port,
                 ", ".join(sorted(self.paths)) or "no gateway webhooks")

    async def stop(self) -> None:
        """Stop accepting; the commits in flight end (and are answered) before it returns."""
        await self._listener.close()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def _public_url(self, request: web.Request) -> str:
        if self._public_base:
            return self._public_base + request.rel_url.raw_path_qs
        return str(request.url)

    def _handler(self, gateway: str, endpoint: Endpoint
                 ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def counted(request: web.Request) -> web.Response:
            try:
                response = await handle(request)
            except web.HTTPException as exc:
                self._on_result(gateway, RESULTS.get(exc.status, f"http_{exc.status}"))
                raise
            self._on_result(gateway, "accepted")
            return response

        async def handle(request: web.Request) -> web.Response:
            if (request.content_length or 0) > self._max_body:
                raise web.HTTPRequestEntityTooLarge(max_size=self._max_body,
                                                    actual_size=request.content_length)
            try:
                body = await asyncio.wait_for(request.read(), self._body_seconds)
            except asyncio.TimeoutError:
                self._listener.limits.note(f"gave up on a webhook body after {self._body_seconds:g} s")
                raise web.HTTPRequestTimeout(text="too slow") from None
            incoming = CallbackRequest(
                method=request.method, path=request.path, query=request.query,
                raw_query=request.rel_url.raw_query_string, headers=request.headers,
                body=body, public_url=self._public_url(request))
            try:
                event = endpoint.read(incoming)
            except NotConfigured as exc:
                self._refusals.error(f"{request.path} not configured", (
                    f"refused webhook on {request.path} from {request.remote or '?'}: {exc}"))
                self._on_not_configured(gateway, str(exc))
                raise web.HTTPForbidden(text="forbidden") from None
            except Refused as exc:
                self._refusals.warn(request.path, f"refused webhook on {request.path} from "
                                                  f"{request.remote or '?'}: {exc}")
                raise web.HTTPForbidden(text="forbidden") from None
            except UNREADABLE as exc:
                log.warning("unreadable webhook on %s: %s", request.path,
                            type(exc).__name__ if isinstance(exc, RecursionError) else exc)
                raise web.HTTPBadRequest(text="unreadable") from None
            try:
                if isinstance(event, InboundText):
                    await self._deliver(event, gateway)
                elif isinstance(event, DeliveryStatus):
                    await self._report(event, gateway)
            except Exception:
                log.exception("could not commit what came in on %s; answered 500 so the provider "
                              "sends it again", request.path)
                raise web.HTTPInternalServerError(text="try again") from None
            return web.Response(text=endpoint.reply_body, content_type=endpoint.reply_type)

        return counted

