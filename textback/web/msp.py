"""The MSP console: one sign-in for the fleet's MSP admins, a list of every company of the
process, and a hand-off into each company's own web app.

Served by the process's web front on the host name of `msp.public_url` (fleet.yaml), beside
the companies' hosts. It reads no company's conversations: its list shows each company's
name, host, how many conversations wait for an answer and how many incidents are open, and
its "Open" button (a POST with the session's CSRF token) makes a single-use sign-in link of
that company, with the company's own link key, for the user `msp:<id>`, and sends the
browser there. The company's app spends the link once (its store's `use_link`) and starts
its own session on its own host: nothing is shared across hosts but that signed, one-minute,
one-time link, so a console session alone opens nothing, and a company's cookies never reach
the console or another company.

Console sessions are kept in the store of the process's first company by id (its "home"):
a restart keeps them, and the daemons of a fleet that serve the same companies share them,
so a proxy may send the console's requests to any of them. Only the session token's digest is
kept, with the digest of the admin's password hash at sign-in: who may sign in is read from
fleet.yaml at the start, so at the next request after a restart, a session of an admin
removed there, or of one whose password has changed since, ends. Their sessions inside the
companies end then too (the company's app no longer knows them). Failed sign-ins are counted
in this process's memory: each daemon limits them on its own.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

from textback.core.alerts import one_line
from textback.core.msp import HANDOFF_SECONDS, MspAccess, msp_user_id
from textback.signin import account_key, address_key, client_address, digest, retry_after
from textback.web.forms import check_csrf, cookie_args, form_token, hasher, password_matches
from textback.web.links import hand_off_link
from textback.web.server import CONTENT_SECURITY_POLICY, PRIVATE, application, no_traceback

if TYPE_CHECKING:
    from textback.fleet_config import MspConfig

log = logging.getLogger("textback.web")
timeline = logging.getLogger("textback.timeline")

SESSION_COOKIE = "textback_msp_session"
FORM_COOKIE = "textback_msp_form"  # the sign-in form's CSRF token, before there is a session
MAX_BODY_BYTES = 16 * 1024  # a sign-in form or a button: a few fields
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
SIGN_IN_WHY = {
    "refused": "Wrong admin id or password.",
    "limited": "Too many failed sign-ins. Wait a few minutes and try again.",
    "idle": "You were signed out after a while without activity. Please sign in again.",
    "signed_out": "You are signed out.",
    "changed": "Your MSP access has changed (a new password, or an admin removed). Please sign "
               "in again.",
}


@dataclass(frozen=True)
class CompanyDoor:
    """What the console may use of one company of the process: its name and address for the
    list, and its store for the list's two counts and the hand-off link (its link key, which
    its own app checks and spends)."""

    id: str
    name: str
    public_url: str
    store: Any  # the company's StorePort, opened for that company alone

    @property
    def origin(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class ConsoleSession:
    admin_id: str
    csrf: str


class MspConsole:
    """The console of `msp` (fleet.yaml), its admins' argon2id hashes read at the start
    (`password_hashes`, admin id → hash). Companies are added as their daemons join the front."""

    def __init__(self, msp: "MspConfig", password_hashes: Mapping[str, str]):
        self.msp = msp
        self._hashes = dict(password_hashes)
        # Each admin's password hash, by digest: a session keeps the one it began with.
        self._credentials = {admin_id: digest(hashed)
                             for admin_id, hashed in self._hashes.items()}
        self._doors: dict[str, CompanyDoor] = {}
        self._failures: dict[str, list[float]] = {}  # limit key → failure times
        # Refusing an unknown admin costs one argon2 check too, so timing tells no id apart.
        self._dummy_hash = hasher.hash(secrets.token_urlsafe(24))

    @property
    def host(self) -> str:
        return self.msp.host

    def access(self) -> MspAccess:
        """What each company's web app is told: who the MSP admins are, where the console is."""
        return MspAccess(self.msp.public_url.rstrip("/") + "/",
                         {admin.id: admin.admin() for admin in self.msp.admins})

    def add_company(self, door: CompanyDoor) -> None:
        self._doors[door.id] = door

    def application(self) -> web.Application:
        return application(MAX_BODY_BYTES, [self._routes], [no_traceback])

    def _routes(self, app: web.Application) -> None:
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
        r = app.router
        r.add_static("/static/", STATIC)
        r.add_get("/signin", self.sign_in_page)
        r.add_post("/signin", self.sign_in)
        r.add_get("/", self.companies)
        r.add_post(r"/open/{company:[a-z0-9][a-z0-9_-]{0,62}}", self.open_company)
        r.add_post("/signout", self.sign_out)

    # -- sessions and CSRF -----------------------------------------------------------------

    def _home(self) -> Any:
        """The store the console keeps its sessions in: that of the process's first company by
        id, the same in each daemon serving the same companies. Until a company has joined
        (the process is starting) the console answers 503."""
        if not self._doors:
            raise web.HTTPServiceUnavailable(text="textback is starting; try again in a moment.",
                                             headers={"Retry-After": "5"})
        return self._doors[min(self._doors)].store

    async def _session(self, request: web.Request) -> tuple[str, ConsoleSession]:
        """The request's live console session (its digest, the session), else the redirect to
        sign-in: none; idle; or of an admin whose password changed or who was removed from
        fleet.yaml since it began (the last two ended here)."""
        request[PRIVATE] = True  # what a session sees is never cached, even a redirect
        token = request.cookies.get(SESSION_COOKIE, "")
        store = self._home()
        key = digest(token) if token else ""
        row = await store.console_session(key) if key else None
        if row is None:
            raise web.HTTPSeeOther("/signin")
        now = time.time()
        why = ("idle" if now - row["seen_at"] > self.msp.session_idle_minutes * 60 else
               "changed" if row["credential"] != self._credentials.get(row["admin_id"]) else "")
        if why:
            await store.end_console_session(key)
            raise web.HTTPSeeOther(f"/signin?why={why}")
        await store.touch_console_session(key, now)
        return key, ConsoleSession(row["admin_id"], row["csrf"])

    async def _posted(self, request: web.Request, session: ConsoleSession):
        form = await request.post()
        check_csrf(form.get("csrf"), session.csrf)
        return form

    def _client(self, request: web.Request) -> str:
        return client_address(request.remote, request.headers.getall("X-Forwarded-For", []),
                              self.msp.trusted_proxies)

    # -- sign-in ---------------------------------------------------------------------------

    async def sign_in_page(self, request: web.Request) -> web.StreamResponse:
        request[PRIVATE] = True  # the form's CSRF token is this browser's
        why = request.query.get("why", "")
        response = web.Response(content_type="text/html")
        token = form_token(request, response, FORM_COOKIE, self.msp.secure)
        response.text = aiohttp_jinja2.render_string("msp_signin.html", request, {
            "csrf": token, "why": SIGN_IN_WHY.get(why, "")})
        if why in ("refused", "limited"):
            response.set_status(401 if why == "refused" else 429)
        return response

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        request[PRIVATE] = True
        form = await request.post()
        check_csrf(form.get("csrf"), request.cookies.get(FORM_COOKIE, ""))
        typed = one_line(str(form.get("account", "")), 200).lower()
        admin = next((a for a in self.msp.admins if typed in (a.id, a.email.lower())), None)
        now, window = time.time(), self.msp.signin_window_minutes * 60
        address = self._client(request)
        limits = {account_key(admin.id if admin else None, typed):
                  self.msp.signin_failures_per_account,
                  address_key(address): self.msp.signin_failures_per_address}
        if any(retry_after(self._failures.get(key, []), limit, window, now)
               for key, limit in limits.items()):
            log.warning("msp: sign-in refused, too many failures (account %r, address %s)",
                        typed, address)
            raise web.HTTPSeeOther("/signin?why=limited")
        stored = self._hashes.get(admin.id) if admin else None
        verified = await asyncio.to_thread(password_matches, stored or self._dummy_hash,
                                           str(form.get("password", "")))
        if admin is None or stored is None or not verified:
            self._note_failure(list(limits), now, window)
            log.warning("msp: sign-in failed for account %r from %s", typed, address)
            raise web.HTTPSeeOther("/signin?why=refused")
        self._failures.pop(account_key(admin.id, typed), None)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await self._home().start_console_session(digest(token), admin.id,
                                                 self._credentials[admin.id], csrf, now,
                                                 self.msp.session_idle_minutes * 60)
        timeline.info("msp: %s signed in to the console from %s", admin.id, address)
        response = web.HTTPSeeOther("/")
        response.set_cookie(SESSION_COOKIE, token, **cookie_args(self.msp.secure))
        response.del_cookie(FORM_COOKIE, path="/")
        raise response

    def _note_failure(self, keys: list[str], now: float, window: float) -> None:
        for key in list(self._failures):  # failures older than the window count no more
            recent = [at for at in self._failures[key] if at > now - window]
            if recent:
                self._failures[key] = recent
            else:
                del self._failures[key]
        for key in keys:
            self._failures.setdefault(key, []).append(now)

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        key, session = await self._session(request)
        await self._posted(request, session)
        await self._home().end_console_session(key)
        timeline.info("msp: %s signed out of the console", session.admin_id)
        response = web.HTTPSeeOther("/signin?why=signed_out")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    # -- the companies -----------------------------------------------------------------------

    async def companies(self, request: web.Request) -> web.StreamResponse:
        _, session = await self._session(request)
        now = time.time()
        rows = []
        for door in sorted(self._doors.values(), key=lambda d: d.name.lower()):
            try:
                waiting: int | str = len(await door.store.waiting_replies(now))
                incidents: int | str = len(await door.store.open_incidents())
            except Exception:  # a company's database answering badly: said, not hidden
                log.exception("msp: could not read company %s's counts", door.id)
                waiting = incidents = "unavailable"
            rows.append({"id": door.id, "name": door.name, "host": urlsplit(door.public_url).netloc,
                         "waiting": waiting, "incidents": incidents})
        admin = self.msp.admin(session.admin_id)
        response = aiohttp_jinja2.render_template("msp_console.html", request, {
            "rows": rows, "csrf": session.csrf, "admin": admin})
        # The Open buttons' answer is a redirect to a company's host, which a form may follow
        # only if this page's form-action names it.
        origins = " ".join(sorted({door.origin for door in self._doors.values()}))
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
            "form-action 'self'", f"form-action 'self' {origins}".rstrip())
        return response

    async def open_company(self, request: web.Request) -> web.StreamResponse:
        _, session = await self._session(request)
        await self._posted(request, session)
        door = self._doors.get(request.match_info["company"])
        if door is None:
            raise web.HTTPNotFound(text="No such company in this process.")
        link = await hand_off_link(door.store, door.public_url, msp_user_id(session.admin_id),
                                   HANDOFF_SECONDS)
        timeline.info("msp: %s opened company %s", session.admin_id, door.id)
        # The link signs in once: kept out of caches and out of the next page's Referer.
        raise web.HTTPSeeOther(link, headers={"Cache-Control": "no-store",
                                              "Referrer-Policy": "no-referrer"})
