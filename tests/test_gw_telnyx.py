"""The telnyx gateway against a loopback Telnyx, and its signed webhooks through the real server."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from sms_gateway.base import InboundText, OutgoingText
from sms_gateway.settings import TelnyxSettings
from sms_gateway.telnyx import TelnyxGateway
from sms_gateway.callbacks import DeliveryStatus
from tests.providers.common import serving, callback_server
from tests.providers.telnyx import FakeTelnyx

KEY = "KEY0123456789ABCDEF_test"
BUSINESS = "+12125550100"
CALLER = "+12125550123"
PUBLIC = "https://textback.example.com"


@dataclass(frozen=True)
class KeyedText(OutgoingText):
    """An OutgoingText carrying the outbox row's idempotency key."""

    idempotency_key: str | None = None


def gateway(telnyx: FakeTelnyx, api: str = "http://unused.invalid", **settings) -> TelnyxGateway:
    config = TelnyxSettings(api_key={"env": "UNUSED"}, public_key=telnyx.public_key,
                            api_base_url=api, **settings)
    return TelnyxGateway(config, {"api_key": SecretStr(KEY)}, public_base_url=PUBLIC)


async def test_a_text_is_sent_as_json_with_bearer_auth_and_a_webhook_url():
    telnyx = FakeTelnyx(KEY)
    async with serving(telnyx.app()) as api:
        gw = gateway(telnyx, api, messaging_profile_id="profile-1",
                     senders={BUSINESS: "+12125550199"})
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "Sorry we missed you 😀"))
        await gw.close()
    [message] = telnyx.accepted
    assert result.status == "accepted" and result.gateway_id == message["id"]
    assert message["from"] == "+12125550199" and message["to"] == CALLER
    assert message["text"] == "Sorry we missed you 😀"
    assert message["messaging_profile_id"] == "profile-1"
    assert message["webhook_url"] == f"{PUBLIC}/telnyx"


async def test_errors_are_sorted_into_retryable_and_permanent():
    telnyx = FakeTelnyx(KEY, opted_out={CALLER}, script=[("429", 3), ("5xx", 503)])
    async with serving(telnyx.app()) as api:
        gw = gateway(telnyx, api)
        limited = await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
        unavailable = await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
        opted_out = await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
        invalid = await gw.send(OutgoingText(BUSINESS, "2125550123", "hi"))
        await gw.close()
    assert (limited.status, limited.retry_after) == ("retryable", 3.0)
    assert unavailable.status == "retryable"
    assert opted_out.status == "permanent" and "opted out" in opted_out.error
    assert invalid.status == "permanent" and "40310" in invalid.error
    assert telnyx.accepted == []


async def test_a_wrong_api_key_is_permanent_and_check_refuses_it():
    telnyx = FakeTelnyx("the-real-key")
    async with serving(telnyx.app()) as api:
        gw = gateway(telnyx, api)
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
        with pytest.raises(PermissionError, match="API key"):
            await gw.check()
        await gw.close()
    assert result.status == "permanent" and "10009" in result.error and KEY not in result.error


async def test_check_accepts_a_good_key():
    telnyx = FakeTelnyx(KEY)
    async with serving(telnyx.app()) as api:
        gw = gateway(telnyx, api)
        assert await gw.check() == "telnyx API key accepted"
        await gw.close()


async def test_the_idempotency_key_makes_a_retry_after_a_lost_success_harmless():
    # Telnyx took the text but the answer was a 502 from its edge: the retry must not text twice.
    telnyx = FakeTelnyx(KEY, script=[("5xx", 502)], fail_after_processing=True)
    async with serving(telnyx.app()) as api:
        gw = gateway(telnyx, api)
        text = KeyedText(BUSINESS, CALLER, "hi", idempotency_key="textback-outbox-17")
        first = await gw.send(text)
        retry = await gw.send(text)
        await gw.close()
    assert first.status == "retryable"
    assert retry.status == "accepted" and retry.gateway_id == telnyx.accepted[0]["id"]
    assert len(telnyx.accepted) == 1 and telnyx.attempts == 2


async def test_a_signed_inbound_text_is_delivered_with_the_telnyx_message_id():
    telnyx = FakeTelnyx(KEY)
    async with callback_server([gateway(telnyx)]) as (local, sinks):
        body = telnyx.received(CALLER, BUSINESS, "Yes, Tuesday works", "msg-1")
        assert await telnyx.call(f"{local}/telnyx", body) == 200
    assert sinks.texts == [(InboundText(CALLER, BUSINESS, "Yes, Tuesday works", "msg-1"), "telnyx")]


async def test_wrong_missing_replayed_or_tampered_signatures_are_refused():
    telnyx = FakeTelnyx(KEY)
    impostor = FakeTelnyx(KEY)  # same shape, different private key
    async with callback_server([gateway(telnyx)]) as (local, sinks):
        url = f"{local}/telnyx"
        body = telnyx.received(CALLER, BUSINESS, "hello", "msg-2")
        old = int(time.time()) - 301
        answers = [
            await telnyx.call(url, body, signature=None),
            await telnyx.call(url, body, signature=base64.b64encode(b"x" * 64).decode()),
            await telnyx.call(url, body, signature="not base64!"),
            await impostor.call(url, body),
            # A genuine event captured and replayed after the window:
            await telnyx.call(url, body, timestamp=old, signature=telnyx.sign(str(old), body)),
            # A genuine signature with a moved timestamp:
            await telnyx.call(url, body, signature=telnyx.sign(str(old), body)),
            await telnyx.call(url, body.replace(b"hello", b"HELLO"),
                              signature=telnyx.sign(str(int(time.time())), body)),
        ]
    assert answers == [403] * 7
    assert sinks.texts == []


async def test_delivery_events_are_reported_in_the_common_shape_and_others_ignored():
    telnyx = FakeTelnyx(KEY)
    async with callback_server([gateway(telnyx)]) as (local, sinks):
        url = f"{local}/telnyx"
        sent = telnyx.event("message.sent", {"id": "out-1", "to": [
            {"phone_number": CALLER, "status": "sent"}], "errors": []})
        assert await telnyx.call(url, sent) == 200
        assert await telnyx.call(url, telnyx.finalized("out-1", "delivered")) == 200
        assert await telnyx.call(url, telnyx.finalized("out-2", "delivery_failed", "40008")) == 200
        assert await telnyx.call(url, telnyx.event("number_order.complete", {"id": "x"})) == 200
    assert [s for s, _ in sinks.statuses] == [
        DeliveryStatus("out-1", "sent"), DeliveryStatus("out-1", "delivered"),
        DeliveryStatus("out-2", "undelivered", "40008")]
    assert sinks.texts == []
