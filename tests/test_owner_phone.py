"""An owner's own mobile, driven through a daemon's parts on a real store (no AMI): the alert
text through the outbox, the answers back, STOP and START, quiet hours, and that the owner's
number is never a lead. The same paths on the lab PBX: tests/test_e2e_owner_sms_lab.py."""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, RING_GROUP_NUMBER
from sms_gateway.base import InboundText
from sms_gateway.log import LogGateway
from textback.core.relay import HELP_TEXT, START_TEXT, STOP_TEXT, alert_text
from textback.core.tracker import CallFinished
from textback.store import CallRow, PlannedText
from textback.workers.common import SystemClock

MOBILE = "+19175550188"
SECOND = "+12125550124"
EASTERN = ZoneInfo("America/New_York")
OWNERS = [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com",
           "alerts": {"channels": ["email", "sms"], "sms": MOBILE}},
          {"id": "sam", "name": "Sam Ortiz", "email": "sam@example.com"}]


class SetClock(SystemClock):
    def __init__(self, moment: float):
        self.moment = moment

    def now(self) -> float:
        return self.moment


async def daemon_with(offline_daemon, quiet_hours: str | None = None, **overrides):
    owners = json.loads(json.dumps(OWNERS))
    if quiet_hours:
        owners[0]["alerts"]["quiet_hours"] = quiet_hours
    daemon = await offline_daemon(owners=owners, **overrides)
    daemon.attach(daemon.store, LogGateway())
    return daemon


async def send_due(daemon) -> list[tuple[str, str, str, str]]:
    """Hand every due text to the gateway; (kind, from, to, body) of each, then its status."""
    handed = []
    for item in await daemon.store.due(time.time() + 1, limit=100):
        assert await daemon.store.claim_all([item])
        await daemon.outbox.send(item)
        handed.append((item.kind, item.sender, item.recipient, item.body))
    return handed


async def text_in(daemon, sender: str, body: str, gateway_id: str | None = None,
                  to: str = BUSINESS_NUMBER) -> None:
    await daemon.receive_text(InboundText(sender, to, body, gateway_id), "log")


async def conversation_id(daemon, caller: str) -> int:
    return (await daemon.store.conversation_for(caller, BUSINESS_NUMBER))["id"]


async def test_a_reply_is_texted_to_the_owner_and_the_answer_goes_back(offline_daemon):
    daemon = await daemon_with(offline_daemon)
    await text_in(daemon, HOMEOWNER, "We need a kitchen quote, can you come?")
    code = await conversation_id(daemon, HOMEOWNER)
    alert = alert_text(HOMEOWNER, "", "We need a kitchen quote, can you come?", code, "Kitchen")
    assert alert.startswith("Kitchen. (212)")  # the intake facts read from the reply lead
    assert await send_due(daemon) == [("owner_alert", BUSINESS_NUMBER, MOBILE, alert)]
    assert alert.endswith(f"Reply to answer. #{code}") and "STOP" not in alert  # no footer

    await text_in(daemon, MOBILE, "Tuesday at 10 works", gateway_id="sip-1")
    await text_in(daemon, MOBILE, "Tuesday at 10 works", gateway_id="sip-1")  # delivered again
    assert await send_due(daemon) == [("owner", BUSINESS_NUMBER, HOMEOWNER, "Tuesday at 10 works")]
    thread = await daemon.store.thread(code)
    assert [(m["direction"], m["kind"], m["status"]) for m in thread["messages"]] == [
        ("in", "auto", "received"), ("out", "owner", "sent")]  # the answer, threaded as the owner's
    facts = [(f["fact"], f["channel"]) for f in await daemon.store.consent_record(HOMEOWNER)]
    assert ("text_queued", "sms:dana") in facts

    # The owner's number is no lead: not in the inbox, not on the scorecard, no webhook event.
    listed = await daemon.store.inbox_page("all", time.time())
    assert [row["caller"] for row in listed] == [HOMEOWNER]
    rows = await daemon.store.report_rows(0, time.time() + 1)
    assert {m["kind"] for m in rows["messages"]} == {"auto", "owner"}
    events = await daemon.store._all("SELECT type, body FROM events")
    assert all(MOBILE not in e["body"] for e in events)
    assert [e["type"] for e in events].count("text.sent") == 1  # the homeowner's answer only


async def test_a_code_picks_another_conversation_and_commands_work_by_text(offline_daemon):
    daemon = await daemon_with(offline_daemon)
    await text_in(daemon, HOMEOWNER, "First")
    await text_in(daemon, SECOND, "Second")
    first, second = await conversation_id(daemon, HOMEOWNER), await conversation_id(daemon, SECOND)
    await send_due(daemon)
    await text_in(daemon, MOBILE, f"#{first} For the first one")
    await text_in(daemon, MOBILE, "For the last one alerted")
    assert [(to, body) for _, _, to, body in await send_due(daemon)] == [
        (HOMEOWNER, "For the first one"), (SECOND, "For the last one alerted")]

    await text_in(daemon, MOBILE, f"#{first} #won 82000")
    await text_in(daemon, MOBILE, "#booked")
    await text_in(daemon, MOBILE, "#assign sam")
    assert await daemon.store.outcomes_of(first) == [
        {"stage": "won", "value": 82000.0, "at": (await daemon.store.outcomes_of(first))[0]["at"],
         "source": "sms:dana"}]
    assert [o["stage"] for o in await daemon.store.outcomes_of(second)] == ["booked"]
    assert (await daemon.store.conversation(second))["owner_id"] == "sam"
    assert await send_due(daemon) == []  # a command done is not confirmed

    await text_in(daemon, MOBILE, "#won lots")
    await text_in(daemon, MOBILE, "#assign nobody")
    notices = [body for _, _, _, body in await send_due(daemon)]
    assert notices == ["textback: #won lots: not an amount. Write the job value as a number, "
                       "e.g. #won 82000.",
                       "textback: #assign nobody: no such owner. There is no owner 'nobody'. "
                       "Owners: dana, sam."]


async def test_no_answer_is_sent_that_the_owner_is_not_told_of(offline_daemon):
    daemon = await daemon_with(offline_daemon, **{"reply_mail": {"domain": "r.example",
                                                                 "max_segments": 1}})
    await text_in(daemon, HOMEOWNER, "Hi")
    code = await conversation_id(daemon, HOMEOWNER)
    await send_due(daemon)
    await text_in(daemon, MOBILE, "word " * 40)
    await text_in(daemon, MOBILE, f"#{code}")
    await text_in(daemon, MOBILE, "#99999 Hello")
    handed = await send_due(daemon)
    await text_in(daemon, HOMEOWNER, "STOP")  # its confirmation is queued in the text's commit
    assert [kind for kind, *_ in await send_due(daemon)] == ["optout_confirmation", "owner_alert"]
    await text_in(daemon, MOBILE, "Are you sure?")
    handed += await send_due(daemon)
    assert [(kind, to) for kind, _, to, _ in handed] == [("owner_notice", MOBILE)] * 4
    bodies = [body for *_, body in handed]
    assert bodies[0] == ("textback: your answer to (212) 555-0123 was not sent: it is 2 segments; "
                         "the limit is 1. Shorten it and send again.")
    assert bodies[1].endswith("it had no words after the code.")
    assert bodies[2].startswith("textback: #99999 is not a conversation alerted to you")
    assert "they texted STOP" in bodies[3]
    refused = [f for f in await daemon.store.consent_record(HOMEOWNER) if f["fact"] == "text_refused"]
    assert [(f["channel"], f["body"]) for f in refused] == [("sms:dana", "Are you sure?")]


async def test_a_conversation_not_the_owners_is_never_answered_by_its_code(offline_daemon):
    daemon = await daemon_with(offline_daemon, numbers=[
        {"number": BUSINESS_NUMBER, "owner": "dana"}, {"number": RING_GROUP_NUMBER, "owner": "sam"}])
    await text_in(daemon, SECOND, "For Sam", to=RING_GROUP_NUMBER)
    sams = (await daemon.store.conversation_for(SECOND, RING_GROUP_NUMBER))["id"]
    assert await send_due(daemon) == []  # Sam takes no alert texts
    await text_in(daemon, MOBILE, f"#{sams} Hello from Dana")
    [(kind, _, to, body)] = await send_due(daemon)
    assert (kind, to) == ("owner_notice", MOBILE) and "not a conversation alerted to you" in body


async def test_the_owners_stop_turns_off_their_alert_texts_only(offline_daemon):
    daemon = await daemon_with(offline_daemon)
    await text_in(daemon, HOMEOWNER, "Hi")
    await send_due(daemon)
    await text_in(daemon, MOBILE, "STOP")
    assert await send_due(daemon) == [("owner_stop_confirmation", BUSINESS_NUMBER, MOBILE, STOP_TEXT)]
    assert await daemon.store.is_suppressed(MOBILE)
    assert not await daemon.store.is_suppressed(HOMEOWNER)
    await text_in(daemon, HOMEOWNER, "Still there?")
    assert await send_due(daemon) == []  # no alert text; the email alert is queued as ever
    alerts = await daemon.store._all("SELECT owner_id FROM alerts")
    assert [a["owner_id"] for a in alerts] == ["dana", "dana"]
    await text_in(daemon, MOBILE, "Yes, Tuesday")  # answers still reach the homeowner
    # ("yes" alone would be START: the owner's mobile is on the suppression list)
    assert await send_due(daemon) == [("owner", BUSINESS_NUMBER, HOMEOWNER, "Yes, Tuesday")]
    await text_in(daemon, MOBILE, "#99999 hi")  # a refusal while alert texts are off: by email
    notices = await daemon.store._all("SELECT subject FROM notices")
    assert [n["subject"] for n in notices] == ["no conversation #99999"]
    await text_in(daemon, MOBILE, "START")
    assert await send_due(daemon) == [("owner_notice", BUSINESS_NUMBER, MOBILE, START_TEXT)]
    await text_in(daemon, HOMEOWNER, "Hello again")
    assert [kind for kind, *_ in await send_due(daemon)] == ["owner_alert"]
    # The owner's STOP and START are in the consent ledger, but are no homeowner's opt-out:
    # webhooks and CRMs are told of neither.
    record = [fact["fact"] for fact in await daemon.store.consent_record(MOBILE)]
    assert "opted_out" in record and "opted_in" in record
    events = await daemon.store._all("SELECT type FROM events WHERE type = 'optout.changed'")
    assert events == []


async def test_a_text_that_matches_nothing_gets_one_help_reply(offline_daemon):
    daemon = await daemon_with(offline_daemon)
    await text_in(daemon, MOBILE, "Hello?")
    await text_in(daemon, MOBILE, "Hello??")  # an auto-reply loop gets no second help
    assert await send_due(daemon) == [("owner_notice", BUSINESS_NUMBER, MOBILE, HELP_TEXT)]
    await text_in(daemon, MOBILE, "HELP")  # asked for: always answered
    assert await send_due(daemon) == [("owner_notice", BUSINESS_NUMBER, MOBILE, HELP_TEXT)]
    assert await daemon.store.inbox_page("all", time.time()) == []  # never opens a conversation


async def test_a_call_from_the_owners_mobile_is_not_a_lead(offline_daemon):
    daemon = await daemon_with(offline_daemon, **{"text.delay_seconds": 0})
    now = time.time()
    call = CallFinished("own.1", BUSINESS_NUMBER, MOBILE, "Dana cell", "PJSIP/carrier-1",
                        now - 30, now, "missed", "no_answer")
    decision = await daemon.finish_call(call)
    assert (decision.send, decision.reason) == (False, "owner_mobile")
    assert await send_due(daemon) == []
    assert await daemon.store.inbox_page("all", now + 1) == []
    card = await daemon.store.scorecard(now - 60, now + 60)
    assert sum(c["missed_calls"] for c in card) == 0


def at(*when: int) -> float:
    return datetime(*when, tzinfo=EASTERN).timestamp()


@pytest.mark.parametrize("set_on", ["config", "settings page"])
async def test_the_owners_quiet_hours_hold_alert_texts_never_the_homeowners(offline_daemon, set_on):
    if set_on == "config":
        daemon = await daemon_with(offline_daemon, quiet_hours="21:00-07:00")
    else:  # stored from the settings page, over a config with none
        daemon = await daemon_with(offline_daemon)
        await daemon.store.set_alert_channels("dana", ["email", "sms"], "21:00-07:00")
    evening, morning = at(2026, 12, 7, 22, 30), at(2026, 12, 8, 7, 0)
    daemon.clock = SetClock(evening)
    daemon.attach(daemon.store, LogGateway())
    now = time.time()
    await daemon.store.record_call(
        CallRow("q.1", BUSINESS_NUMBER, HOMEOWNER, HOMEOWNER, "", now, None, now, "missed",
                "no_answer", "missed_call_text"), PlannedText("dana", "Sorry we missed you", now))
    await text_in(daemon, HOMEOWNER, "Can you call me?")
    await text_in(daemon, MOBILE, "Calling you in 5")
    handed = await send_due(daemon)
    assert [kind for kind, *_ in handed] == ["auto", "owner_alert", "owner"]
    rows = await daemon.store._all("SELECT m.kind, m.status, o.state, o.due_at FROM outbox o"
                                   " JOIN messages m ON m.id = o.message_id ORDER BY o.id")
    assert [(r["kind"], r["status"], r["state"]) for r in rows] == [
        ("auto", "sent", "sent"), ("owner_alert", "held", "pending"), ("owner", "sent", "sent")]
    assert rows[1]["due_at"] == morning
    assert [r["caller"] for r in await daemon.store.inbox_page("all", now)] == [HOMEOWNER]
    daemon.clock.moment = morning
    [item] = await daemon.store.due(morning)
    assert await daemon.store.claim_all([item])
    await daemon.outbox.send(item)
    [row] = await daemon.store._all("SELECT status FROM messages WHERE kind = 'owner_alert'")
    assert row["status"] == "sent"


async def test_an_answer_that_fails_later_is_told_by_text(offline_daemon):
    daemon = await daemon_with(offline_daemon)
    await text_in(daemon, HOMEOWNER, "Hi")
    await send_due(daemon)
    await text_in(daemon, MOBILE, "On my way")
    await daemon.store.suppress(HOMEOWNER, "sms", BUSINESS_NUMBER)  # their STOP, before the send
    assert await send_due(daemon) == [("owner", BUSINESS_NUMBER, HOMEOWNER, "On my way")]
    assert await send_due(daemon) == [
        ("owner_notice", BUSINESS_NUMBER, MOBILE,
         "textback: your answer to (212) 555-0123 was not sent: they texted STOP, so nothing "
         "more is texted to them. Call them instead.")]
    assert await daemon.store._all("SELECT 1 FROM notices") == []  # by text, not by email
    [row] = await daemon.store._all("SELECT status, author FROM messages WHERE kind = 'owner'")
    assert (row["status"], row["author"]) == ("blocked", "dana")  # threaded as Dana's reply

    # The same failure of a reply written another way (here the CLI's) is emailed, as ever.
    await daemon.store.unsuppress(HOMEOWNER, "sms", BUSINESS_NUMBER)
    conversation = await conversation_id(daemon, HOMEOWNER)
    await daemon.store.queue_owner_reply(conversation, BUSINESS_NUMBER, HOMEOWNER, "From the CLI",
                                         "cli")
    await daemon.store.suppress(HOMEOWNER, "sms", BUSINESS_NUMBER)
    await send_due(daemon)
    assert await send_due(daemon) == []
    [notice] = await daemon.store._all("SELECT subject FROM notices")
    assert notice["subject"] == f"Not sent to {HOMEOWNER}: your reply"
