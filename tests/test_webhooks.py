"""Outbound webhooks end to end in one process: the daemon's store and worker, a real receiver.

Every delivery is verified by the receiver with the standardwebhooks library
and every body validated against the JSON Schema published in docs/webhooks.md.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiosqlite
import jsonschema

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from lab.harness import SMTP_SINK_PORT, eventually, in_process
from sms_gateway.base import InboundText
from tests.hooks_receiver import Receiver, endpoint, new_secret, schemas
from tests.providers.common import serving
from tests.test_outbox_outage import MINUTE, FastClock
from textback.config import load
from textback.daemon import Daemon
from textback.core import events
from textback.store import CallRow

DOC = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def call(caller: str | None, linkedid: str, outcome: str = "missed", ago: float = 30) -> CallRow:
    now = time.time()
    return CallRow(linkedid=linkedid, business_number=BUSINESS_NUMBER, caller_raw=caller or "anonymous",
                   caller=caller, caller_name="", started_at=now - ago - 20,
                   answered_at=now - ago - 10 if outcome == "answered" else None, ended_at=now - ago,
                   outcome=outcome, reason="answered" if outcome == "answered" else "no_answer",
                   decision="answered" if outcome == "answered" else "missed_call_text")


def daemon_with(tmp_path: Path, endpoints: list[dict], clock=None, **overrides) -> Daemon:
    config = base_config(tmp_path, **{"smtp.port": SMTP_SINK_PORT, "text.delay_seconds": 0,
                                      "webhooks": {"endpoints": endpoints}, **overrides})
    return Daemon(load(write_config(tmp_path, config)), clock=clock)


def validate(event: dict, published: dict[str, dict]) -> None:
    jsonschema.Draft202012Validator(published[event["type"]]).validate(event)


async def test_every_event_type_is_delivered_signed_and_matches_its_published_schema(tmp_path,
                                                                                    smtp_sink):
    crm, answered_only = Receiver(new_secret()), Receiver(new_secret())
    async with serving(crm.app()) as crm_url, serving(answered_only.app()) as answered_url:
        daemon = daemon_with(tmp_path, [
            endpoint(tmp_path, "crm", f"{crm_url}/hook", crm.secret),
            endpoint(tmp_path, "calls", f"{answered_url}/hook", answered_only.secret,
                     events=["call.answered"])])
        async with in_process(daemon):
            store = daemon.store
            await store.record_call(call(HOMEOWNER, "c-1"), owner_id="dana")
            await store.record_call(call("+12125550124", "c-2", "answered"), owner_id="dana")
            await store.record_call(call(None, "c-3"))
            await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "Can you come Tue?",
                                                  "sms-1"), "log")
            conversation = (await store.conversation_for(HOMEOWNER, BUSINESS_NUMBER))["id"]
            await store.queue_reply(conversation, BUSINESS_NUMBER, HOMEOWNER, "Yes, 10am.", "owner")
            daemon.wake_outbox()
            sent = await eventually(lambda: _first(crm, events.TEXT_SENT), 10, "text.sent")
            gateway_id = (await store.conversation_history(conversation))["messages"][-1]["gateway_id"]
            assert await store.update_delivery("log", gateway_id, "delivered", None)
            await store.assign(conversation, "dana", "api")
            await store.record_outcome(conversation, "won", 82000.0, "cli")
            await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "STOP", "sms-2"), "log")
            await store.queue_reply(conversation, BUSINESS_NUMBER, HOMEOWNER, "One more?", "owner")
            daemon.wake_outbox()
            await eventually(lambda: _first(crm, events.TEXT_FAILED), 10, "text.failed")
            await eventually(lambda: _first(answered_only, events.CALL_ANSWERED), 10, "answered")

    assert crm.forged == [] and answered_only.forged == []
    kinds = [d.event["type"] for d in crm.deliveries]
    assert set(kinds) == set(events.DEFAULT_EVENT_TYPES)  # everything but call.answered
    assert [d.event["type"] for d in answered_only.deliveries] == ["call.answered"]
    published = schemas(DOC)
    assert set(published) == set(events.EVENT_TYPES) | {events.WEBHOOK_TEST}
    for delivery in crm.deliveries + answered_only.deliveries:
        validate(delivery.event, published)
        assert delivery.headers["webhook-id"] == delivery.event["id"]
    missed = [e["data"] for e in crm.of_type(events.CALL_MISSED)]
    assert {m["caller"] for m in missed} == {HOMEOWNER, None}  # a withheld number is still a call
    assert sent["data"]["to"] == HOMEOWNER and sent["data"]["from"] == BUSINESS_NUMBER
    failed = crm.of_type(events.TEXT_FAILED)[0]["data"]
    assert failed["status"] == "blocked" and failed["body"] == "One more?"
    won = crm.of_type(events.OUTCOME_CHANGED)[0]["data"]
    assert (won["stage"], won["value"], won["conversation_id"]) == ("won", 82000.0, conversation)
    assert crm.of_type(events.OPTOUT_CHANGED)[0]["data"] == {
        "number": HOMEOWNER, "opted_out": True, "source": "sms",
        "at": crm.of_type(events.OPTOUT_CHANGED)[0]["data"]["at"]}
    # One conversation's events arrive in the order they happened.
    order = [d.event["id"] for d in crm.deliveries
             if d.event["data"].get("conversation_id") == conversation]
    rows = await _event_ids_in_commit_order(tmp_path, order)
    assert order == rows


async def _first(receiver: Receiver, kind: str):
    found = receiver.of_type(kind)
    return found[0] if found else None


async def _event_ids_in_commit_order(tmp_path: Path, ids: list[str] | None) -> list[str]:
    """The ids of committed events (of `ids`, or all), in the order they were committed."""
    async with aiosqlite.connect(tmp_path / "textback.db") as db:
        rows = await db.execute_fetchall("SELECT event_id FROM events ORDER BY id")
    return [r[0] for r in rows if ids is None or r[0] in set(ids)]


async def test_an_endpoint_down_for_an_hour_gets_everything_afterwards_in_order(tmp_path, smtp_sink):
    clock = FastClock(speed=600)  # a simulated minute is 0.1 s
    t0 = clock.now()
    back_at = t0 + 60 * MINUTE
    crm = Receiver(new_secret(), down=lambda: clock.now() < back_at)
    callers = ["+12125550131", "+12125550132", "+12125550133"]
    async with serving(crm.app()) as url:
        daemon = daemon_with(tmp_path, [endpoint(tmp_path, "crm", f"{url}/hook", crm.secret)],
                             clock=clock)
        async with in_process(daemon):
            store = daemon.store
            for minute in range(0, 60, 6):  # each caller: a missed call, then replies and outcomes
                await clock.until(t0 + minute * MINUTE)
                caller = callers[minute // 6 % 3]
                if minute < 18:
                    await store.record_call(call(caller, f"call-{minute}"), owner_id="dana")
                else:
                    await daemon.receive_text(InboundText(caller, BUSINESS_NUMBER,
                                                          f"reply at minute {minute}"), "log")
                    conversation = (await store.conversation_for(caller, BUSINESS_NUMBER))["id"]
                    await store.record_outcome(conversation, "qualified", None, "cli")
            wanted = await _event_ids_in_commit_order(tmp_path, None)
            await eventually(lambda: _all_delivered(crm, wanted), 15, "every event after the outage")
            recovered_in = clock.now() - back_at

    assert crm.forged == []
    assert crm.refused >= 30  # it kept trying through the hour
    assert recovered_in < 15 * MINUTE  # the backoff is capped at ten minutes
    first_arrival = list(dict.fromkeys(d.id for d in crm.deliveries))
    assert sorted(first_arrival) == sorted(wanted)  # every event, none missing
    by_conversation: dict[int, list[str]] = {}
    for delivery in crm.deliveries:
        by_conversation.setdefault(delivery.event["data"]["conversation_id"], []).append(delivery.id)
    assert len(by_conversation) == 3
    for ids in by_conversation.values():
        arrived = list(dict.fromkeys(ids))
        assert arrived == [i for i in wanted if i in set(arrived)]  # the order they happened in


async def _all_delivered(receiver: Receiver, ids: list[str]) -> bool:
    return set(ids) <= receiver.ids()


async def test_events_older_than_max_age_are_given_up_and_the_admin_is_told(tmp_path, smtp_sink,
                                                                              caplog):
    clock = FastClock(speed=600)
    crm = Receiver(new_secret(), down=lambda: True)
    async with serving(crm.app()) as url:
        daemon = daemon_with(tmp_path, [endpoint(tmp_path, "crm", f"{url}/hook?key=s3cr3t-in-url",
                                                 crm.secret)],
                             clock=clock, admin_email="it@acme.example",
                             **{"webhooks.max_age_hours": 0.25})
        async with in_process(daemon):
            await daemon.store.record_call(call(HOMEOWNER, "c-old"), owner_id="dana")
            await daemon.store.record_outcome(1, "spam", None, "cli")
            mail = await asyncio.to_thread(smtp_sink.wait_for, 1, 15)
            log = await daemon.store.delivery_log()

    assert mail[0].recipients == ["it@acme.example"]
    assert mail[0].message["Subject"] == "Webhook events to crm were given up"
    body = mail[0].message.get_content()
    assert "call.missed" in body and "outcome.changed" in body and "HTTP 503" in body
    assert [(r["type"], r["state"], r["last_status"]) for r in log] == [
        ("outcome.changed", "expired", None), ("call.missed", "expired", 503)]
    assert log[1]["attempts"] >= 3 and log[1]["last_error"].startswith("HTTP 503")
    # the outcome waited behind the call: one conversation, one at a time
    everything = caplog.text + body + repr(log)
    assert crm.secret not in everything and crm.secret[6:] not in everything
    assert "s3cr3t-in-url" not in everything
