"""The JSON API's HTTP edge: /api/v1 on the daemon's `web:` listener.

Every request needs `Authorization: Bearer <token>` (`textback token create`);
only the token's SHA-256 is stored, and a revoked one is refused like an
unknown one (401). A read token may not write (403). Writes go through the
same store methods (and so the same outbox, opt-out and webhook events) as
the CLI and email commands; with an `Idempotency-Key` header a repeated write
gets the first answer again instead of acting twice.

A conversation's answers carry an ETag, the version of its state (owner, status, snooze,
outcome, contact); a write with `If-Match` is applied only if that is still the version,
else answered 412 and not applied, so a client acting on what it read cannot undo a change
made since (the store checks and writes in one transaction).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from aiohttp import web

from textback.api import openapi
from textback.api.ratelimit import RateLimiter
from textback.api.shapes import (BadRequest, Unprocessable, call_view, calls_query,
                                 checked_header, conversation_filter, conversation_view,
                                 error_view, intake_entry_view, known_owner, message_view,
                                 parse_body, scorecard_period)
from textback.core.numbers import parse_address
from textback.core.replies import measure, segment_limit
from textback.store.web import StaleState
from textback.web.server import RouteProvider

if TYPE_CHECKING:
    from textback.web.context import HttpContext

log = logging.getLogger("textback.api")

PREFIX = "/api/v1"
TOKEN_PREFIX = "tbk_"


def token_hash(token: str) -> str:
    """What is stored of a token: tokens are 256 random bits, so a plain SHA-256 suffices."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _json(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers or None,
                             dumps=lambda v: json.dumps(v, ensure_ascii=False))


def _error(status: int, code: str, message: str, field: str | None = None,
           **headers: str) -> web.Response:
    return _json(status, error_view(code, message, field), **headers)


class NoSuchConversation(LookupError):
    pass


class ChangedSinceRead(Exception):
    """A write's If-Match names a state of the conversation that is no longer its state."""

    def __init__(self, conversation: dict[str, Any]):
        super().__init__(conversation["id"])
        self.conversation = conversation


def entity_tag(conversation: Mapping[str, Any]) -> str:
    """The ETag of a conversation: its state_version, a strong tag."""
    return f'"{conversation["state_version"]}"'


def if_match_holds(header: str | None, tag: str) -> bool:
    """RFC 9110 If-Match: absent, "*", or a list naming `tag` (strong comparison, so a weak
    W/ tag never matches)."""
    if header is None:
        return True
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or tag in tags


class Api:
    """The handlers; `context` gives the store, the config and the outbox's wake-up."""

    def __init__(self, context: HttpContext):
        self.context = context
        settings = context.config.api
        self._limits = RateLimiter(settings.requests_per_minute, settings.burst)
        self._max_body = settings.max_body_bytes
        self._keys: dict[tuple[int, str], asyncio.Lock] = {}

    @property
    def store(self):
        return self.context.store

    @property
    def config(self):
        return self.context.config

    def add_routes(self, app: web.Application) -> None:
        read, write = self._guard("read"), self._guard("write")
        app.router.add_get(f"{PREFIX}/openapi.json", self.openapi_document)
        app.router.add_get(f"{PREFIX}/conversations", read(self.conversations))
        app.router.add_get(f"{PREFIX}/conversations/{{id}}", read(self.thread))
        app.router.add_get(f"{PREFIX}/calls", read(self.calls))
        app.router.add_get(f"{PREFIX}/scorecard", read(self.scorecard))
        app.router.add_post(f"{PREFIX}/conversations/{{id}}/reply", write(self.reply))
        app.router.add_post(f"{PREFIX}/conversations/{{id}}/assignment", write(self.assignment))
        app.router.add_post(f"{PREFIX}/conversations/{{id}}/outcome", write(self.outcome))
        app.router.add_post(f"{PREFIX}/conversations/{{id}}/contact", write(self.contact))
        app.router.add_post(f"{PREFIX}/conversations/{{id}}/intake", write(self.intake))
        app.router.add_post(f"{PREFIX}/optouts", write(self.optout))

    # -- the guard every route but the OpenAPI document passes ---------------------------

    def _guard(self, scope: str) -> Callable:
        def wrap(handler: Callable[..., Awaitable[web.Response]]):
            async def guarded(request: web.Request) -> web.Response:
                token = await self._token(request)
                if token is None:
                    return _error(401, "unauthorized", "a valid bearer token is needed",
                                  **{"WWW-Authenticate": 'Bearer realm="textback"'})
                if scope == "write" and token["scope"] != "write":
                    return _error(403, "forbidden", "this token may only read")
                wait = self._limits.wait(token["id"], time.monotonic())
                if wait:
                    return _error(429, "rate_limited", "too many requests for this token",
                                  **{"Retry-After": str(max(1, round(wait + 0.5)))})
                try:
                    if scope == "write":
                        return await self._write(request, token, handler)
                    return await handler(request, token)
                except BadRequest as exc:  # Unprocessable (422) too
                    return _error(exc.status, exc.code, exc.message, exc.field)
                except NoSuchConversation:
                    return _error(404, "not_found", "no such conversation")
                except ChangedSinceRead as exc:
                    return await self._changed_since_read(exc.conversation["id"])
            return guarded
        return wrap

    async def _token(self, request: web.Request) -> dict[str, Any] | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip().startswith(TOKEN_PREFIX):
            return None
        return await self.store.live_token(token_hash(value.strip()))

    async def _write(self, request: web.Request, token: dict[str, Any], handler) -> web.Response:
        if (request.content_length or 0) > self._max_body:
            return self._too_large()
        body = await request.content.read(self._max_body + 1)
        if len(body) > self._max_body:
            return self._too_large()
        if_match = request.headers.get("If-Match")
        if if_match is not None:  # before a kept answer is replayed: a bad header is never taken
            checked_header(openapi.IF_MATCH, if_match)
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return await handler(request, token, body)
        checked_header(openapi.IDEMPOTENCY, key)
        # The precondition is part of the request: the same key with another If-Match is reused.
        precondition = "" if if_match is None else f"If-Match: {if_match}\n"
        fingerprint = hashlib.sha256(f"{request.method} {request.path}\n{precondition}".encode()
                                     + body).hexdigest()
        async with self._keys.setdefault((token["id"], key), asyncio.Lock()):
            kept = await self.store.idempotent_answer(token["id"], key)
            if kept is not None:
                if kept["fingerprint"] != fingerprint:
                    return _error(422, "idempotency_key_reused",
                                  "this Idempotency-Key was used for a different request")
                return web.Response(status=kept["status"], text=kept["response"],
                                    content_type="application/json",
                                    headers={"Idempotent-Replayed": "true"})
            response = await handler(request, token, body)
            if response.status < 500:
                await self.store.keep_idempotent_answer(token["id"], key, fingerprint,
                                                        response.status, response.text)
            return response

    def _too_large(self) -> web.Response:
        return _error(413, "too_large", f"the body may be at most {self._max_body} bytes")

    async def _conversation(self, request: web.Request) -> dict[str, Any]:
        """The conversation the path names, or NoSuchConversation (answered 404)."""
        raw = request.match_info["id"]
        conversation = None
        if raw.isascii() and raw.isdigit() and len(raw) < 16:
            conversation = await self.store.conversation(int(raw))
        if conversation is None:
            raise NoSuchConversation()
        return conversation

    def _expected_state(self, request: web.Request, conversation: dict[str, Any]) -> int | None:
        """The state_version a write must find (from If-Match), or None when it names none;
        raises ChangedSinceRead when it already differs."""
        header = request.headers.get("If-Match")  # checked against its schema in _write
        if not if_match_holds(header, entity_tag(conversation)):
            raise ChangedSinceRead(conversation)
        if header is None or header.strip() == "*":
            return None
        return conversation["state_version"]

    async def _changed_since_read(self, conversation_id: int) -> web.Response:
        now = await self.store.conversation(conversation_id)
        snoozed = (now["snoozed_until"] or 0) > time.time()
        state = (f"owner {now['owner_id']}, {now['status']}" + (", snoozed" if snoozed else "")
                 + (f", {outcome}" if (outcome := await self.store.latest_outcome(now["id"])) else ""))
        return _error(412, "precondition_failed",
                      f"this changed while you were looking: it is now {state} (ETag "
                      f"{entity_tag(now)}); nothing was applied. Read it again and retry with "
                      "the new ETag.", "If-Match", ETag=entity_tag(now))

    # -- reads -------------------------------------------------------------------------

    async def openapi_document(self, request: web.Request) -> web.Response:
        return _json(200, openapi.document())

    async def conversations(self, request: web.Request, token) -> web.Response:
        chosen = conversation_filter(request.query, {o.id for o in self.config.owners})
        # Unanswered ones come first in a view, so only "answered ones only" reads past the page.
        page = chosen.limit if chosen.unanswered is not False else 10_000
        rows = await self.store.inbox_page(chosen.view(), now=time.time(), owner_id=chosen.owner or "",
                                           limit=page, project=chosen.project, area=chosen.area)
        rows = [r for r in rows if chosen.keep(r)][:chosen.limit]
        return _json(200, {"conversations": [conversation_view(r) for r in rows]})

    async def thread(self, request: web.Request, token) -> web.Response:
        conversation = await self._conversation(request)
        history = await self.store.conversation_history(conversation["id"])
        media = await self.store.media_of(m["id"] for m in history["messages"])
        linker, now = await self.context.media_linker(), time.time()
        link = ((lambda media_id: (linker(media_id, now),
                                   int(now + self.config.media.link_hours * 3600)))
                if linker else None)
        return _json(200, {"conversation": conversation_view(conversation),
                           "calls": [call_view(c) for c in history["calls"]],
                           "messages": [message_view(m, media.get(m["id"], []), link)
                                        for m in history["messages"]],
                           "intake": (await self.store.intake(conversation["id"])).as_dict(),
                           "intake_history": [intake_entry_view(r) for r in
                                              await self.store.intake_history(conversation["id"])]},
                     ETag=entity_tag(conversation))

    async def calls(self, request: web.Request, token) -> web.Response:
        since, limit = calls_query(request.query, time.time())
        return _json(200, {"calls": [call_view(c) for c in await self.store.calls(since, limit)]})

    async def scorecard(self, request: web.Request, token) -> web.Response:
        start, end, label = scorecard_period(request.query, self.config.business.timezone,
                                             time.time())
        month = None if "from" in request.query or "to" in request.query else label
        return _json(200, {"period": label, "numbers": await self.store.scorecard(start, end, month),
                           "intake": await self.store.scorecard_by_intake(start, end)})

    # -- writes ------------------------------------------------------------------------

    async def reply(self, request: web.Request, token, body: bytes) -> web.Response:
        text = parse_body("ReplyRequest", body)["text"]
        length = measure(text, segment_limit(self.config.reply_mail))
        if length.too_long:
            raise Unprocessable("text", f"{length.segments} segments ({length.encoding}); the "
                                        f"limit is {length.limit}. Nothing was sent.", "too_long")
        conversation = await self._conversation(request)
        self._expected_state(request, conversation)  # a reply sets no state: checked, not held
        outbox_id = await self.store.queue_owner_reply(
            conversation["id"], conversation["business_number"], conversation["caller"], text,
            f"api:{token['name']}")
        if outbox_id is None:
            return _error(409, "opted_out", f"{conversation['caller']} opted out; nothing was sent")
        self.context.wake_outbox()
        log.info("API token %s queued a reply to conversation %d", token["name"], conversation["id"])
        return _json(202, {"status": "queued", "outbox_id": outbox_id,
                           "conversation_id": conversation["id"]})

    async def assignment(self, request: web.Request, token, body: bytes) -> web.Response:
        owner = known_owner(parse_body("AssignmentRequest", body)["owner"],
                            {o.id for o in self.config.owners})
        conversation = await self._conversation(request)
        await self._stale_refused(self.store.assign(
            conversation["id"], owner, f"api:{token['name']}",
            expected_state=self._expected_state(request, conversation)), conversation)
        return await self._updated(conversation["id"])

    async def outcome(self, request: web.Request, token, body: bytes) -> web.Response:
        outcome = parse_body("OutcomeRequest", body)
        conversation = await self._conversation(request)
        value = float(outcome["value"]) if outcome.get("value") is not None else None
        await self._stale_refused(self.store.record_outcome(
            conversation["id"], outcome["stage"], value, f"api:{token['name']}",
            outcome.get("external_ref"),
            expected_state=self._expected_state(request, conversation)), conversation)
        return await self._updated(conversation["id"])

    async def contact(self, request: web.Request, token, body: bytes) -> web.Response:
        contact = parse_body("ContactRequest", body)
        conversation = await self._conversation(request)
        await self._stale_refused(self.store.set_contact(
            conversation["id"], contact.get("name"), contact.get("class"), f"api:{token['name']}",
            expected_state=self._expected_state(request, conversation)), conversation)
        return await self._updated(conversation["id"])

    async def intake(self, request: web.Request, token, body: bytes) -> web.Response:
        """A person's value for one intake fact, with the words they wrote as its cause."""
        wanted = parse_body("IntakeRequest", body)
        try:
            facts = self.config.intake_corrections(wanted["field"], wanted["value"], time.time())
        except ValueError as exc:
            raise Unprocessable("value", str(exc), "not_understood") from None
        conversation = await self._conversation(request)
        self._expected_state(request, conversation)  # a fact is not state: checked, not held
        merged = await self.store.correct_intake(conversation["id"], facts,
                                                 f"api:{token['name']}", wanted["value"])
        log.info("API token %s set %s of conversation %d", token["name"], wanted["field"],
                 conversation["id"])
        return _json(200, {"conversation_id": conversation["id"], "intake": merged.as_dict()})

    @staticmethod
    async def _stale_refused(write: Awaitable[None], conversation: dict[str, Any]) -> None:
        """Run a store write; its StaleState (a change between our read and its transaction)
        is a ChangedSinceRead, answered 412 like any If-Match that no longer holds."""
        try:
            await write
        except StaleState:
            raise ChangedSinceRead(conversation) from None

    async def optout(self, request: web.Request, token, body: bytes) -> web.Response:
        """A CRM heard "do not text me": the same suppression as STOP, at once, for every kind
        of text and every business number."""
        number = parse_address(parse_body("OptOutRequest", body)["number"],
                               self.config.numbers[0].region).number
        if number is None:
            raise Unprocessable("number", "holds no valid phone number", "not_a_number")
        added = await self.store.suppress(number, f"api:{token['name']}")
        log.info("API token %s: %s %s", token["name"], number,
                 "suppressed" if added else "was already suppressed")
        return _json(200, {"number": number, "opted_out": True, "already": not added})

    async def _updated(self, conversation_id: int) -> web.Response:
        conversation = await self.store.conversation(conversation_id)
        return _json(200, {"conversation": conversation_view(conversation)},
                     ETag=entity_tag(conversation))


def api_routes(context: HttpContext) -> RouteProvider:
    """The RouteProvider of the JSON API, bound to the running daemon's HTTP context."""
    return Api(context).add_routes
