"""Opt-out compliance: keywords, one confirmation, and no path that texts a suppressed number."""

from __future__ import annotations

import time

import pytest

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from sms_gateway.base import InboundText
from sms_gateway.log import LogGateway
from textback.daemon import Daemon
from textback.core.optout import Keyword, classify
from textback.store import CallRow, PlannedText


@pytest.mark.parametrize("body", [
    "STOP", "stop", "Stop.", " STOP! ", "S.T.O.P", "STOPALL", "stop all", "UNSUBSCRIBE", "Cancel",
    "END", "quit", "REVOKE", "OPTOUT", "opt out", "Opt-Out", "«STOP»",
    "please stop texting me", "Do not text me", "don't text me again", "remove me",
    "Remove my number please", "no more texts", "take me off your list", "unsubscribe me",
    "leave me alone",
])
def test_opt_out_keywords_and_free_text(body):
    assert classify(body) is Keyword.STOP


@pytest.mark.parametrize("body, keyword", [
    ("START", Keyword.START), ("unstop", Keyword.START), ("Yes", Keyword.START),
    ("HELP", Keyword.HELP), ("info?", Keyword.HELP),
])
def test_start_and_help(body, keyword):
    assert classify(body) is keyword


@pytest.mark.parametrize("body", [
    "Can you stop by Tuesday?", "Yes please, kitchen and two baths", "We need help with a deck",
    "The end of the month works", "Call me back", "",
])
def test_ordinary_replies_are_not_keywords(body):
    assert classify(body) is None


@pytest.fixture
async def daemon(offline_daemon):
    return await offline_daemon(send_with=LogGateway())


async def send_due(d: Daemon) -> None:
    for item in await d.store.due(time.time() + 1):
        if await d.store.claim_all([item]):
            await d.outbox.send(item)


async def texts(d: Daemon) -> list[tuple[str, str, str]]:
    rows = await d.store.timeline(HOMEOWNER)
    return [(r["kind"], r["status"], r["body"]) for r in rows if r["kind"] == "text_out"]


async def test_stop_suppresses_with_exactly_one_confirmation(daemon):
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "STOP"), "log")
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "stop!!"), "log")
    await send_due(daemon)
    sent = await texts(daemon)
    assert len(sent) == 1 and sent[0][1] == "sent"
    assert "Acme Remodeling" in sent[0][2] and "START" in sent[0][2]
    assert await daemon.store.is_suppressed(HOMEOWNER)


async def test_no_path_texts_a_suppressed_number(daemon):
    await daemon.store.suppress(HOMEOWNER, "cli")
    # a text queued before the opt-out, an automatic text, a help answer: all blocked at send time
    now = time.time()
    await daemon.store.record_call(
        CallRow("9.1", BUSINESS_NUMBER, HOMEOWNER, HOMEOWNER, "", now, None, now, "missed",
                "no_answer", "missed_call_text"), PlannedText("dana", "Hi", now))
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "HELP"), "log")
    await send_due(daemon)
    assert {status for _, status, _ in await texts(daemon)} == {"blocked"}


async def test_start_lifts_the_suppression_and_confirms(daemon):
    await daemon.store.suppress(HOMEOWNER, "sms")
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "START"), "log")
    await send_due(daemon)
    assert not await daemon.store.is_suppressed(HOMEOWNER)
    [(_, status, body)] = await texts(daemon)
    assert status == "sent" and "back on" in body


async def test_yes_from_a_subscribed_number_is_just_a_reply(daemon):
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "Yes"), "log")
    await send_due(daemon)
    assert await texts(daemon) == []
    assert len(await daemon.store.due_mail("alerts", time.time())) == 1
