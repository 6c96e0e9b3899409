"""The generic http gateway, configured as in docs/gateways.md for VoIP.ms and Flowroute."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass

import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError

from sms_gateway.base import InboundText, OutgoingText
from sms_gateway.http import HttpGateway, retry_after
from sms_gateway.settings import HttpSettings
from sms_gateway.callbacks import DeliveryStatus
from tests.providers.common import serving, callback_server
from tests.providers.generic import FakeFlowroute, FakeVoipMs, Recorder, call

BUSINESS = "+12125550100"
CALLER = "+12125550123"
WEBHOOK_TOKEN = "s3cret-webhook-token"


def voipms(api: str) -> HttpGateway:
    settings = HttpSettings.model_validate({
        "url": f"{api}/api/v1/rest.php", "method": "GET", "body": "query",
        "fields": {"to": "dst", "sender": "did", "text": "message"},
        "constants": {"api_username": "dana@example.com", "method": "sendSMS"},
        "secret_fields": {"api_password": {"env": "VOIPMS_API_PASSWORD"}},
        "number_format": "national",
        "response": {"id_path": "sms", "ok_path": "status", "ok_values": ["success"]},
        "inbound": {"token": {"env": "UNUSED"}, "sender": "from", "recipient": "to",
                    "text": "message", "id": "id", "reply": "ok"},
    })
    return HttpGateway(settings, {"secret_fields.api_password": SecretStr("api-pass"),
                                  "inbound.token": SecretStr(WEBHOOK_TOKEN)})


def flowroute(api: str) -> HttpGateway:
    settings = HttpSettings.model_validate({
        "url": f"{api}/v2.1/messages", "content_type": "application/vnd.api+json",
        "auth": {"type": "basic", "username": "access-key", "password": {"env": "UNUSED"}},
        "fields": {"to": "to", "sender": "from", "text": "body"},
        "number_format": "digits",
        "response": {"id_path": "data.id"},
        "inbound": {"token": {"env": "UNUSED"}, "sender": "data.attributes.from",
                    "recipient": "data.attributes.to", "text": "data.attributes.body",
                    "id": "data.id", "reply": ""},
        "status": {"id": "data.id", "status": "data.attributes.status",
                   "error_code": "data.attributes.status_code",
                   "status_map": {"message buffered": "queued", "smsc submit": "sent",
                                  "delivery success": "delivered",
                                  "delivery failed": "undelivered", "smsc reject": "failed"}},
    })
    return HttpGateway(settings, {"auth.password": SecretStr("secret-key"),
                                  "inbound.token": SecretStr(WEBHOOK_TOKEN)})


async def test_voipms_sends_by_get_with_national_numbers_and_the_api_password():
    provider = FakeVoipMs("dana@example.com", "api-pass")
    async with serving(provider.app()) as api:
        gw = voipms(api)
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "Sorry we missed you & more"))
        await gw.close()
    assert result.status == "accepted" and result.gateway_id == "23400"
    assert provider.sent == [{"did": "2125550100", "dst": "2125550123",
                              "message": "Sorry we missed you & more", "id": "23400"}]


async def test_voipms_failure_words_in_a_200_answer_are_permanent():
    provider = FakeVoipMs("dana@example.com", "another-pass")
    async with serving(provider.app()) as api:
        gw = voipms(api)
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
        await gw.close()
    assert result.status == "permanent" and "invalid_credentials" in result.error
    assert "api-pass" not in result.error


async def test_voipms_callback_with_the_token_is_delivered_and_answered_ok():
    gw = voipms("http://unused.invalid")
    async with callback_server([gw]) as (local, sinks):
        status, body = await call(f"{local}/http/inbound", params={
            "token": WEBHOOK_TOKEN, "from": "2125550123", "to": "2125550100",
            "message": "Yes please", "id": "9911"})
        refused = [await call(f"{local}/http/inbound", params={"from": "2125550123", "to": "1",
                                                                "message": "x"}),
                   await call(f"{local}/http/inbound", params={"token": "guess", "from": "1",
                                                                "to": "2", "message": "x"})]
    assert (status, body) == (200, "ok")
    assert [r[0] for r in refused] == [403, 403]
    assert sinks.texts == [(InboundText("2125550123", "2125550100", "Yes please", "9911"), "http")]


async def test_flowroute_sends_json_api_with_basic_auth():
    provider = FakeFlowroute("access-key", "secret-key")
    async with serving(provider.app()) as api:
        gw = flowroute(api)
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "Hi"))
        await gw.close()
    [message] = provider.sent
    assert result.status == "accepted" and result.gateway_id == message["id"]
    assert (message["to"], message["from"], message["body"]) == ("12125550123", "12125550100", "Hi")


async def test_flowroute_outage_and_auth_errors_are_sorted():
    provider = FakeFlowroute("access-key", "secret-key", fail_with=[500, 503])
    async with serving(provider.app()) as api:
        gw = flowroute(api)
        outage = [await gw.send(OutgoingText(BUSINESS, CALLER, "Hi")) for _ in range(2)]
        recovered = await gw.send(OutgoingText(BUSINESS, CALLER, "Hi"))
        await gw.close()
    assert [r.status for r in outage] == ["retryable", "retryable"]
    assert recovered.status == "accepted" and len(provider.sent) == 1
    wrong = FakeFlowroute("access-key", "rotated-key")
    async with serving(wrong.app()) as api:
        gw = flowroute(api)
        refused = await gw.send(OutgoingText(BUSINESS, CALLER, "Hi"))
        await gw.close()
    assert refused.status == "permanent" and refused.error.startswith("HTTP 401")


async def test_flowroute_inbound_and_delivery_reports_by_json_paths():
    gw = flowroute("http://unused.invalid")
    async with callback_server([gw]) as (local, sinks):
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        inbound = await call(f"{local}/http/inbound", "POST", headers=headers,
                             json=FakeFlowroute.inbound("12125550123", "12125550100", "Yes", "mdr2-a"))
        reports = [await call(f"{local}/http/status?token={WEBHOOK_TOKEN}", "POST",
                              json=FakeFlowroute.report("mdr2-b", status, code))
                   for status, code in (("smsc submit", "0"), ("delivery failed", "4001"),
                                        ("something new", "7"))]
        forged = await call(f"{local}/http/status", "POST",
                            json=FakeFlowroute.report("mdr2-b", "delivery success", "0"))
    assert inbound[0] == 200 and [r[0] for r in reports] == [200, 200, 200] and forged[0] == 403
    assert sinks.texts == [(InboundText("12125550123", "12125550100", "Yes", "mdr2-a"), "http")]
    assert [s for s, _ in sinks.statuses] == [DeliveryStatus("mdr2-b", "sent", "0"),
                                              DeliveryStatus("mdr2-b", "undelivered", "4001")]


@pytest.mark.parametrize("auth, secret, expected", [
    ({"type": "bearer", "token": {"env": "X"}}, "tok-1", ("Authorization", "Bearer tok-1")),
    ({"type": "header", "header": "X-Api-Key", "token": {"env": "X"}}, "tok-2", ("X-Api-Key", "tok-2")),
    ({"type": "basic", "username": "u", "password": {"env": "X"}}, "pw",
     ("Authorization", "Basic " + base64.b64encode(b"u:pw").decode())),
])
async def test_each_auth_type_reaches_the_provider(auth, secret, expected):
    provider = Recorder()
    async with serving(provider.app()) as api:
        settings = HttpSettings.model_validate({"url": f"{api}/send", "body": "form", "auth": auth})
        key = "auth.token" if "token" in auth else "auth.password"
        gw = HttpGateway(settings, {key: SecretStr(secret)})
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "Hi\r\nX-Injected: yes"))
        await gw.close()
    [request] = provider.requests
    name, value = expected
    assert result.status == "accepted" and request["headers"][name] == value
    assert "X-Injected" not in request["headers"]
    assert b"X-Injected" in request["body"]  # the text stays in the body


async def test_a_429_answer_honours_retry_after_in_seconds_or_as_a_date():
    provider = Recorder(answers=[(429, {}), (503, {})])
    async with serving(provider.app()) as api:
        settings = HttpSettings.model_validate({"url": f"{api}/send"})
        gw = HttpGateway(settings, {})
        limited = await gw.send(OutgoingText(BUSINESS, CALLER, "Hi"))
        unavailable = await gw.send(OutgoingText(BUSINESS, CALLER, "Hi"))
        await gw.close()
    assert limited.status == unavailable.status == "retryable"
    assert json.loads(provider.requests[0]["body"]) == {"to": CALLER, "from": BUSINESS, "text": "Hi"}
    assert retry_after("120") == 120.0 and retry_after("999999") == 3600.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_settings_refuse_inconsistent_combinations():
    with pytest.raises(ValidationError, match="set body: query"):
        HttpSettings.model_validate({"url": "https://x.example/send", "method": "GET"})
    with pytest.raises(ValidationError, match="needs token"):
        HttpSettings.model_validate({"url": "https://x.example/send", "auth": {"type": "bearer"}})
    with pytest.raises(ValidationError, match="does not use token"):
        HttpSettings.model_validate({"url": "https://x.example/send",
                                     "auth": {"type": "none", "token": {"env": "X"}}})
    with pytest.raises(ValidationError, match="not an http"):
        HttpSettings.model_validate({"url": "ftp://x.example/send"})
    with pytest.raises(ValidationError, match="Extra inputs|extra"):
        HttpSettings.model_validate({"url": "https://x.example/send", "methd": "GET"})


async def test_no_answer_in_time_is_unknown_because_the_text_may_have_gone_out():
    took: list[bytes] = []

    async def slow(request: web.Request) -> web.Response:
        took.append(await request.read())
        await asyncio.sleep(1.0)
        return web.json_response({"id": "late"})

    app = web.Application()
    app.router.add_post("/send", slow)
    async with serving(app) as api:
        settings = HttpSettings.model_validate({"url": f"{api}/send", "timeout_seconds": 0.2})
        gw = HttpGateway(settings, {})
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "Hi"))
        await gw.close()
    assert result.status == "unknown" and len(took) == 1


async def test_an_idempotency_header_carries_the_texts_key_when_configured():
    @dataclass(frozen=True)
    class KeyedText(OutgoingText):
        idempotency_key: str | None = None

    provider = Recorder()
    async with serving(provider.app()) as api:
        keyed = HttpGateway(HttpSettings.model_validate(
            {"url": f"{api}/send", "idempotency_header": "Idempotency-Key"}), {})
        plain = HttpGateway(HttpSettings.model_validate({"url": f"{api}/send"}), {})
        await keyed.send(KeyedText(BUSINESS, CALLER, "Hi", idempotency_key="textback-42"))
        await plain.send(KeyedText(BUSINESS, CALLER, "Hi", idempotency_key="textback-43"))
        await keyed.close()
        await plain.close()
    first, second = provider.requests
    assert first["headers"]["Idempotency-Key"] == "textback-42"
    assert "Idempotency-Key" not in second["headers"]
