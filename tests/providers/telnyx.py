"""A loopback Telnyx that follows the documented Messaging API v2 and webhook contract.

- POST /v2/messages, Bearer auth, JSON {from | messaging_profile_id, to, text,
  webhook_url?}; 200 {"data": {"id", "to": [{"phone_number", "status"}], ...}}
  or {"errors": [{"code", "title", "detail"}]}: 10009 (401), 40310 invalid to
  (400), 40300 blocked by STOP (400). 429 with Retry-After, 5xx by script.
- MMS: `media_urls`, a list of at most 10 absolute http(s) URLs Telnyx fetches at send time
  (developers.telnyx.com: Send & Receive MMS); `text` may then be left out. The fetch is a
  real GET before answering, kept in `fetched`; the answer's type is "MMS".
- Idempotency-Key: a key already used for a successful request replays that
  response for the same body and answers 422 for a different one; failures
  are not remembered (developers.telnyx.com, API fundamentals: Idempotency).
- GET /v2/balance.
- Webhooks it sends: JSON events signed with Ed25519 over
  "{telnyx-timestamp}|{raw body}", headers telnyx-signature-ed25519 (base64)
  and telnyx-timestamp (Unix seconds).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.providers.twilio import fetch_media


def telnyx_error(status: int, code: str, title: str, headers: dict[str, str] | None = None
                 ) -> web.Response:
    return web.json_response({"errors": [{"code": code, "title": title, "detail": title}]},
                             status=status, headers=headers)


@dataclass
class FakeTelnyx:
    api_key: str
    accepted: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    opted_out: set[str] = field(default_factory=set)
    script: list[tuple[str, object]] = field(default_factory=list)  # ("429", secs) | ("5xx", status)
    # The script answer comes after processing, as a gateway timing out behind a proxy would.
    fail_after_processing: bool = False
    fetched: list[tuple[str, int, str, bytes]] = field(default_factory=list)  # see FakeTwilio
    _key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    _idempotent: dict[str, tuple[bytes, dict[str, Any]]] = field(default_factory=dict)

    @property
    def public_key(self) -> str:
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/messages", self._create_message)
        app.router.add_get("/v2/balance", self._balance)
        return app

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _balance(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return telnyx_error(401, "10009", "Authentication failed")
        return web.json_response({"data": {"balance": "10.00", "currency": "USD"}})

    async def _create_message(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if not self._authorised(request):
            return telnyx_error(401, "10009", "Authentication failed")
        raw = await request.read()
        key = request.headers.get("Idempotency-Key")
        if key in self._idempotent:
            first_body, first_answer = self._idempotent[key]
            if first_body != raw:
                return telnyx_error(422, "10015", "Idempotency key reused with a different request")
            return web.json_response(first_answer)
        if self.script and not self.fail_after_processing:
            return self._scripted()
        body = json.loads(raw)
        media = body.get("media_urls", [])
        if not isinstance(media, list) or len(media) > 10 or not all(
                isinstance(url, str) and urlsplit(url).scheme in ("http", "https")
                and urlsplit(url).hostname for url in media):
            return telnyx_error(400, "40305", "Invalid 'media_urls'")
        if not body.get("text") and not media:
            return telnyx_error(400, "40305", "Invalid 'text'")
        if "text" in body and not isinstance(body["text"], str):
            return telnyx_error(400, "40305", "Invalid 'text'")
        if not body.get("from") and not body.get("messaging_profile_id"):
            return telnyx_error(400, "40305", "Invalid 'from' address")
        if not str(body.get("to", "")).startswith("+"):
            return telnyx_error(400, "40310", "Invalid 'to' address")
        if body["to"] in self.opted_out:
            return telnyx_error(400, "40300", "Blocked due to STOP message")
        message_id = str(uuid.uuid4())
        self.accepted.append({**body, "id": message_id})
        for url in media:
            self.fetched.append(await fetch_media(url))
        answer = {"data": {"record_type": "message", "id": message_id, "direction": "outbound",
                           "type": "MMS" if media else "SMS", "from": {"phone_number": body.get("from")},
                           "to": [{"phone_number": body["to"], "status": "queued"}],
                           "text": body.get("text", ""), "media": [{"url": url} for url in media],
                           "webhook_url": body.get("webhook_url")}}
        if key:
            self._idempotent[key] = (raw, answer)
        if self.script:
            return self._scripted()
        return web.json_response(answer)

    def _scripted(self) -> web.Response:
        kind, value = self.script.pop(0)
        if kind == "429":
            return telnyx_error(429, "10011", "Too many requests", headers={"Retry-After": str(value)})
        return web.Response(status=int(value), text="bad gateway")

    def event(self, event_type: str, payload: dict[str, Any]) -> bytes:
        return json.dumps({"data": {"event_type": event_type, "id": str(uuid.uuid4()),
                                    "occurred_at": "2026-11-26T18:00:00.000+00:00",
                                    "payload": payload, "record_type": "event"},
                           "meta": {"attempt": 1, "delivered_to": "https://example.com"}}).encode()

    def received(self, sender: str, recipient: str, text: str, message_id: str) -> bytes:
        return self.event("message.received", {
            "id": message_id, "record_type": "message", "direction": "inbound", "type": "SMS",
            "from": {"phone_number": sender, "carrier": "T-Mobile USA", "line_type": "Wireless"},
            "to": [{"phone_number": recipient, "status": "webhook_delivered"}],
            "text": text, "media": [], "encoding": "GSM-7", "parts": 1, "errors": []})

    def finalized(self, message_id: str, status: str, error_code: str | None = None) -> bytes:
        errors = [{"code": error_code, "title": "Delivery failed"}] if error_code else []
        return self.event("message.finalized", {
            "id": message_id, "record_type": "message", "direction": "outbound",
            "to": [{"phone_number": "+12125550123", "status": status}], "errors": errors})

    def sign(self, timestamp: str, body: bytes) -> str:
        return base64.b64encode(self._key.sign(timestamp.encode() + b"|" + body)).decode()

    async def call(self, url: str, body: bytes, timestamp: int | None = None,
                   signature: str | None = "valid") -> int:
        """POST a webhook as Telnyx does (now, unless `timestamp` says otherwise)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {"Content-Type": "application/json", "telnyx-timestamp": stamp}
        if signature == "valid":
            headers["telnyx-signature-ed25519"] = self.sign(stamp, body)
        elif signature is not None:
            headers["telnyx-signature-ed25519"] = signature
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=body, headers=headers) as resp:
                return resp.status
