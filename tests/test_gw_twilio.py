"""The twilio gateway against a loopback Twilio, and its webhooks through the real server."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from sms_gateway.base import InboundText, OutgoingText
from sms_gateway.settings import TwilioSettings
from sms_gateway.twilio import TwilioGateway
from sms_gateway.callbacks import DeliveryStatus
from tests.providers.common import serving, callback_server
from tests.providers.twilio import FakeTwilio

SID = "AC" + "1" * 32
TOKEN = "twilio-auth-token-for-tests"
SERVICE = "MG" + "2" * 32
BUSINESS = "+12125550100"
CALLER = "+12125550123"
PUBLIC = "https://textback.example.com/hooks"  # what Twilio is told, in front of a proxy


def gateway(api: str, **settings) -> TwilioGateway:
    config = TwilioSettings(account_sid=SID, auth_token={"env": "UNUSED"}, api_base_url=api,
                            **settings)
    return TwilioGateway(config, {"auth_token": SecretStr(TOKEN)}, public_base_url=PUBLIC)


async def test_a_text_goes_out_from_the_dialled_number_with_a_status_callback():
    twilio = FakeTwilio(SID, TOKEN)
    async with serving(twilio.app()) as api:
        gw = gateway(api)
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "Sorry we missed you"))
        await gw.close()
    [message] = twilio.accepted
    assert result.status == "accepted" and result.gateway_id == message["sid"]
    assert (message["To"], message["From"], message["Body"]) == (CALLER, BUSINESS, "Sorry we missed you")
    assert message["StatusCallback"] == f"{PUBLIC}/twilio/status"
    assert "MessagingServiceSid" not in message


async def test_a_per_number_messaging_service_replaces_from():
    twilio = FakeTwilio(SID, TOKEN)
    async with serving(twilio.app()) as api:
        gw = gateway(api, senders={BUSINESS: SERVICE})
        assert (await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))).status == "accepted"
        assert (await gw.send(OutgoingText("+12125550101", CALLER, "hi"))).status == "accepted"
        await gw.close()
    first, second = twilio.accepted
    assert first["MessagingServiceSid"] == SERVICE and "From" not in first
    assert second["From"] == "+12125550101"


async def test_a_default_sender_applies_to_every_number():
    twilio = FakeTwilio(SID, TOKEN)
    async with serving(twilio.app()) as api:
        gw = gateway(api, default_sender=SERVICE, status_callback=False)
        await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
        await gw.close()
    [message] = twilio.accepted
    assert message["MessagingServiceSid"] == SERVICE and "StatusCallback" not in message


async def test_429_is_retryable_after_the_time_twilio_asks():
    twilio = FakeTwilio(SID, TOKEN, script=[("429", 7)])
    async with serving(twilio.app()) as api:
        gw = gateway(api)
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
        await gw.close()
    assert result.status == "retryable" and result.retry_after == 7.0
    assert "20429" in result.error and twilio.accepted == []


async def test_5xx_is_retryable():
    twilio = FakeTwilio(SID, TOKEN, script=[("5xx", 500)])
    async with serving(twilio.app()) as api:
        gw = gateway(api)
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
        await gw.close()
    assert result.status == "retryable" and result.retry_after is None
    assert result.error.startswith("HTTP 500")


async def test_an_invalid_number_and_an_opted_out_caller_are_permanent():
    twilio = FakeTwilio(SID, TOKEN, opted_out={CALLER})
    async with serving(twilio.app()) as api:
        gw = gateway(api)
        invalid = await gw.send(OutgoingText(BUSINESS, "12345", "hi"))
        opted_out = await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
        await gw.close()
    assert invalid.status == "permanent" and "21211" in invalid.error
    assert opted_out.status == "permanent" and "opted out" in opted_out.error
    assert twilio.accepted == []


async def test_a_wrong_auth_token_is_permanent_and_check_says_so():
    twilio = FakeTwilio(SID, "another-token")
    async with serving(twilio.app()) as api:
        gw = gateway(api)
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
        with pytest.raises(PermissionError, match="auth token") as refused:
            await gw.check()
        await gw.close()
    assert result.status == "permanent" and "20003" in result.error
    assert TOKEN not in result.error + str(refused.value)


async def test_check_reports_the_account():
    twilio = FakeTwilio(SID, TOKEN)
    async with serving(twilio.app()) as api:
        gw = gateway(api)
        assert await gw.check() == f"twilio account {SID} (active)"
        await gw.close()


async def test_an_unreachable_api_is_retryable(unused_tcp_port):
    gw = gateway(f"http://127.0.0.1:{unused_tcp_port}")
    result = await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
    await gw.close()
    assert result.status == "retryable" and "cannot connect" in result.error


async def test_a_signed_inbound_text_is_delivered_with_its_message_sid():
    twilio = FakeTwilio(SID, TOKEN)
    gw = gateway("http://unused.invalid")
    async with callback_server([gw], public_base_url=PUBLIC) as (local, sinks):
        params = twilio.inbound_params(CALLER, BUSINESS, "Yes please call me back")
        params["NewParameterTwilioAddedLater"] = "x"
        status = await twilio.call(f"{local}/twilio/inbound", f"{PUBLIC}/twilio/inbound", params)
    assert status == 200
    assert sinks.texts == [(InboundText(CALLER, BUSINESS, "Yes please call me back",
                                        params["MessageSid"]), "twilio")]


async def test_wrong_missing_or_misaddressed_signatures_are_refused_and_nothing_is_delivered():
    twilio = FakeTwilio(SID, TOKEN)
    gw = gateway("http://unused.invalid")
    async with callback_server([gw], public_base_url=PUBLIC) as (local, sinks):
        params = twilio.inbound_params(CALLER, BUSINESS, "hello")
        url = f"{local}/twilio/inbound"
        wrong = await twilio.call(url, f"{PUBLIC}/twilio/inbound", params, signature="AAAA")
        missing = await twilio.call(url, f"{PUBLIC}/twilio/inbound", params, signature=None)
        # Signed for the local URL, not the public one Twilio was configured with.
        misaddressed = await twilio.call(url, url, params)
        tampered = dict(params, Body="send me your password")
        forged = await twilio.call(url, f"{PUBLIC}/twilio/inbound", tampered,
                                   signature=twilio.sign(f"{PUBLIC}/twilio/inbound", params))
    assert (wrong, missing, misaddressed, forged) == (403, 403, 403, 403)
    assert sinks.texts == []


async def test_a_signature_over_the_url_with_its_default_port_is_accepted():
    twilio = FakeTwilio(SID, TOKEN)
    gw = gateway("http://unused.invalid")
    async with callback_server([gw], public_base_url=PUBLIC) as (local, sinks):
        params = twilio.inbound_params(CALLER, BUSINESS, "hi")
        status = await twilio.call(f"{local}/twilio/inbound",
                                   "https://textback.example.com:443/hooks/twilio/inbound", params)
    assert status == 200 and len(sinks.texts) == 1


async def test_status_callbacks_report_delivery_and_errors_in_the_common_shape():
    twilio = FakeTwilio(SID, TOKEN)
    gw = gateway("http://unused.invalid")
    signed = f"{PUBLIC}/twilio/status"
    async with callback_server([gw], public_base_url=PUBLIC) as (local, sinks):
        for status, error in (("queued", None), ("sent", None), ("delivered", None),
                              ("undelivered", "30003"), ("failed", "30008")):
            params = {"MessageSid": "SM" + "9" * 32, "MessageStatus": status, "AccountSid": SID,
                      "From": BUSINESS, "To": CALLER, "ApiVersion": "2010-04-01"}
            if error:
                params["ErrorCode"] = error
            assert await twilio.call(f"{local}/twilio/status", signed, params) == 200
        refused = await twilio.call(f"{local}/twilio/status", signed,
                                    {"MessageSid": "SM1", "MessageStatus": "delivered"}, signature="x")
    assert refused == 403
    assert [s for s, _ in sinks.statuses] == [
        DeliveryStatus("SM" + "9" * 32, "queued"), DeliveryStatus("SM" + "9" * 32, "sent"),
        DeliveryStatus("SM" + "9" * 32, "delivered"),
        DeliveryStatus("SM" + "9" * 32, "undelivered", "30003"),
        DeliveryStatus("SM" + "9" * 32, "failed", "30008")]
    assert {gateway for _, gateway in sinks.statuses} == {"twilio"}


def shifted_replays(params: dict[str, str]) -> list[dict[str, str]]:
    """Every replay of `params` that moves text across one key's boundary with the value before it.

    Twilio's signature joins sorted keys and values without separators, so each of
    these carries the captured signature unchanged, under another MessageSid or body.
    """
    keys = sorted(params)
    replays = []
    for before, key in zip(keys, keys[1:]):
        for cut in range(1, len(key) + 1):
            moved = {k: v for k, v in params.items() if k != key}
            moved[before] = params[before] + key[:cut]
            if cut < len(key):
                moved[key[cut:]] = params[key]
            else:  # the whole field joins the value before it
                moved[before] += params[key]
            if "".join(k + moved[k] for k in sorted(moved)) == "".join(k + params[k] for k in keys):
                replays.append(moved)
    return replays


async def test_a_captured_webhook_replayed_with_shifted_fields_is_refused():
    twilio = FakeTwilio(SID, TOKEN)
    gw = gateway("http://unused.invalid")
    signed = f"{PUBLIC}/twilio/inbound"
    params = twilio.inbound_params(CALLER, BUSINESS, "Yes please call me back")
    params.update(NumMedia="0", Body="Yes")
    replays = shifted_replays(params)
    assert any(r.get("MessageSid") not in (None, params["MessageSid"]) for r in replays)  # it exists
    signature = twilio.sign(signed, params)
    async with callback_server([gw], public_base_url=PUBLIC) as (local, sinks):
        assert await twilio.call(f"{local}/twilio/inbound", signed, params) == 200
        for replay in replays:
            assert twilio.sign(signed, replay) == signature
            assert await twilio.call(f"{local}/twilio/inbound", signed, replay,
                                     signature=signature) in (400, 403), replay
    assert len(sinks.texts) == 1
