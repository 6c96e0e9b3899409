"""A provider outage followed by recovery delivers every queued text exactly once.

The texts are queued and driven through the real textback.store.Store outbox
(record_call, due, claim, mark_retry, mark_sent), as the daemon's outbox
worker does, against loopback providers that count what they took.
"""

from __future__ import annotations

import asyncio
import time

from pydantic import SecretStr

from sms_gateway.base import Gateway, OutgoingText
from sms_gateway.settings import TelnyxSettings, TwilioSettings
from sms_gateway.telnyx import TelnyxGateway
from sms_gateway.twilio import TwilioGateway
from tests.providers.common import serving
from tests.providers.telnyx import FakeTelnyx
from tests.providers.twilio import FakeTwilio
from textback.store import CallRow, PlannedText, Store
from tests.store_helpers import outbox_states

BUSINESS = "+12125550100"
CALLERS = ["+12125550123", "+12125550124", "+12125550125"]
SID, TOKEN = "AC" + "3" * 32, "twilio-token"
TELNYX_PORT = 15110  # fixed, so the provider can come back on the same address


async def queue_texts(store: Store) -> None:
    now = time.time()
    for index, caller in enumerate(CALLERS):
        row = CallRow(linkedid=f"1700000000.{index}", business_number=BUSINESS, caller_raw=caller,
                      caller=caller, caller_name="", started_at=now - 20, answered_at=None,
                      ended_at=now - 5, outcome="missed", reason="no_answer",
                      decision="missed_call_text")
        await store.record_call(row, PlannedText("dana", f"Sorry we missed you ({index})", 0))


async def outbox_rounds(store: Store, gateway: Gateway, rounds: int | None = None,
                        timeout: float = 15.0) -> list[str]:
    """Send what is due, like the outbox worker; returns the result of each attempt."""
    results: list[str] = []
    deadline = time.monotonic() + timeout
    while (rounds is None or rounds > 0) and time.monotonic() < deadline:
        if await store.next_due() is None:
            break
        for item in await store.due(time.time()):
            assert await store.claim_all([item])
            result = await gateway.send(OutgoingText(item.sender, item.recipient, item.body))
            results.append(result.status)
            if result.status == "accepted":
                await store.mark_all_sent([(item, result.gateway_id)], gateway.name)
            elif result.status == "retryable":
                delay = result.retry_after if result.retry_after is not None else 0.02
                await store.mark_retry(item, time.time() + delay, result.error)
            else:
                await store.mark_final(item, "failed", gateway.name, result.error)
        rounds = None if rounds is None else rounds - 1
        await asyncio.sleep(0.01)
    return results


async def sent_ids(store: Store) -> dict[str, str]:
    """Caller -> the provider id the store recorded for the text to them."""
    ids = {}
    for caller in CALLERS:
        [text] = [e for e in await store.timeline(caller) if e["kind"] == "text_out"]
        assert text["status"] == "sent"
        ids[caller] = text["extra"]
    return ids


async def test_a_5xx_outage_then_recovery_sends_each_text_once(tmp_path):
    twilio = FakeTwilio(SID, TOKEN, script=[("5xx", 503)] * 5 + [("5xx", 500)] * 2)
    store = await Store.open(tmp_path / "outbox.db")
    try:
        await queue_texts(store)
        async with serving(twilio.app()) as api:
            gw = TwilioGateway(TwilioSettings(account_sid=SID, auth_token={"env": "UNUSED"},
                                              api_base_url=api), {"auth_token": SecretStr(TOKEN)})
            results = await outbox_rounds(store, gw)
            await gw.close()
        assert results.count("retryable") == 7 and results.count("accepted") == 3
        assert sorted(m["To"] for m in twilio.accepted) == CALLERS
        assert twilio.attempts == 10
        assert await outbox_states(store) == {"sent": 3}
        assert await sent_ids(store) == {m["To"]: m["sid"] for m in twilio.accepted}
    finally:
        await store.close()


async def test_a_provider_that_is_down_then_back_gets_each_text_once(tmp_path):
    telnyx = FakeTelnyx("telnyx-key")
    settings = TelnyxSettings(api_key={"env": "UNUSED"}, public_key=telnyx.public_key,
                              api_base_url=f"http://127.0.0.1:{TELNYX_PORT}")
    gw = TelnyxGateway(settings, {"api_key": SecretStr("telnyx-key")})
    store = await Store.open(tmp_path / "outbox.db")
    try:
        await queue_texts(store)
        down = await outbox_rounds(store, gw, rounds=3)
        assert set(down) == {"retryable"} and len(down) >= 3
        assert await outbox_states(store) == {"pending": 3}
        async with serving(telnyx.app(), port=TELNYX_PORT):
            back = await outbox_rounds(store, gw)
        await gw.close()
        assert back == ["accepted"] * 3
        assert sorted(m["to"] for m in telnyx.accepted) == CALLERS and telnyx.attempts == 3
        assert await sent_ids(store) == {m["to"]: m["id"] for m in telnyx.accepted}
    finally:
        await store.close()


async def test_a_429_puts_the_text_back_for_the_time_the_provider_asked(tmp_path):
    twilio = FakeTwilio(SID, TOKEN, script=[("429", 1)])
    store = await Store.open(tmp_path / "outbox.db")
    try:
        await queue_texts(store)
        async with serving(twilio.app()) as api:
            gw = TwilioGateway(TwilioSettings(account_sid=SID, auth_token={"env": "UNUSED"},
                                              api_base_url=api), {"auth_token": SecretStr(TOKEN)})
            first = await outbox_rounds(store, gw, rounds=1)
            assert first == ["retryable", "accepted", "accepted"]
            assert 0.8 < await store.next_due() - time.time() <= 1.0
            rest = await outbox_rounds(store, gw)
            await gw.close()
        assert rest == ["accepted"] and len(twilio.accepted) == 3
        assert await outbox_states(store) == {"sent": 3}
    finally:
        await store.close()
