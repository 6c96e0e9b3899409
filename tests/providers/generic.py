"""Loopback providers for the generic `http` gateway: VoIP.ms and Flowroute, as documented.

VoIP.ms REST API: GET /api/v1/rest.php?api_username&api_password&method=sendSMS
&did&dst&message, numbers as 10 national digits; it answers HTTP 200 with
{"status": "success", "sms": <id>} or {"status": "<error word>"}
(invalid_credentials, invalid_dst, ...). Its SMS URL callback is a GET with
the placeholders the user put in the URL, and wants the body "ok".

Flowroute Messaging v2.1: POST /v2.1/messages, Basic auth (access key,
secret key), JSON:API body {"to", "from", "body"} with 11-digit numbers;
202 {"data": {"id": "mdr2-...", "type": "message"}}. Inbound texts and
delivery reports are POSTed as JSON:API {"data": {"id", "attributes": {...}}}.

`Recorder` is any provider: it records each request and answers by script.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class FakeVoipMs:
    username: str
    password: str
    sent: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/rest.php", self._rest)
        return app

    async def _rest(self, request: web.Request) -> web.Response:
        q = request.query
        if (q.get("api_username"), q.get("api_password")) != (self.username, self.password):
            return web.json_response({"status": "invalid_credentials"})
        if q.get("method") != "sendSMS":
            return web.json_response({"status": "invalid_method"})
        if not (q.get("dst", "").isdigit() and len(q["dst"]) == 10):
            return web.json_response({"status": "invalid_dst"})
        sms_id = 23400 + len(self.sent)
        self.sent.append({"did": q["did"], "dst": q["dst"], "message": q["message"], "id": str(sms_id)})
        return web.json_response({"status": "success", "sms": sms_id})


@dataclass
class FakeFlowroute:
    access_key: str
    secret_key: str
    sent: list[dict[str, Any]] = field(default_factory=list)
    fail_with: list[int] = field(default_factory=list)  # statuses to answer first

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2.1/messages", self._messages)
        return app

    async def _messages(self, request: web.Request) -> web.Response:
        pair = f"{self.access_key}:{self.secret_key}".encode()
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(pair).decode():
            return web.json_response({"errors": [{"detail": "Unauthorized", "status": 401}]},
                                     status=401)
        if self.fail_with:
            return web.json_response({"errors": [{"detail": "Internal error"}]},
                                     status=self.fail_with.pop(0))
        if request.content_type != "application/vnd.api+json":
            return web.json_response({"errors": [{"detail": "Unsupported media type"}]}, status=415)
        body = json.loads(await request.read())
        if not (str(body.get("to", "")).isdigit() and len(body["to"]) == 11):
            return web.json_response({"errors": [{"detail": "Invalid to"}]}, status=422)
        mdr = "mdr2-" + uuid.uuid4().hex
        self.sent.append({**body, "id": mdr})
        return web.json_response({"data": {"id": mdr, "type": "message",
                                           "links": {"self": f"/v2.1/messages/{mdr}"}}}, status=202)

    @staticmethod
    def inbound(sender: str, recipient: str, text: str, mdr: str) -> dict[str, Any]:
        return {"data": {"id": mdr, "type": "message", "attributes": {
            "body": text, "from": sender, "to": recipient, "direction": "inbound",
            "is_mms": False, "timestamp": "2026-11-26T18:00:00.00Z"}}}

    @staticmethod
    def report(mdr: str, status: str, code: str) -> dict[str, Any]:
        return {"data": {"id": mdr, "type": "message", "attributes": {
            "status": status, "status_code": code}}}


@dataclass
class Recorder:
    """Records method, headers, query and body of every request; answers from `answers`."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[int, Any]] = field(default_factory=list)  # (status, json body)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        return app

    async def _any(self, request: web.Request) -> web.Response:
        self.requests.append({"method": request.method, "headers": dict(request.headers),
                              "query": dict(request.query), "body": await request.read()})
        status, body = self.answers.pop(0) if self.answers else (200, {"id": str(len(self.requests))})
        return web.json_response(body, status=status)


async def call(url: str, method: str = "GET", **kwargs: Any) -> tuple[int, str]:
    """A provider calling our webhook; returns the status and the body we answered."""
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, **kwargs) as resp:
            return resp.status, await resp.text()
