"""The optional intake extractor (`intake.model:`, entry-point group `textback.intake`),
against a loopback stand-in of an OpenAI-compatible Chat Completions endpoint that checks each
request strictly: its values are suggestions until a person confirms them, the rules' facts and
a person's win over them, and a slow, broken or garbled endpoint never delays the owner's
alert and changes nothing."""

from __future__ import annotations

import asyncio
import json
import time

import jsonschema
from aiohttp import web

from lab.harness import eventually
from tests.providers.common import serving
from tests.test_web_inbox import act, signed_in
from tests.web_helpers import (client, homeowner_writes, set_passwords, web_config, web_daemon)
from textback.config import ConfigError, load

KEY = "sk-local-0123456789abcdef"
# The Chat Completions request as OpenAI documents it (the fields textback sends, no others).
REQUEST = {"type": "object", "additionalProperties": False,
           "required": ["model", "messages", "temperature", "response_format"],
           "properties": {
               "model": {"type": "string", "minLength": 1},
               "temperature": {"type": "number", "minimum": 0, "maximum": 2},
               "response_format": {"type": "object", "additionalProperties": False,
                                   "required": ["type"],
                                   "properties": {"type": {"const": "json_object"}}},
               "messages": {"type": "array", "minItems": 2, "items": {
                   "type": "object", "additionalProperties": False,
                   "required": ["role", "content"],
                   "properties": {"role": {"enum": ["system", "user"]},
                                  "content": {"type": "string", "minLength": 1}}}}}}


class StandIn:
    """POST /v1/chat/completions, answered with `content` as the first choice's message."""

    def __init__(self, content: str, delay: float = 0.0, status: int = 200):
        self.content, self.delay, self.status = content, delay, status
        self.requests: list[dict] = []
        self.refused: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.complete)
        return app

    async def complete(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            self.refused.append("Authorization")
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        body = await request.json()
        try:
            jsonschema.Draft202012Validator(REQUEST).validate(body)
        except jsonschema.ValidationError as exc:
            self.refused.append(exc.message)
            return web.json_response({"error": {"message": exc.message}}, status=400)
        self.requests.append(body)
        await asyncio.sleep(self.delay)
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": self.content}}],
            "usage": {"prompt_tokens": 90, "completion_tokens": 20, "total_tokens": 110}},
            status=self.status)


def model_config(tmp_path, url: str, timeout: float = 5.0):
    (tmp_path / "model.key").write_text(KEY)
    return web_config(tmp_path, intake={"model": {
        "type": "openai", "options": {"base_url": f"{url}/v1", "model": "qwen2.5-7b-instruct"},
        "token": {"file": "model.key"}, "timeout_seconds": timeout}})


async def _history(daemon, caller: str = "+12125550123") -> list[dict]:
    conversation = (await daemon.store.conversation_for(caller))["id"]
    return await daemon.store.intake_history(conversation)


async def test_suggestions_are_shown_as_such_until_a_person_confirms_them(tmp_path):
    model = StandIn(json.dumps({"project": "kitchen", "budget": "60k", "timing": "2027-02-01",
                                "colour": "blue"}))
    async with serving(model.app()) as url:
        path = model_config(tmp_path, url)
        await set_passwords(path)
        async with web_daemon(path) as daemon, client() as browser:
            await homeowner_writes(daemon, "Hi, it's about the work we talked about")
            await eventually(lambda: _suggested(daemon), 10, "the suggestions stored")
            rows = await _history(daemon)
            assert {(r["field"], r["value"], r["source"], r["author"]) for r in rows} >= {
                ("project", "kitchen", "suggested", "model:openai"),
                ("budget", "60000", "suggested", "model:openai"),
                ("timing", "2027-02-01", "suggested", "model:openai")}
            assert {r["field"] for r in rows} <= {"project", "budget", "timing", "location"}
            # The homeowner's words went to the endpoint: what the docs say plainly.
            [request] = model.requests
            assert request["messages"][1] == {"role": "user",
                                              "content": "Hi, it's about the work we talked about"}
            await signed_in(browser, "dana")
            conversation = (await daemon.store.conversation_for("+12125550123"))["id"]
            _, page, _ = await browser.get(f"/c/{conversation}")
            assert "suggested, not confirmed (suggested by the openai extractor)" in page
            assert page.count(">Confirm</button>") == 3
            status, _ = await act(browser, conversation, "intake", field="budget", value="60000")
            assert status == 303
            merged = await daemon.store.intake(conversation)
            assert (merged.get("budget").source, merged.get("project").source) == (
                "person", "suggested")
            _, page, _ = await browser.get(f"/c/{conversation}")
            assert page.count(">Confirm</button>") == 2
    assert model.refused == []


async def test_the_rules_and_a_person_outrank_a_suggestion(tmp_path):
    model = StandIn(json.dumps({"project": "kitchen", "budget": "under 10k"}))
    async with serving(model.app()) as url:
        async with web_daemon(model_config(tmp_path, url)) as daemon:
            await homeowner_writes(daemon, "bathroom remodel, around 30k")
            await eventually(lambda: _suggested(daemon), 10, "the suggestions stored")
            conversation = (await daemon.store.conversation_for("+12125550123"))["id"]
            merged = await daemon.store.intake(conversation)
            assert (merged.value("project"), merged.get("project").source) == ("bath", "extracted")
            assert merged.value("budget") == "~30000"


async def _suggested(daemon) -> bool:
    return any(r["source"] == "suggested" for r in await _history(daemon))


async def test_a_slow_broken_or_garbled_endpoint_never_delays_the_alert(tmp_path, smtp_sink,
                                                                       caplog):
    for case, (model, why) in enumerate((
            (StandIn("{}", delay=3.0), "no answer within 0.5 s"),
            (StandIn("{}", status=500), "HTTP 500"),
            (StandIn("Sure! The project is a kitchen."), "not the JSON asked for"))):
        caplog.clear()
        smtp_sink.received.clear()
        here = tmp_path / f"case{case}"
        here.mkdir()
        async with serving(model.app()) as url:
            async with web_daemon(model_config(here, url, timeout=0.5)) as daemon:
                started = time.monotonic()
                await homeowner_writes(daemon, "kitchen please, 40k")
                await eventually(lambda: _mailed(smtp_sink), 10, "the owner's alert")
                assert time.monotonic() - started < 2.5  # before the slow endpoint answers
                await eventually(lambda: _logged(caplog, why), 5, f"the warning: {why}")
                rows = await _history(daemon)
                assert {r["source"] for r in rows} == {"extracted"}


async def _mailed(sink) -> bool:
    return len(sink.received) >= 1


async def _logged(caplog, why: str) -> bool:
    return any("intake extractor openai gave nothing" in r.getMessage() and why in r.getMessage()
               for r in caplog.records)


async def test_the_extractor_is_off_unless_configured_and_its_type_must_exist(tmp_path):
    """(A daemon is built inside the event loop, as `textback run` builds it: its PBXs'
    connections belong to that loop.)"""
    from textback.daemon import Daemon

    daemon = Daemon(load(web_config(tmp_path)))
    assert daemon.config.intake.model is None
    path = web_config(tmp_path, intake={"model": {"type": "nonesuch"}})
    try:
        load(path)
    except ConfigError as exc:
        assert any("no intake extractor 'nonesuch'" in message for _, message in exc.problems)
    else:
        raise AssertionError("an unknown extractor was accepted")
