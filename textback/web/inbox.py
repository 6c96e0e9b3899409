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
from aiohttp import BodyPartReader, web
from multidict import MultiDict, MultiDictProxy

from textback.core import media
from textback.core.alerts import one_line
from textback.config import CONTACT_CLASSES, OwnerConfig
from textback.core.msp import MspAccess
from textback.core.numbers import national
from textback.core.replies import measure, segment_limit
from textback.core.scorecard import MAX_JOB_VALUE, parse_amount
from textback.signin import (LinkClaim, account_key, address_key, client_address, digest,
                             read_link_token, retry_after, session_expired)
from textback.store.web import INBOX_VIEWS, StaleState
from textback.core import views
from textback.web import medialinks
from textback.web.links import LINK_KEY
from textback.web.reports import Reports
from textback.web.forms import check_csrf, cookie_args, form_token, hasher, password_matches
from textback.web.request_keys import CSRF, FORM, SESSION, UNREAD, USER
from textback.web.server import PRIVATE

if TYPE_CHECKING:
    from textback.web.context import HttpContext

log = logging.getLogger("textback.web")
timeline = logging.getLogger("textback.timeline")
# A homeowner's file is never a page: no script, no plugin, no request of its own.
MEDIA_POLICY = "sandbox; default-src 'none'"

SESSION_COOKIE = "textback_session"
FORM_COOKIE = "textback_form"  # the CSRF token of the sign-in forms, before there is a session
TOUCH_SECONDS = 30.0  # a session's last-seen time is written at most this often
MAX_USER_AGENT_CHARS = 300
EVENT_POLL_SECONDS = 1.0
MAX_NOTE_CHARS = 4000
MAX_NAME_CHARS = 80
# A reply box's POST with its photos, all parts together: above the largest MMS (Twilio's 5 MB)
# with room for photos that go as smaller JPEGs. A reverse proxy in front must allow it too.
UPLOAD_BYTES = 12 * 1024 * 1024
UPLOAD_PARTS = 40  # its fields and files: a few fields, and more files than any MMS carries
# Actions that add to a thread, or stop all texts to its caller, and so cannot undo anyone's
# change: a page's age does not matter to them (a new text arriving must not throw away a
# reply being typed). Every other action sets state, and carries the state_version its page
# was made from.
ADDITIONS = ("reply", "note", "donottext", "intake")
STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# The app's Inbox, for rooms listed after it that serve signed-in pages with its sessions.
INBOX = web.AppKey("inbox", "Inbox")
# A part of the settings page another room adds: request -> what its template section reads.
SettingsPart = Callable[[web.Request], Awaitable[dict]]


def inbox_routes(context: "HttpContext") -> Callable[[web.Application], None]:
    """The RouteProvider of the shared inbox."""
    def provide(app: web.Application) -> None:
        Inbox(context, app)
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
    def __init__(self, context: "HttpContext", app: web.Application):
        self.context = context
        self.config = context.config
        self.web = context.config.web
        self.msp = context.msp or MspAccess("")
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
        r.add_get(r"/c/{id:\d{1,12}}/media/{media:\d{1,12}}", self.page(self.media_file))
        r.add_get(r"/media/{media:\d{1,12}}", self.linked_media_file)
        r.add_get("/events", self.page(self.events, api=True))
        r.add_get("/settings", self.page(self.settings))
        r.add_post("/settings/end-others", self.page(self.end_other_sessions))
        Reports(self, app)
        self.settings_parts: list[SettingsPart] = []
        app[INBOX] = self
        # What an unknown account's password is checked against, so that refusing it takes
        # the time of a real check (a hash of a random password nobody knows).
        self._dummy_hash = hasher.hash(secrets.token_urlsafe(24))
        self._closing = asyncio.Event()
        app.on_shutdown.append(self._close_streams)

    @property
    def store(self):
        return self.context.store

    def render(self, template: str, request: web.Request, context: dict) -> web.Response:
        """A page: `context` and what every page shows (who is signed in, the unread count)."""
        user = request.get(USER)
        base = {"user": user, "csrf": request.get(CSRF, ""),
                "msp_console": self.msp.console_url if user and self.msp.admin(user.id) else "",
                "business": self.config.business.name, "owners": self.config.owners,
                "title_count": request.get(UNREAD, 0), "app_shell": self.config.pushes()}
        return aiohttp_jinja2.render_template(template, request, base | context)

    # -- sessions and CSRF ----------------------------------------------------------

    def user(self, user_id: str) -> OwnerConfig | None:
        """Who a session or link names: an owner of this company, or a fleet's MSP admin
        (`msp:<id>`, from the console's hand-off) as a user with an admin's powers. An MSP
        admin is not an owner: not in `config.owners`, so never assigned a call, alerted, or
        listed among the owners."""
        owner = next((o for o in self.config.owners if o.id == user_id), None)
        if owner is not None:
            return owner
        admin = self.msp.admin(user_id)
        if admin is None:
            return None
        # Built without validation: an owner's id never holds the colon that marks this one.
        return OwnerConfig.model_construct(id=admin.user_id, name=admin.shown_name,
                                           email=admin.email, role="admin")

    def is_msp(self, user: OwnerConfig) -> bool:
        return self.msp.admin(user.id) is not None

    def page(self, handler: Handler, api: bool = False, admin: bool = False) -> Handler:
        """Wrap a handler: a live session (else sign-in, or 401 for `api`), a CSRF token on
        every POST (else 403), the admin role when `admin` (else 403)."""
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            request[PRIVATE] = True  # what a session sees is never cached, even a redirect
            now = time.time()
            token = request.cookies.get(SESSION_COOKIE, "")
            session = await self.store.session(digest(token)) if token else None
            user, why = None, ("ended" if token else "")
            if session is not None and session["ended_at"] is not None:
                why, session = session["ended_why"], None
            elif session is not None:
                user = self.user(session["owner_id"])
                why = "no_owner" if user is None else "idle" if session_expired(
                    session["seen_at"], now, self.web.session_idle_minutes * 60) else ""
                if why:
                    await self.store.end_session(digest(token), why)
                    session = None
            if session is None:
                if api:
                    raise web.HTTPUnauthorized(text="Sign in first.")
                why = f"&why={why}" if why in views.SIGN_IN_WHY else ""
                raise web.HTTPSeeOther(f"/signin?next={quote(local_path(request.path_qs))}{why}")
            if request.method == "POST":
                form = await self._posted(request)
                check_csrf(form.get("csrf"), session["csrf"])
                request[FORM] = form
            if admin and user.role != "admin":
                raise web.HTTPForbidden(text="Forbidden: this page is for admins.")
            if now - session["seen_at"] > TOUCH_SECONDS:
                await self.store.touch_session(digest(token), now)
            request[USER], request[CSRF] = user, session["csrf"]
            request[SESSION] = session
            request[UNREAD] = await self.store.unread_count()
            return await handler(request)
        return checked

    async def _posted(self, request: web.Request) -> MultiDictProxy:
        """A signed-in POST's form. The reply box alone is multipart, for its photos: read here
        part by part within UPLOAD_BYTES (the listener's max_body_bytes is sized for words),
        each file an Attachment under its field's name; any other POST as aiohttp reads it."""
        if (request.content_type != "multipart/form-data"
                or request.match_info.get("action") != "reply"):
            return await request.post()
        fields: MultiDict = MultiDict()
        total = 0
        reader = await request.multipart()
        parts = 0
        while (part := await reader.next()) is not None:
            parts += 1
            if not isinstance(part, BodyPartReader) or parts > UPLOAD_PARTS:
                raise bad_request(f"a reply form has at most {UPLOAD_PARTS} flat parts")
            chunks = []
            while chunk := await part.read_chunk(65536):
                total += len(chunk)
                if total > UPLOAD_BYTES:
                    raise web.HTTPRequestEntityTooLarge(max_size=UPLOAD_BYTES, actual_size=total)
                chunks.append(chunk)
            data = b"".join(chunks)
            if part.filename is None:
                fields.add(part.name or "", data.decode("utf-8", "replace"))
            elif data:  # a file input left empty sends a part with no name and no bytes
                fields.add(part.name or "", media.Attachment(
                    part.filename, part.headers.get("Content-Type", ""), data))
        return MultiDictProxy(fields)

    def _form_token(self, request: web.Request, response: web.StreamResponse) -> str:
        return form_token(request, response, FORM_COOKIE, self.web.secure)

    def _form_checked(self, request: web.Request, form) -> None:
        check_csrf(form.get("csrf"), request.cookies.get(FORM_COOKIE, ""))

    def client(self, request: web.Request) -> str:
        """The client's address: X-Forwarded-For counts only from `web.trusted_proxies`."""
        return client_address(request.remote, request.headers.getall("X-Forwarded-For", []),
                              self.web.trusted_proxies)

    async def _signed_in(self, request: web.Request, owner: OwnerConfig, target: str) -> None:
        """A new session for `owner`: raises the redirect to `target` that sets its cookie."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await self.store.start_session(
            owner.id, digest(token), csrf, time.time(), self.web.session_idle_minutes * 60,
            user_agent=one_line(request.headers.get("User-Agent", ""), MAX_USER_AGENT_CHARS),
            address=self.client(request))
        timeline.info("web: %s signed in", owner.id)
        response = web.HTTPSeeOther(local_path(target))
        response.set_cookie(SESSION_COOKIE, token, **cookie_args(self.web.secure))
        response.del_cookie(FORM_COOKIE, path="/")
        raise response

    # -- sign-in -----------------------------------------------------------------------

    async def sign_in_page(self, request: web.Request) -> web.StreamResponse:
        request[PRIVATE] = True  # the form's CSRF token is this browser's
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
        now, window = time.time(), self.web.signin_window_minutes * 60
        address = self.client(request)
        owner = next((o for o in self.config.owners
                      if account in (o.id, o.email.lower())), None)
        # "dana" and "DANA@acme.example" count as one: the owner's failures, whichever was typed.
        limits = {account_key(owner.id if owner else None, account):
                  self.web.signin_failures_per_account,
                  address_key(address): self.web.signin_failures_per_address}
        failures = await self.store.sign_in_failures(list(limits), now - window)
        if any(retry_after(failures[key], limit, window, now) for key, limit in limits.items()):
            log.warning("web: sign-in refused, too many failures (account %r, address %s)",
                        account, address)
            raise web.HTTPSeeOther(f"/signin?why=limited&next={quote(target)}")
        stored = await self.store.password_hash(owner.id if owner else "")
        # An unknown account, or an owner without a password, is checked against the dummy
        # hash: every refusal costs one argon2 verification, so timing tells no account apart.
        verified = await asyncio.to_thread(password_matches, stored or self._dummy_hash,
                                           str(form.get("password", "")))
        if owner is None or not stored or not verified:
            await self.store.note_sign_in_failure(list(limits), now, window)
            log.warning("web: sign-in failed for account %r from %s", account, address)
            raise web.HTTPSeeOther(f"/signin?why=refused&next={quote(target)}")
        await self.store.clear_sign_in_failures(account_key(owner.id, account))
        await self._signed_in(request, owner, target)

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        await self.store.end_session(digest(request.cookies.get(SESSION_COOKIE, "")), "signed_out")
        timeline.info("web: %s signed out", request[USER].id)
        response = web.HTTPSeeOther("/signin?why=signed_out")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    async def _link_claim(self, token: str) -> tuple[LinkClaim | None, str]:
        claim, why = read_link_token(await self.store.web_key(LINK_KEY), token, time.time())
        if claim is not None and self.user(claim.owner_id) is None:
            return None, "invalid"
        return claim, why

    async def link_page(self, request: web.Request) -> web.StreamResponse:
        """A link from an email: a button that signs in (a POST), so a mail scanner that fetches
        the link does not spend it."""
        token = request.match_info["token"]
        claim, why = await self._link_claim(token)
        if claim is None:
            raise web.HTTPSeeOther(f"/signin?why={why}")
        if self.msp.admin(claim.owner_id) is not None:
            # The MSP console's hand-off: never emailed, so no mail scanner can fetch it; the
            # browser that asked the console for it follows it at once, and it signs in here.
            await self._spend_link(request, claim)
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
        await self._spend_link(request, claim)

    async def _spend_link(self, request: web.Request, claim: LinkClaim) -> None:
        """Spend a genuine link's nonce and sign its user in (raises the redirect); a link
        spent before is refused."""
        if not await self.store.use_link(digest(claim.nonce), claim.owner_id, claim.expires_at,
                                         time.time()):
            log.warning("web: a used sign-in link for %s was tried again", claim.owner_id)
            raise web.HTTPSeeOther("/signin?why=used")
        target = f"/c/{claim.conversation_id}" if claim.conversation_id else "/"
        user = self.user(claim.owner_id)
        assert user is not None  # _link_claim refuses a link of nobody
        await self._signed_in(request, user, target)

    # -- settings: the owner's sessions ----------------------------------------------------

    async def settings(self, request: web.Request) -> web.StreamResponse:
        """Where this owner is signed in (browser, address, last seen), to end the others."""
        user = request[USER]
        sessions = views.session_rows(await self.store.live_sessions(user.id),
                                      request[SESSION]["token_digest"],
                                      self.config.business.timezone)
        context = {"sessions": sessions, "said": views.SAID.get(request.query.get("said", ""), "")}
        for part in self.settings_parts:
            context |= await part(request)
        return self.render("settings.html", request, context)

    async def end_other_sessions(self, request: web.Request) -> web.StreamResponse:
        user = request[USER]
        ended = await self.store.end_other_sessions(user.id, request[SESSION]["token_digest"])
        timeline.info("web: %s signed out %d other session(s)", user.id, ended)
        raise web.HTTPSeeOther("/settings?said=others_ended")

    # -- pages ---------------------------------------------------------------------------

    async def inbox(self, request: web.Request) -> web.StreamResponse:
        # An MSP admin owns nothing here: their first view is every open conversation.
        view = request.query.get("view", "all" if self.is_msp(request[USER]) else "mine")
        if view not in INBOX_VIEWS:
            raise bad_request("no such view")
        search = one_line(request.query.get("q", ""), 100)
        try:
            limit = min(500, max(1, int(request.query.get("limit", "50"))))
        except ValueError:
            raise bad_request("limit must be a number") from None
        projects = tuple(self.config.intake.vocabulary().projects)
        project, area = request.query.get("project", ""), request.query.get("area", "")
        if project and project not in projects:
            raise bad_request("no such project type")
        if area not in ("", "in", "out"):
            raise bad_request("area is in or out")
        now = time.time()
        rows = await self.store.inbox_page(view, now, owner_id=request[USER].id, search=search,
                                           limit=limit, project=project, area=area)
        context = {"view": view, "views": views.VIEW_TITLES, "search": search, "limit": limit,
                   "projects": projects, "project": project, "area": area,
                   "rows": views.inbox_rows(self.config, rows, now), "more": len(rows) == limit,
                   "version": await self.store.latest_version()}
        return self.render("inbox.html", request, context)

    async def _conversation(self, request: web.Request) -> dict:
        conversation = await self.store.conversation(int(request.match_info["id"]))
        if conversation is None:
            raise web.HTTPNotFound(text="No such conversation.")
        return conversation

    async def thread(self, request: web.Request) -> web.StreamResponse:
        conversation = await self._conversation(request)
        context = await self._thread_context(conversation)
        context["said"] = views.SAID.get(request.query.get("said", ""), "")
        return self.render("thread.html", request, context)

    async def _state(self, conversation: dict) -> dict:
        """What the thread page shows of the conversation's state (see views.shown_state)."""
        kind = await self.store.contact_class(conversation["caller"]) \
            or self.config.contact_class(conversation["caller"])
        return views.shown_state(self.config, conversation,
                                 await self.store.latest_outcome(conversation["id"]), kind, time.time())

    async def _thread_context(self, conversation: dict) -> dict:
        history = await self.store.thread(conversation["id"])
        history["media"] = await self.store.media_of(m["id"] for m in history["messages"])
        calls = history["calls"]
        name = views.contact_name(self.config, conversation | {
            "caller_name": next((c["caller_name"] for c in reversed(calls) if c["caller_name"]), "")})
        now = time.time()
        context = {
            "c": conversation, "name": name, "caller": national(conversation["caller"]),
            "number_label": views.number_label(self.config, conversation["business_number"]),
            "owner": views.owner_name(self.config, conversation["owner_id"]),
            "entries": views.timeline(self.config, history, self.msp.names()),
            "outcomes": views.OUTCOMES,
            "max_segments": segment_limit(self.config.reply_mail),
            "version": conversation["version"],
            "snoozed": (conversation["snoozed_until"] or 0) > now,
            "snoozed_until": views.when(conversation["snoozed_until"], self.config.business.timezone),
            "opted_out": await self.store.is_suppressed(conversation["caller"]),
            "max_job_value": MAX_JOB_VALUE, "classes": CONTACT_CLASSES,
            "intake": views.intake_panel(await self.store.intake(conversation["id"])),
            "intake_history": views.intake_history_lines(
                self.config, await self.store.intake_history(conversation["id"]), self.msp.names()),
        }
        state = await self._state(conversation)
        context |= {"contact_class": state["class"], "outcome": state["outcome"],
                    "state_version": conversation["state_version"],
                    "seen": json.dumps(state, separators=(",", ":"))}
        return context

    async def media_file(self, request: web.Request) -> web.StreamResponse:
        """A kept photo, video or file of this conversation, to a signed-in user (whoever may
        open the thread). Shown types go inline, anything else as a download; either way the
        answer is sandboxed and never sniffed, so a file that is really HTML runs nothing."""
        conversation = await self._conversation(request)
        item = await self.store.media_item(int(request.match_info["media"]))
        if item is None or item["conversation_id"] != conversation["id"]:
            raise web.HTTPNotFound(text="No such file.")
        return await self._serve_media(request, item)

    async def linked_media_file(self, request: web.Request) -> web.StreamResponse:
        """A file by a signed link (the API, a webhook, a CRM note): no session, the link's
        signature and expiry instead (textback.web.medialinks)."""
        media_id = int(request.match_info["media"])
        if not medialinks.valid(await self.store.web_key(medialinks.MEDIA_LINK_KEY), media_id,
                                request.query.get("expires", ""), request.query.get("sig", ""),
                                time.time()):
            raise web.HTTPForbidden(text="This link is not valid or has expired.")
        item = await self.store.media_item(media_id)
        if item is None:
            raise web.HTTPNotFound(text="No such file.")
        return await self._serve_media(request, item)

    async def _serve_media(self, request: web.Request, item: dict) -> web.StreamResponse:
        if item["state"] in ("pending", "fetching"):
            raise web.HTTPServiceUnavailable(text="Not fetched yet; try again in a minute.",
                                             headers={"Retry-After": "60"})
        if item["state"] != "kept":
            raise web.HTTPNotFound(text="This file could not be fetched from the provider.")
        digest, content_type = item["sha256"], item["content_type"]
        if not item["shown"]:
            content_type = media.ATTACHMENT_TYPE
        elif request.query.get("v") == "jpeg" and item["rendition_sha256"]:
            digest, content_type = item["rendition_sha256"], "image/jpeg"
        try:
            data = await asyncio.to_thread(self.context.media_files.read, digest)
        except FileNotFoundError:
            raise web.HTTPNotFound(text="The file is no longer kept.") from None
        name = f"{'photo' if item['shown'] else 'attachment'}-{item['id']}.{media.extension(content_type)}"
        return web.Response(body=data, headers={
            "Content-Type": content_type,
            "Content-Disposition": f'{"inline" if item["shown"] else "attachment"}; filename="{name}"',
            "Content-Security-Policy": MEDIA_POLICY, "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=3600"})

    # -- actions -------------------------------------------------------------------------

    async def act(self, request: web.Request) -> web.StreamResponse:
        action = request.match_info["action"]
        handler = getattr(self, f"_do_{action}", None)
        if handler is None:
            raise web.HTTPNotFound(text="No such action.")
        conversation = await self._conversation(request)
        form = request[FORM]
        expected = None
        if action not in ADDITIONS:
            try:
                expected = int(str(form.get("version", "")))
            except ValueError:
                raise bad_request("the form has no version; reload the page") from None
        try:
            if expected is not None and expected != conversation["state_version"]:
                raise StaleState(conversation["id"])
            said = await handler(conversation, form, request[USER], expected)
        except StaleState:
            return await self._stale(request, views.read_seen(str(form.get("seen", ""))))
        raise web.HTTPSeeOther(f"/c/{conversation['id']}?said={said}")

    async def _stale(self, request: web.Request, seen: dict) -> web.StreamResponse:
        """A form from a page older than the conversation's state: nothing applied, and the
        page as it is now, saying what changed (409, so no client takes it for a success)."""
        conversation = await self._conversation(request)
        context = await self._thread_context(conversation)
        context["said"] = views.what_changed(self.config, seen, await self._state(conversation))
        log.info("web: %s's %s on conversation %d refused: the page was stale", request[USER].id,
                 request.match_info["action"], conversation["id"])
        response = self.render("thread.html", request, context)
        response.set_status(409)
        return response

    async def _do_reply(self, conversation: dict, form, user: OwnerConfig,
                        expected: int | None) -> str:
        """The same rules as an email reply: opt-outs (checked again at sending), the length,
        and the photos it carries checked for the gateway's MMS, stored and committed with it;
        a file not texted is named, with why, in a note in the thread."""
        text = str(form.get("body", "")).replace("\r\n", "\n").strip()
        attachments = [f for f in form.getall("photo", []) if isinstance(f, media.Attachment)]
        if not text and not attachments:
            return "empty"
        if text and measure(text, segment_limit(self.config.reply_mail)).too_long:
            return "too_long"
        prepared = await self.context.outbound_media(attachments)
        if not text and not prepared.files:
            await self.store.add_note(conversation["id"], user.id, "Not texted, and nothing else "
                                      "was sent:" + media.not_sent_lines(prepared.refused))
            return "files_not_sent"
        caller = conversation["caller"]
        if await self.store.queue_owner_reply(conversation["id"], conversation["business_number"],
                                              caller, text, f"web:{user.id}", author=user.id,
                                              media=prepared.rows()) is None:
            return "opted_out"
        timeline.info("owner %s replied in the web inbox; texting %s: %s%s", user.id, caller,
                      one_line(text, 200),
                      f" (+{len(prepared.files)} photos)" if prepared.files else "")
        self.context.wake_outbox()
        if prepared.refused:
            await self.store.add_note(conversation["id"], user.id, "Texted without these files:"
                                      + media.not_sent_lines(prepared.refused))
            return "queued_without_files"
        return "queued"

    async def _do_donottext(self, conversation: dict, form, user: OwnerConfig,
                            expected: int | None) -> str:
        """The homeowner asked the owner (by phone, in person) not to be texted: the same
        suppression as STOP, for every kind of text and every business number, at once."""
        caller = conversation["caller"]
        if not await self.store.suppress(caller, f"web:{user.id}", conversation["business_number"]):
            return "optout_already"
        timeline.info("opted out: %s, marked do-not-text by %s in the web inbox", caller, user.id)
        return "optout_added"

    async def _do_claim(self, conversation: dict, form, user: OwnerConfig,
                        expected: int | None) -> str:
        if self.is_msp(user):
            raise bad_request("an MSP admin is not an owner here: give the conversation to "
                              "one of the company's owners")
        await self.store.assign(conversation["id"], user.id, f"claimed by {user.id} (web)", expected)
        return "claimed"

    async def _do_assign(self, conversation: dict, form, user: OwnerConfig,
                         expected: int | None) -> str:
        target = str(form.get("owner", ""))
        if not any(o.id == target for o in self.config.owners):
            raise bad_request("no such owner")
        await self.store.assign(conversation["id"], target, f"assigned by {user.id} (web)", expected)
        timeline.info("conversation with %s assigned to %s by %s (web)", conversation["caller"],
                      target, user.id)
        return "assigned"

    async def _do_snooze(self, conversation: dict, form, user: OwnerConfig,
                         expected: int | None) -> str:
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
        await self.store.snooze(conversation["id"], until, expected)
        return "snoozed"

    async def _do_done(self, conversation: dict, form, user: OwnerConfig,
                       expected: int | None) -> str:
        await self.store.mark_done(conversation["id"], expected)
        return "done"

    async def _do_outcome(self, conversation: dict, form, user: OwnerConfig,
                          expected: int | None) -> str:
        stage = str(form.get("stage", ""))
        if stage not in views.OUTCOMES:
            raise bad_request("no such outcome")
        value = None
        if stage == "won" and str(form.get("amount", "")).strip():
            value = parse_amount(str(form["amount"]))
            if value is None:
                raise bad_request(f"the amount must be a number up to {MAX_JOB_VALUE:,.0f}")
        await self.store.record_outcome(conversation["id"], stage, value, f"web:{user.id}",
                                        expected_state=expected)
        timeline.info("conversation with %s marked %s%s by %s (web)", conversation["caller"],
                      stage, f" ({value:,.0f})" if value else "", user.id)
        return "outcome"

    async def _do_note(self, conversation: dict, form, user: OwnerConfig,
                       expected: int | None) -> str:
        body = str(form.get("body", "")).strip()
        if not body or len(body) > MAX_NOTE_CHARS:
            raise bad_request(f"a note has 1 to {MAX_NOTE_CHARS} characters")
        await self.store.add_note(conversation["id"], user.id, body)
        return "note"

    async def _do_intake(self, conversation: dict, form, user: OwnerConfig,
                         expected: int | None) -> str:
        """A person's value for one intake fact; it wins over whatever is read later."""
        name = str(form.get("field", ""))
        if name not in views.INTAKE_TITLES:
            raise bad_request("no such intake field")
        value = one_line(str(form.get("value", "")), 201)
        if len(value) > 200:
            raise bad_request("a value has at most 200 characters")
        try:
            facts = self.config.intake_corrections(name, value, time.time())
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        await self.store.correct_intake(conversation["id"], facts, f"web:{user.id}", value)
        timeline.info("intake of the conversation with %s: %s set to %s by %s (web)",
                      conversation["caller"], name, facts[0].label, user.id)
        return "intake"

    async def _do_contact(self, conversation: dict, form, user: OwnerConfig,
                          expected: int | None) -> str:
        """The name, and the class the rules apply from the caller's next call on."""
        name = one_line(str(form.get("name", "")), MAX_NAME_CHARS + 1)
        if len(name) > MAX_NAME_CHARS:
            raise bad_request(f"a name has at most {MAX_NAME_CHARS} characters")
        kind = str(form.get("class", ""))
        if kind not in CONTACT_CLASSES:
            raise bad_request("no such class")
        await self.store.set_contact_name(conversation["id"], name, expected)
        caller = conversation["caller"]
        if kind != (await self.store.contact_class(caller) or self.config.contact_class(caller)):
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
