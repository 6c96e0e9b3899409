"""The kannel gateway against a real Kannel: bearerbox, smsbox and fakesmsc (tests/kannel/)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import pytest
from pydantic import SecretStr

from sms_gateway.base import OutgoingText
from sms_gateway.kannel import KannelGateway
from sms_gateway.settings import KannelSettings
from sms_gateway.callbacks import DeliveryStatus
from tests.kannel.fixture import WEBHOOK_PORT, Kannel, kannel_fixture  # noqa: F401 - the fixture
from tests.providers.common import callback_server
from tests.providers.generic import call

BUSINESS = "+12125550100"
CALLER = "+12125550123"


def gateway(kannel: Kannel, password: str | None = None, url: str | None = None) -> KannelGateway:
    settings = KannelSettings(sendsms_url=url or kannel.sendsms_url, username="textback",
                              password={"env": "UNUSED"}, webhook_token={"env": "UNUSED"},
                              callback_base_url=f"http://127.0.0.1:{WEBHOOK_PORT}")
    return KannelGateway(settings, {"password": SecretStr(password or kannel.password),
                                    "webhook_token": SecretStr(kannel.token)})


async def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def test_a_text_sent_by_the_gateway_comes_out_of_the_smsc_with_delivery_reports(kannel):
    gw = gateway(kannel)
    before = len(kannel.mt)
    async with callback_server([gw], port=WEBHOOK_PORT) as (_, sinks):
        result = await gw.send(OutgoingText(BUSINESS, CALLER, "Sorry we missed your call!"))
        [*_, text] = await kannel.wait_mt(before + 1)
        await wait_for(lambda: len(sinks.statuses) >= 2)
        await gw.close()
    assert result.status == "accepted" and result.gateway_id
    assert (text.sender, text.receiver, text.body) == (BUSINESS, CALLER, "Sorry we missed your call!")
    # The fake SMSC acknowledges (8: delivered to SMSC) and then reports delivery (1).
    assert [s for s, _ in sinks.statuses] == [DeliveryStatus(result.gateway_id, "sent"),
                                              DeliveryStatus(result.gateway_id, "delivered")]


async def test_a_text_outside_gsm7_goes_as_ucs2_and_arrives_intact(kannel):
    gw = gateway(kannel)
    before = len(kannel.mt)
    body = "Café — we’ll call back 😀"
    result = await gw.send(OutgoingText(BUSINESS, CALLER, body))
    [*_, text] = await kannel.wait_mt(before + 1)
    await gw.close()
    assert result.status == "accepted" and text.body == body


async def test_an_mo_text_reaches_the_webhook_server_and_the_deliver_callback(kannel):
    gw = gateway(kannel)
    async with callback_server([gw], port=WEBHOOK_PORT) as (_, sinks):
        kannel.inject(CALLER, BUSINESS, "Yes  please, call me at 5pm")
        await wait_for(lambda: sinks.texts)
    [(text, name)] = sinks.texts
    assert name == "kannel"
    assert (text.sender, text.recipient, text.body) == (CALLER, BUSINESS, "Yes  please, call me at 5pm")
    assert text.gateway_id and len(text.gateway_id) == 36  # Kannel's message UUID


async def test_an_mo_text_that_could_not_be_committed_is_sent_again_by_kannel(kannel):
    gw = gateway(kannel)
    async with callback_server([gw], port=WEBHOOK_PORT) as (_, sinks):
        sinks.failures_left = 1  # the first commit fails: we answer 500
        kannel.inject(CALLER, BUSINESS, "second try")
        await wait_for(lambda: sinks.texts)
    [(text, _)] = sinks.texts
    assert text.body == "second try" and sinks.failures_left == 0


async def test_webhooks_without_the_token_are_refused(kannel):
    gw = gateway(kannel)
    async with callback_server([gw], port=WEBHOOK_PORT) as (local, sinks):
        params = {"from": CALLER, "to": BUSINESS, "text": "forged", "id": "x"}
        answers = [await call(f"{local}/kannel/inbound", params=params),
                   await call(f"{local}/kannel/inbound", params={**params, "token": "guess"}),
                   await call(f"{local}/kannel/status", params={"id": "x", "type": "1"})]
    assert [status for status, _ in answers] == [403, 403, 403]
    assert sinks.texts == [] and sinks.statuses == []


async def test_check_and_sending_with_a_wrong_password(kannel):
    good, bad = gateway(kannel), gateway(kannel, password="wrong")
    assert await good.check() == f"kannel smsbox at {kannel.sendsms_url}, user textback"
    with pytest.raises(PermissionError, match="refused user 'textback'"):
        await bad.check()
    result = await bad.send(OutgoingText(BUSINESS, CALLER, "hi"))
    await good.close()
    await bad.close()
    assert result.status == "permanent" and result.error.startswith("HTTP 403")


async def test_an_unreachable_smsbox_is_retryable(kannel, unused_tcp_port):
    gw = gateway(kannel, url=f"http://127.0.0.1:{unused_tcp_port}/cgi-bin/sendsms")
    result = await gw.send(OutgoingText(BUSINESS, CALLER, "hi"))
    await gw.close()
    assert result.status == "retryable"


def test_kannel_logged_no_panic(kannel):
    assert "PANIC" not in kannel.log("bearerbox.log") + kannel.log("smsbox.log")


async def test_a_ucs2_mo_text_arrives_intact(kannel):
    gw = gateway(kannel)
    body = "请尽快给我回电话, 关于厨房改造 😀"
    async with callback_server([gw], port=WEBHOOK_PORT) as (_, sinks):
        kannel.inject(CALLER, BUSINESS, body, ucs2=True)
        await wait_for(lambda: sinks.texts)
    [(text, _)] = sinks.texts
    assert text.body == body


async def test_a_long_mo_text_over_the_default_request_line_limit_arrives_whole(kannel, caplog):
    """1,600 CJK characters in UTF-8, as smsbox's get-url sends them: a 14 KB request line.

    fakesmsc cannot inject a single MO that long, so the request is made the way
    smsbox makes it (the short UCS-2 text above shows that shape end to end).
    """
    gw = gateway(kannel)
    body = ("请尽快给我回电话关于厨房改造" * 120)[:1600]
    query = (f"token={kannel.token}&from=%2B12125550123&to=%2B12125550100"
             f"&text={quote(body.encode('utf-8'))}&charset=UTF-8&coding=2"
             f"&id=0b5e7c1e-2f7a-4c8e-9a61-3b1f0e5d9c42")
    assert len(query) > 14000
    async with callback_server([gw], port=WEBHOOK_PORT) as (local, sinks):
        status, _ = await call(f"{local}/kannel/inbound?{query}")
    assert status == 200
    [(text, _)] = sinks.texts
    assert text.body == body
    assert kannel.token not in caplog.text  # the URL carries the shared token: never logged
