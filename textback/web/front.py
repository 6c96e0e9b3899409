"""One web listener in front of several companies' web apps, in one `textback run` process.

Each company keeps its whole web app (inbox, reports, API, metrics, consent page, push), built
on its own store exactly as a daemon of its own builds it. The front owns the socket, the
connection limits and the dispatch: a request goes to the company whose `web.public_url`
names the request's Host, and a Host no company is served under is a 404 from the front
itself, never another company's page.

Why by Host rather than by a path prefix (`/c/<company>/`): the browser already keeps every
company apart by origin. Cookies (the session and the sign-in form's CSRF cookie) are
host-only, so a session of A is never even sent to B; the CSP's `'self'`, `form-action` and
`connect-src` name one company's origin; the push service worker's scope `/` is one
company's; the links in alert emails and texts (`public_url`) and the API's base URL stay
what they were; and no page, script or stylesheet has to learn a prefix.

A fleet's MSP console (`msp:` of fleet.yaml, `textback.web.msp`) is one more host on the
front: its own app, its own cookies, and each company it lists is the company as it joined.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Iterable

from aiohttp import web

from sms_gateway.connection_limits import Listener
from textback import service
from textback.config import WebConfig
from textback.core.msp import MspAccess
from textback.web.msp import CompanyDoor, MspConsole
from textback.web.server import RouteProvider, application, no_traceback, security_headers

log = logging.getLogger("textback.web")


class FrontClosed(RuntimeError):
    """The front will not serve: another company's part failed before every app had joined."""


class WebFront:
    """One listener (`listen_host`:`port`) for the companies named in `hosts` (Host name →
    company id). Each company's daemon `join`s with its routes once its store is open; the
    listener opens when every company has joined, so no request ever meets a company that is
    not there yet. With `console`, the MSP console is served on its own host name too."""

    def __init__(self, listen_host: str, port: int, hosts: dict[str, str],
                 max_connections: int = 200, header_seconds: float = 10.0,
                 keepalive_seconds: float = 30.0, console: MspConsole | None = None):
        self._hosts = dict(hosts)
        self._console = console
        self._apps: dict[str, tuple[int, web.Application]] = {}  # company → (max body, app)
        self._serving: set[str] = set()
        # No access log: request lines are chosen by strangers, and URLs may carry sign-in links.
        self._listener = Listener(listen_host, port, max_connections, header_seconds,
                                  access_log=None, keepalive_timeout=keepalive_seconds)
        self._settled = asyncio.Event()
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked the OS to choose)."""
        return self._listener.port

    @property
    def msp_access(self) -> MspAccess | None:
        """What the companies' apps behind this front know of the MSP admins (None: no console)."""
        return self._console.access() if self._console is not None else None

    async def join(self, company: str, config: WebConfig,
                   providers: Iterable[RouteProvider], door: CompanyDoor | None = None) -> None:
        """Add `company`'s web app (and, with a console, its `door` to the console's list), and
        return once the front listens (raises FrontClosed if it never will)."""
        if self._console is not None and door is not None:
            self._console.add_company(door)
        app = application(config.max_body_bytes, providers,
                          [self._company_gate(company, config.max_body_bytes), no_traceback])
        self._apps[company] = (config.max_body_bytes, app)
        self._serving.add(company)
        if set(self._apps) == set(self._hosts.values()) and not self._settled.is_set():
            try:
                await self._start()
            except BaseException as exc:
                self.close(exc)
                raise
            self._settled.set()
        await self._settled.wait()
        if self._failure is not None:
            where = f"{self._listener.host}:{self._listener.bind_port}"
            raise FrontClosed(f"the web front on {where} is closed: {self._failure}"
                              ) from self._failure

    def leave(self, company: str) -> None:
        """`company` is stopping: its pages answer 503 from now on (its store is closing)."""
        self._serving.discard(company)

    def close(self, why: BaseException) -> None:
        """Never start (another company failed): companies waiting in `join` raise."""
        if not self._settled.is_set():
            self._failure = why
            self._settled.set()

    def _company_gate(self, company: str, max_body_bytes: int):
        """A company's own middleware: its log lines named, its pages only while it serves, and
        its own body limit (the front's is the largest of them) for a body that declares its
        length."""

        @web.middleware
        async def gate(request: web.Request, handler) -> web.StreamResponse:
            service.COMPANY.set(company)  # this request's task logs as its company's
            if company not in self._serving:
                raise web.HTTPServiceUnavailable(text="This inbox is restarting; try again soon.")
            if request.content_length is not None and request.content_length > max_body_bytes:
                raise web.HTTPRequestEntityTooLarge(max_size=max_body_bytes,
                                                    actual_size=request.content_length)
            return await handler(request)

        return gate

    async def _start(self) -> None:
        front = web.Application(
            client_max_size=max(size for size, _ in self._apps.values()),
            middlewares=[self._listener.track, no_traceback])
        front.on_response_prepare.append(security_headers)  # the 404 of an unknown host too
        for host, company in self._hosts.items():
            front.add_domain(host, self._apps[company][1])
        if self._console is not None:
            front.add_domain(self._console.host, self._console.application())
        await self._listener.open(front)
        served = [f"{company} ({host})" for host, company in sorted(self._hosts.items())]
        if self._console is not None:
            served.append(f"the MSP console ({self._console.host})")
        log.info("web front listening on %s:%d for %s", self._listener.host, self.port,
                 ", ".join(served))

    async def stop(self) -> None:
        self.close(FrontClosed("stopped"))
        await self._listener.close()
