"""The JSON API's HTTP edge: /api/v1 on the daemon's `web:` listener.

Every request needs `Authorization: Bearer <token>` (`textback token create`);
only the token's SHA-256 is stored, and a revoked one is refused like an
unknown one (401). A read token may not write (403). Writes go through the
same store methods (and so the same outbox, opt-out and webhook events) as
the CLI and email commands; with an `Idempotency-Key` header a repeated write
gets the first answer again instead of acting twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from sms_gateway.segments import count_segments
from textback.api import openapi
from textback.api.ratelimit import RateLimiter
from textback.api.shapes import (AssignmentBody, BadRequest, ContactBody, OptOutBody, OutcomeBody,
                                 ReplyBody, call_view, calls_query, conversation_filter,
                                 conversation_view, error_view, message_view, parse_body,
                                 scorecard_period)
from textback.numbers import parse_address
from textback.scorecard import build
from textback.web.server import RouteProvider

log = logging.getLogger("textback.api")

PREFIX = "/api/v1"
TOKEN_PREFIX = "tbk_"
MAX_IDEMPOTENCY_KEY = 200


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


class Api:
    """The handlers; `daemon` gives the store, the config and the outbox's wake-up."""

    def __init__(self, daemon: Any):
        self.daemon = daemon
        settings = daemon.config.api
        self._limits = RateLimiter(settings.requests_per_minute, settings.burst)
        self._max_body = settings.max_body_bytes
        self._keys: dict[tuple[int, str], asyncio.Lock] = {}

    @property
    def store(self):
        return self.daemon.store

    @property
    def config(self):
        return self.daemon.config

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
                except BadRequest as exc:
                    return _error(400, "bad_request", exc.message, exc.field)
                except NoSuchConversation:
                    return _error(404, "not_found", "no such conversation")
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
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return await handler(request, token, body)
        if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isascii() or not key.isprintable():
            raise BadRequest("Idempotency-Key", f"1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters")
        fingerprint = hashlib.sha256(f"{request.method} {request.path}\n".encode() + body).hexdigest()
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

    # -- reads -------------------------------------------------------------------------

    async def openapi_document(self, request: web.Request) -> web.Response:
        return _json(200, openapi.document())

    async def conversations(self, request: web.Request, token) -> web.Response:
        chosen = conversation_filter(request.query, {o.id for o in self.config.owners})
        # Unanswered ones come first in a view, so only "answered ones only" reads past the page.
        page = chosen.limit if chosen.unanswered is not False else 10_000
        rows = await self.store.inbox_page(chosen.view(), now=time.time(), owner_id=chosen.owner or "",
                                           limit=page)
        rows = [r for r in rows if chosen.keep(r)][:chosen.limit]
        return _json(200, {"conversations": [conversation_view(r) for r in rows]})

    async def thread(self, request: web.Request, token) -> web.Response:
        conversation = await self._conversation(request)
        history = await self.store.conversation_history(conversation["id"])
        return _json(200, {"conversation": conversation_view(conversation),
                           "calls": [call_view(c) for c in history["calls"]],
                           "messages": [message_view(m) for m in history["messages"]]})

    async def calls(self, request: web.Request, token) -> web.Response:
        since, limit = calls_query(request.query, time.time())
        return _json(200, {"calls": [call_view(c) for c in await self.store.calls(since, limit)]})

    async def scorecard(self, request: web.Request, token) -> web.Response:
        start, end, label = scorecard_period(request.query, self.config.business.timezone,
                                             time.time())
        cards = build(**await self.store.report_rows(start, end))
        return _json(200, {"period": label, "numbers": [c.as_dict() for c in cards]})

    # -- writes ------------------------------------------------------------------------

    async def reply(self, request: web.Request, token, body: bytes) -> web.Response:
        text = parse_body(ReplyBody, body).text
        if not text.strip():
            raise BadRequest("text", "is empty; nothing was sent")
        limit = self.config.reply_mail.max_segments if self.config.reply_mail else 3
        count = count_segments(text)
        if count.segments > limit:
            raise BadRequest("text", f"{count.segments} segments ({count.encoding}); the limit is "
                                     f"{limit}. Nothing was sent.")
        conversation = await self._conversation(request)
        if await self.store.is_suppressed(conversation["caller"]):
            await self.store.refuse_text(conversation["caller"], conversation["business_number"],
                                         "owner", text, f"api:{token['name']}")
            return _error(409, "opted_out", f"{conversation['caller']} opted out; nothing was sent")
        outbox_id = await self.store.queue_reply(conversation["id"], conversation["business_number"],
                                                 conversation["caller"], text, "owner",
                                                 channel=f"api:{token['name']}")
        self.daemon._outbox_wake.set()
        log.info("API token %s queued a reply to conversation %d", token["name"], conversation["id"])
        return _json(202, {"status": "queued", "outbox_id": outbox_id,
                           "conversation_id": conversation["id"]})

    async def assignment(self, request: web.Request, token, body: bytes) -> web.Response:
        owner = parse_body(AssignmentBody, body).owner
        if owner not in {o.id for o in self.config.owners}:
            raise BadRequest("owner", f"no owner {owner!r}")
        conversation = await self._conversation(request)
        await self.store.assign(conversation["id"], owner, f"api:{token['name']}")
        return await self._updated(conversation["id"])

    async def outcome(self, request: web.Request, token, body: bytes) -> web.Response:
        outcome = parse_body(OutcomeBody, body)
        conversation = await self._conversation(request)
        value = float(outcome.value) if outcome.value is not None else None
        await self.store.record_outcome(conversation["id"], outcome.stage, value,
                                        f"api:{token['name']}", outcome.external_ref)
        return await self._updated(conversation["id"])

    async def contact(self, request: web.Request, token, body: bytes) -> web.Response:
        contact = parse_body(ContactBody, body)
        conversation = await self._conversation(request)
        await self.store.set_contact(conversation["id"], contact.name, contact.kind,
                                     f"api:{token['name']}")
        return await self._updated(conversation["id"])

    async def optout(self, request: web.Request, token, body: bytes) -> web.Response:
        """A CRM heard "do not text me": the same suppression as STOP, at once, for every kind
        of text and every business number."""
        number = parse_address(parse_body(OptOutBody, body).number,
                               self.config.numbers[0].region).number
        if number is None:
            raise BadRequest("number", "is not a valid phone number")
        added = await self.store.suppress(number, f"api:{token['name']}")
        log.info("API token %s: %s %s", token["name"], number,
                 "suppressed" if added else "was already suppressed")
        return _json(200, {"number": number, "opted_out": True, "already": not added})

    async def _updated(self, conversation_id: int) -> web.Response:
        conversation = await self.store.conversation(conversation_id)
        return _json(200, {"conversation": conversation_view(conversation)})


def api_routes(daemon: Any) -> RouteProvider:
    """The RouteProvider of the JSON API, bound to a daemon (its store is opened by then)."""
    return Api(daemon).add_routes
