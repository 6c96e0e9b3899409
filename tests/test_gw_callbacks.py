"""The webhook server: limits, 2xx only after the commit, refusals, and what reaches the log."""

from __future__ import annotations

import asyncio
import logging

from pydantic import SecretStr

from sms_gateway.base import InboundText
from sms_gateway.http import HttpGateway
from sms_gateway.log import LogGateway
from sms_gateway.settings import HttpSettings
from tests.providers.common import Sinks, callback_server
from tests.providers.generic import call

TOKEN = "hook-token-123"


def inbound_gateway() -> HttpGateway:
    settings = HttpSettings.model_validate({
        "url": "https://provider.example/send",
        "inbound": {"token": {"env": "UNUSED"}, "text": "body"}})
    return HttpGateway(settings, {"inbound.token": SecretStr(TOKEN)})


def params(body: str = "Yes please", message_id: str = "m-1") -> dict[str, str]:
    return {"token": TOKEN, "from": "+12125550123", "to": "+12125550100", "body": body,
            "id": message_id}


async def test_healthz_and_only_the_gateways_paths_exist():
    async with callback_server([inbound_gateway(), LogGateway()]) as (local, _):
        assert await call(f"{local}/healthz") == (200, "ok")
        assert (await call(f"{local}/log/inbound"))[0] == 404
        assert (await call(f"{local}/http/inbound", "DELETE"))[0] == 405


async def test_a_body_over_the_limit_is_refused_before_anything_is_read_into_a_text():
    async with callback_server([inbound_gateway()], max_body_bytes=2048) as (local, sinks):
        declared = await call(f"{local}/http/inbound?token={TOKEN}", "POST",
                              data={**params(), "body": "x" * 5000})

        async def chunks():
            for _ in range(10):
                yield b"body=" + b"x" * 1000

        streamed = await call(f"{local}/http/inbound?token={TOKEN}", "POST", data=chunks(),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert declared[0] == 413 and streamed[0] == 413
    assert sinks.texts == []


async def test_the_answer_waits_until_the_text_is_committed():
    committed = asyncio.Event()
    release = asyncio.Event()

    class SlowStore(Sinks):
        async def deliver(self, text: InboundText, gateway: str) -> None:
            await release.wait()
            await super().deliver(text, gateway)
            committed.set()

    async with callback_server([inbound_gateway()], sinks=SlowStore()) as (local, sinks):
        request = asyncio.create_task(call(f"{local}/http/inbound", params=params()))
        await asyncio.sleep(0.3)
        assert not request.done()  # the provider has no 2xx yet
        release.set()
        status, _ = await request
    assert status == 200 and committed.is_set() and len(sinks.texts) == 1


async def test_a_failed_commit_answers_500_so_the_provider_sends_it_again():
    async with callback_server([inbound_gateway()]) as (local, sinks):
        sinks.failures_left = 1
        first = await call(f"{local}/http/inbound", params=params())
        again = await call(f"{local}/http/inbound", params=params())
    assert (first[0], again[0]) == (500, 200)
    assert [text.gateway_id for text, _ in sinks.texts] == ["m-1"]


async def test_refusals_are_logged_rate_limited_and_never_with_the_body(caplog):
    caplog.set_level(logging.DEBUG)
    async with callback_server([inbound_gateway()], refusal_log_interval=0.5) as (local, sinks):
        forged = {**params("secret plans"), "token": "guess"}
        answers = [await call(f"{local}/http/inbound", params=forged) for _ in range(5)]
        await asyncio.sleep(0.6)
        answers.append(await call(f"{local}/http/inbound", params=forged))
    assert answers == [(403, "forbidden")] * 6 and sinks.texts == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith("refused webhook on /http/inbound from 127.0.0.1: wrong token")
    assert warnings[1].endswith("(4 more since the last warning)")
    assert not any("secret plans" in r.getMessage() or "guess" in r.getMessage()
                   for r in caplog.records)


async def test_neither_the_text_nor_the_token_reaches_the_log(caplog):
    caplog.set_level(logging.DEBUG)
    async with callback_server([inbound_gateway()]) as (local, sinks):
        assert (await call(f"{local}/http/inbound", params=params("my address is 1 Elm St")))[0] == 200
    assert len(sinks.texts) == 1
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "GET /http/inbound 200" in logged
    assert "Elm St" not in logged and TOKEN not in logged


async def test_an_unreadable_body_from_an_authentic_sender_is_a_400():
    async with callback_server([inbound_gateway()]) as (local, sinks):
        status, _ = await call(f"{local}/http/inbound?token={TOKEN}", "POST", data=b"[1, 2]",
                               headers={"Content-Type": "application/json"})
    assert status == 400 and sinks.texts == []



async def open_idle(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]


async def test_connections_past_the_cap_get_a_503_and_the_server_keeps_serving(caplog):
    async with callback_server([inbound_gateway()], max_connections=20) as (local, sinks):
        port = int(local.rsplit(":", 1)[1])
        idle = await open_idle(port, 20)
        extra = await open_idle(port, 30)
        answers = [await reader.read() for reader, _ in extra]  # each is answered, then closed
        assert set(answers) == {b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                                b"Content-Length: 0\r\n\r\n"}
        for _, writer in idle:
            writer.close()
        await asyncio.sleep(0.1)
        assert (await call(f"{local}/http/inbound", params=params()))[0] == 200
    warnings = [r.getMessage() for r in caplog.records if r.name == "textback.callbacks"]
    assert warnings == ["refused a connection: 20 already open"]  # once, not 30 times
    assert "Traceback" not in caplog.text and len(sinks.texts) == 1


async def test_a_slow_request_head_or_body_and_an_idle_keepalive_are_closed():
    async with callback_server([inbound_gateway()], header_seconds=0.3, body_seconds=0.3,
                              keepalive_seconds=0.3) as (local, sinks):
        port = int(local.rsplit(":", 1)[1])
        [(reader, writer)] = await open_idle(port, 1)
        writer.write(b"POST /http/inbound HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        assert await asyncio.wait_for(reader.read(), 2) == b""
        [(reader, writer)] = await open_idle(port, 1)
        writer.write(f"POST /http/inbound?token={TOKEN} HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Type: application/x-www-form-urlencoded\r\n"
                     f"Content-Length: 500\r\n\r\nfrom=%2B1212".encode())
        answer = await asyncio.wait_for(reader.read(), 2)
        assert answer.startswith(b"HTTP/1.1 408")
        [(reader, writer)] = await open_idle(port, 1)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"ok"), 2)
        assert first.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.read(), 2) == b""  # idle keep-alive ends
    assert sinks.texts == []


async def test_json_nested_too_deep_is_a_400_not_a_500():
    async with callback_server([inbound_gateway()]) as (local, sinks):
        status, _ = await call(f"{local}/http/inbound?token={TOKEN}", "POST",
                               data=b"[" * 100_000 + b"]" * 100_000,
                               headers={"Content-Type": "application/json"})
    assert status in (400, 413) and sinks.texts == []
    async with callback_server([inbound_gateway()], max_body_bytes=1 << 20) as (local, sinks):
        status, _ = await call(f"{local}/http/inbound?token={TOKEN}", "POST",
                               data=b"[" * 100_000 + b"]" * 100_000,
                               headers={"Content-Type": "application/json"})
    assert status == 400 and sinks.texts == []


class OldNamedPlugin:
    """A plugin written before the method was renamed: it lists `webhook_endpoints()`."""

    def __init__(self):
        self.gateway = inbound_gateway()
        self.name = self.gateway.name

    def webhook_endpoints(self):
        return self.gateway.callback_endpoints()


async def test_a_plugin_with_the_old_method_name_still_receives_texts_and_is_warned(caplog):
    caplog.set_level(logging.WARNING, "textback.callbacks")
    async with callback_server([OldNamedPlugin()]) as (local, sinks):
        status, _ = await call(f"{local}/http/inbound?token={TOKEN}", "POST", data=params())
    assert status == 200 and [text.body for text, _ in sinks.texts] == ["Yes please"]
    assert any("rename the method callback_endpoints()" in r.getMessage() for r in caplog.records)
