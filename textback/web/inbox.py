"""The shared inbox: sign-in, the inbox and thread pages and their actions, live updates.

Served by the daemon's `web:` listener on the daemon's loop, from the same
store as every worker. Pages are rendered on the server (aiohttp-jinja2,
autoescape on); every action is a form POST answered by a redirect, so it all
works without JavaScript, which only adds the live updates and the segment
counter (static files, no inline script: the CSP forbids it).

Access: a page without a session redirects to sign-in; the event stream gets
401. Every POST carries the session's CSRF token (403 otherwise, nothing
changed). Session tokens live in an HttpOnly cookie; the store keeps only
their digest. Nothing secret is logged (the listener has no access log).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sms_gateway.segments import count_segments
from textback.alerts import one_line
from textback.config import OwnerConfig
from textback.contact_classes import CLASSES, configured_class
from textback.delivery import OWNER_REPLY
from textback.numbers import national
from textback.scorecard import MAX_JOB_VALUE, parse_amount
from textback.signin import AttemptLimiter, LinkClaim, digest, read_link_token, session_expired
from textback.store_web import INBOX_VIEWS
from textback.web import views
from textback.web.links import LINK_KEY
from textback.web.reports import Reports

if TYPE_CHECKING:
    from textback.daemon import Daemon

log = logging.getLogger("textback.web")
timeline = logging.getLogger("textback.timeline")

SESSION_COOKIE = "textback_session"
FORM_COOKIE = "textback_form"  # the CSRF token of the sign-in forms, before there is a session
TOUCH_SECONDS = 30.0  # a session's last-seen time is written at most this often
ACCOUNT_LIMIT = AttemptLimiter(limit=5, window=900.0)
ADDRESS_LIMIT = AttemptLimiter(limit=20, window=900.0)
EVENT_POLL_SECONDS = 1.0
MAX_NOTE_CHARS = 4000
MAX_NAME_CHARS = 80
STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
hasher = PasswordHasher()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def inbox_routes(daemon: "Daemon") -> Callable[[web.Application], None]:
    """The RouteProvider of the shared inbox."""
    def provide(app: web.Application) -> None:
        Inbox(daemon, app)
    return provide


def local_path(target: str | None) -> str:
    """A redirect target from a form or query: a path on this site, else the inbox."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def bad_request(why: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"Bad request: {why}")


class Inbox:
    def __init__(self, daemon: "Daemon", app: web.Application):
        self.daemon = daemon
        self.config = daemon.config
        self.web = daemon.config.web
        env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
        # aiosqlite's debug log prints statement parameters: password hashes, session digests.
        logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger("aiosqlite").level))
        env.filters["national"] = national
        r = app.router
        r.add_static("/static/", STATIC)
        r.add_get("/signin", self.sign_in_page)
        r.add_post("/signin", self.sign_in)
        r.add_get("/link/{token}", self.link_page)
        r.add_post("/link", self.use_link)
        r.add_post("/signout", self.page(self.sign_out))
        r.add_get("/", self.page(self.inbox))
        r.add_get(r"/c/{id:\d{1,12}}", self.page(self.thread))
        r.add_post(r"/c/{id:\d{1,12}}/{action:[a-z]{1,12}}", self.page(self.act))
        r.add_get("/events", self.page(self.events, api=True))
        Reports(self, app)
        self._closing = asyncio.Event()
        app.on_shutdown.append(self._close_streams)

    @property
    def store(self):
        return self.daemon.store

    def render(self, template: str, request: web.Request, context: dict) -> web.Response:
        """A page: `context` and what every page shows (who is signed in, the unread count)."""
        base = {"user": request.get("user"), "csrf": request.get("csrf", ""),
                "business": self.config.business.name, "owners": self.config.owners,
                "title_count": request.get("unread", 0)}
        return aiohttp_jinja2.render_template(template, request, base | context)

    # -- sessions and CSRF ----------------------------------------------------------

    def page(self, handler: Handler, api: bool = False, admin: bool = False) -> Handler:
        """Wrap a handler: a live session (else sign-in, or 401 for `api`), a CSRF token on
        every POST (else 403), the admin role when `admin` (else 403)."""
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            now = time.time()
            token = request.cookies.get(SESSION_COOKIE, "")
            session = await self.store.session(digest(token)) if token else None
            user = None
            if session is not None:
                idle = session_expired(session["seen_at"], now, self.web.session_idle_minutes * 60)
                user = next((o for o in self.config.owners if o.id == session["owner_id"]), None)
                if idle or user is None:
                    await self.store.end_session(digest(token))
                    session = None
            if session is None:
                if api:
                    raise web.HTTPUnauthorized(text="Sign in first.")
                why = "&why=idle" if token else ""
                raise web.HTTPSeeOther(f"/signin?next={quote(local_path(request.path_qs))}{why}")
            if request.method == "POST":
                form = await request.post()
                if not hmac.compare_digest(str(form.get("csrf", "")), session["csrf"]):
                    raise web.HTTPForbidden(text="Forbidden: the form is stale or not from this "
                                                 "site. Reload the page and try again.")
                request["form"] = form
            if admin and user.role != "admin":
                raise web.HTTPForbidden(text="Forbidden: this page is for admins.")
            if now - session["seen_at"] > TOUCH_SECONDS:
                await self.store.touch_session(digest(token), now)
            request["user"], request["csrf"] = user, session["csrf"]
            request["unread"] = await self.store.unread_count()
            return await handler(request)
        return checked

    def _cookie_args(self) -> dict:
        return {"httponly": True, "samesite": "Lax", "secure": self.web.secure, "path": "/"}

    def _form_token(self, request: web.Request, response: web.StreamResponse) -> str:
        """The sign-in form's CSRF token: the cookie's, or a new one set on `response`."""
        token = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(24)
        response.set_cookie(FORM_COOKIE, token, max_age=3600, **self._cookie_args())
        return token

    def _form_checked(self, request: web.Request, form) -> None:
        cookie = request.cookies.get(FORM_COOKIE, "")
        if not cookie or not hmac.compare_digest(str(form.get("csrf", "")), cookie):
            raise web.HTTPForbidden(text="Forbidden: the form is stale or not from this site. "
                                         "Reload the page and try again.")

    async def _signed_in(self, owner: OwnerConfig, target: str) -> None:
        """A new session for `owner`: raises the redirect to `target` that sets its cookie."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await self.store.start_session(owner.id, digest(token), csrf, time.time(),
                                       self.web.session_idle_minutes * 60)
        timeline.info("web: %s signed in", owner.id)
        response = web.HTTPSeeOther(local_path(target))
        response.set_cookie(SESSION_COOKIE, token, **self._cookie_args())
        response.del_cookie(FORM_COOKIE, path="/")
        raise response

    # -- sign-in -----------------------------------------------------------------------

    async def sign_in_page(self, request: web.Request) -> web.StreamResponse:
        why = request.query.get("why", "")
        response = web.Response(content_type="text/html")
        csrf = self._form_token(request, response)
        response.text = aiohttp_jinja2.render_string("signin.html", request, {
            "csrf": csrf, "next": local_path(request.query.get("next")),
            "why": views.SIGN_IN_WHY.get(why, ""), "account": "",
            "business": self.config.business.name})
        if why in ("refused", "limited"):
            response.set_status(401 if why == "refused" else 429)
        return response

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        self._form_checked(request, form)
        account = one_line(str(form.get("account", "")), 200).lower()
        target = local_path(str(form.get("next", "/")))
        now = time.time()
        address = request.remote or "unknown"
        if ACCOUNT_LIMIT.retry_after(account, now) or ADDRESS_LIMIT.retry_after(address, now):
            log.warning("web: sign-in refused, too many failures (account %r, address %s)",
                        account, address)
            raise web.HTTPSeeOther(f"/signin?why=limited&next={quote(target)}")
        owner = next((o for o in self.config.owners
                      if account in (o.id, o.email.lower())), None)
        stored = await self.store.password_hash(owner.id) if owner else None
        if owner is None or not stored or not await asyncio.to_thread(
                self._verify, stored, str(form.get("password", ""))):
            ACCOUNT_LIMIT.failed(account, now)
            ADDRESS_LIMIT.failed(address, now)
            log.warning("web: sign-in failed for account %r from %s", account, address)
            raise web.HTTPSeeOther(f"/signin?why=refused&next={quote(target)}")
        ACCOUNT_LIMIT.succeeded(account)
        await self._signed_in(owner, target)

    @staticmethod
    def _verify(stored: str, password: str) -> bool:
        try:
            return hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        await self.store.end_session(digest(request.cookies.get(SESSION_COOKIE, "")))
        timeline.info("web: %s signed out", request["user"].id)
        response = web.HTTPSeeOther("/signin?why=signed_out")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    async def _link_claim(self, token: str) -> tuple[LinkClaim | None, str]:
        claim, why = read_link_token(await self.store.web_key(LINK_KEY), token, time.time())
        if claim is not None and not any(o.id == claim.owner_id for o in self.config.owners):
            return None, "invalid"
        return claim, why

    async def link_page(self, request: web.Request) -> web.StreamResponse:
        """A link from an email: a button that signs in (a POST), so a mail scanner that fetches
        the link does not spend it."""
        token = request.match_info["token"]
        claim, why = await self._link_claim(token)
        if claim is None:
            raise web.HTTPSeeOther(f"/signin?why={why}")
        if await self.store.link_used(digest(claim.nonce)):
            raise web.HTTPSeeOther("/signin?why=used")
        response = web.Response(content_type="text/html")
        csrf = self._form_token(request, response)
        response.text = aiohttp_jinja2.render_string("link.html", request, {
            "csrf": csrf, "token": token, "owner": self.config.owner(claim.owner_id),
            "business": self.config.business.name})
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    async def use_link(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        self._form_checked(request, form)
        claim, why = await self._link_claim(str(form.get("token", "")))
        if claim is None:
            raise web.HTTPSeeOther(f"/signin?why={why}")
        if not await self.store.use_link(digest(claim.nonce), claim.owner_id, claim.expires_at,
                                         time.time()):
            log.warning("web: a used sign-in link for %s was tried again", claim.owner_id)
            raise web.HTTPSeeOther("/signin?why=used")
        target = f"/c/{claim.conversation_id}" if claim.conversation_id else "/"
        await self._signed_in(self.config.owner(claim.owner_id), target)

    # -- pages ---------------------------------------------------------------------------

    async def inbox(self, request: web.Request) -> web.StreamResponse:
        view = request.query.get("view", "mine")
        if view not in INBOX_VIEWS:
            raise bad_request("no such view")
        search = one_line(request.query.get("q", ""), 100)
        try:
            limit = min(500, max(1, int(request.query.get("limit", "50"))))
        except ValueError:
            raise bad_request("limit must be a number") from None
        now = time.time()
        rows = await self.store.inbox_page(view, now, owner_id=request["user"].id, search=search,
                                           limit=limit)
        context = {"view": view, "views": views.VIEW_TITLES, "search": search, "limit": limit,
                   "rows": views.inbox_rows(self.config, rows, now), "more": len(rows) == limit,
                   "version": await self.store.latest_version()}
        template = "inbox_rows.html" if request.query.get("part") == "rows" else "inbox.html"
        return self.render(template, request, context)

    async def _conversation(self, request: web.Request) -> dict:
        conversation = await self.store.conversation(int(request.match_info["id"]))
        if conversation is None:
            raise web.HTTPNotFound(text="No such conversation.")
        return conversation

    async def thread(self, request: web.Request) -> web.StreamResponse:
        conversation = await self._conversation(request)
        history = await self.store.thread(conversation["id"])
        calls = history["calls"]
        name = views.contact_name(self.config, conversation | {
            "caller_name": next((c["caller_name"] for c in reversed(calls) if c["caller_name"]), "")})
        now = time.time()
        context = {
            "c": conversation, "name": name, "caller": national(conversation["caller"]),
            "number_label": views.number_label(self.config, conversation["business_number"]),
            "owner": views.owner_name(self.config, conversation["owner_id"]),
            "entries": views.timeline(self.config, history), "outcomes": views.OUTCOMES,
            "said": views.SAID.get(request.query.get("said", ""), ""),
            "max_segments": self._max_segments(), "version": conversation["version"],
            "snoozed": (conversation["snoozed_until"] or 0) > now,
            "snoozed_until": views.when(conversation["snoozed_until"], self.config.business.timezone),
            "opted_out": await self.store.is_suppressed(conversation["caller"]),
            "max_job_value": MAX_JOB_VALUE, "classes": CLASSES,
            "contact_class": await self.store.contact_class(conversation["caller"])
            or configured_class(self.config, conversation["caller"]),
        }
        template = "thread_timeline.html" if request.query.get("part") == "timeline" else "thread.html"
        return self.render(template, request, context)

    def _max_segments(self) -> int:
        return self.config.reply_mail.max_segments if self.config.reply_mail else 3

    # -- actions -------------------------------------------------------------------------

    async def act(self, request: web.Request) -> web.StreamResponse:
        action = request.match_info["action"]
        handler = getattr(self, f"_do_{action}", None)
        if handler is None:
            raise web.HTTPNotFound(text="No such action.")
        conversation = await self._conversation(request)
        said = await handler(conversation, request["form"], request["user"])
        raise web.HTTPSeeOther(f"/c/{conversation['id']}?said={said}")

    async def _do_reply(self, conversation: dict, form, user: OwnerConfig) -> str:
        """The same rules as an email reply: opt-outs (checked again at sending), the length."""
        text = str(form.get("body", "")).replace("\r\n", "\n").strip()
        if not text:
            return "empty"
        if count_segments(text).segments > self._max_segments():
            return "too_long"
        caller = conversation["caller"]
        if await self.store.is_suppressed(caller):
            await self.store.refuse_text(caller, conversation["business_number"], OWNER_REPLY,
                                         text, f"web:{user.id}")
            return "opted_out"
        await self.store.queue_reply(conversation["id"], conversation["business_number"], caller,
                                     text, OWNER_REPLY, author=user.id, channel=f"web:{user.id}")
        timeline.info("owner %s replied in the web inbox; texting %s: %s", user.id, caller,
                      one_line(text, 200))
        self.daemon._outbox_wake.set()
        return "queued"

    async def _do_donottext(self, conversation: dict, form, user: OwnerConfig) -> str:
        """The homeowner asked the owner (by phone, in person) not to be texted: the same
        suppression as STOP, for every kind of text and every business number, at once."""
        caller = conversation["caller"]
        if not await self.store.suppress(caller, f"web:{user.id}", conversation["business_number"]):
            return "optout_already"
        timeline.info("opted out: %s, marked do-not-text by %s in the web inbox", caller, user.id)
        return "optout_added"

    async def _do_claim(self, conversation: dict, form, user: OwnerConfig) -> str:
        await self.store.assign(conversation["id"], user.id, f"claimed by {user.id} (web)")
        return "claimed"

    async def _do_assign(self, conversation: dict, form, user: OwnerConfig) -> str:
        target = str(form.get("owner", ""))
        if not any(o.id == target for o in self.config.owners):
            raise bad_request("no such owner")
        await self.store.assign(conversation["id"], target, f"assigned by {user.id} (web)")
        timeline.info("conversation with %s assigned to %s by %s (web)", conversation["caller"],
                      target, user.id)
        return "assigned"

    async def _do_snooze(self, conversation: dict, form, user: OwnerConfig) -> str:
        now = time.time()
        if form.get("hours"):
            try:
                hours = float(str(form["hours"]))
            except ValueError:
                raise bad_request("hours must be a number") from None
            if not 0 < hours <= 24 * 90:
                raise bad_request("snooze for at most 90 days")
            until = now + hours * 3600
        else:
            try:
                until = datetime.strptime(str(form.get("until", "")), "%Y-%m-%dT%H:%M").replace(
                    tzinfo=ZoneInfo(self.config.business.timezone)).timestamp()
            except ValueError:
                raise bad_request("give a date and time") from None
            if not now < until <= now + 90 * 86400:
                raise bad_request("snooze until a time in the next 90 days")
        await self.store.snooze(conversation["id"], until)
        return "snoozed"

    async def _do_done(self, conversation: dict, form, user: OwnerConfig) -> str:
        await self.store.mark_done(conversation["id"])
        return "done"

    async def _do_outcome(self, conversation: dict, form, user: OwnerConfig) -> str:
        stage = str(form.get("stage", ""))
        if stage not in views.OUTCOMES:
            raise bad_request("no such outcome")
        value = None
        if stage == "won" and str(form.get("amount", "")).strip():
            value = parse_amount(str(form["amount"]))
            if value is None:
                raise bad_request(f"the amount must be a number up to {MAX_JOB_VALUE:,.0f}")
        await self.store.record_outcome(conversation["id"], stage, value, f"web:{user.id}")
        timeline.info("conversation with %s marked %s%s by %s (web)", conversation["caller"],
                      stage, f" ({value:,.0f})" if value else "", user.id)
        return "outcome"

    async def _do_note(self, conversation: dict, form, user: OwnerConfig) -> str:
        body = str(form.get("body", "")).strip()
        if not body or len(body) > MAX_NOTE_CHARS:
            raise bad_request(f"a note has 1 to {MAX_NOTE_CHARS} characters")
        await self.store.add_note(conversation["id"], user.id, body)
        return "note"

    async def _do_contact(self, conversation: dict, form, user: OwnerConfig) -> str:
        """The name, and the class the rules apply from the caller's next call on."""
        name = one_line(str(form.get("name", "")), MAX_NAME_CHARS + 1)
        if len(name) > MAX_NAME_CHARS:
            raise bad_request(f"a name has at most {MAX_NAME_CHARS} characters")
        kind = str(form.get("class", ""))
        if kind not in CLASSES:
            raise bad_request("no such class")
        await self.store.set_contact_name(conversation["id"], name)
        caller = conversation["caller"]
        if kind != (await self.store.contact_class(caller) or configured_class(self.config, caller)):
            await self.store.set_contact_class(caller, kind, user.id)
            timeline.info("contact %s is now a %s (set by %s in the web inbox)", caller, kind, user.id)
        return "contact"

    # -- live updates ----------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: each changed conversation as an event whose id is its version.

        A reconnecting browser sends Last-Event-ID and gets every change after it, so a
        dropped stream loses nothing; the page then re-reads what it shows.
        """
        try:
            seen = int(request.headers.get("Last-Event-ID") or request.query.get("since") or -1)
        except ValueError:
            raise bad_request("Last-Event-ID must be a number") from None
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        if seen < 0:
            seen = await self.store.latest_version()
        try:
            await self._stream(response, seen)
        except ConnectionResetError:
            pass  # the browser went to another page or lost its connection; it reconnects
        return response

    async def _stream(self, response: web.StreamResponse, seen: int) -> None:
        await response.write(b"retry: 2000\n\n")
        while True:
            changes = await self.store.changes_since(seen)
            if changes:
                seen = changes[-1]["version"]
                data = json.dumps({"conversations": [c["id"] for c in changes],
                                   "unread": await self.store.unread_count()})
                await response.write(f"id: {seen}\nevent: changed\ndata: {data}\n\n".encode())
            else:
                await response.write(b": idle\n\n")
            try:
                await asyncio.wait_for(self._closing.wait(), EVENT_POLL_SECONDS)
            except asyncio.TimeoutError:
                continue
            return

    async def _close_streams(self, app: web.Application) -> None:
        """The server stops: end every event stream now rather than at the shutdown timeout."""
        self._closing.set()
