"""Intake facts through the daemon: committed with the text that caused them, carried by the
owner's alert and the reply.received event, corrected by an owner's "#budget 80k" email
(real SMTP both ways), and a person's value never overwritten by a later extraction."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from sms_gateway.base import InboundText
from tests.hooks_receiver import schemas
from tests import test_reply_mail
from tests.test_reply_mail import QUOTED, mail, notice, send, sent_texts

running = test_reply_mail.running  # the daemon with reply mail, after "Yes please, kitchen remodel"

DOC = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"


async def _conversation(daemon) -> int:
    return (await daemon.store.conversation_for(HOMEOWNER, BUSINESS_NUMBER))["id"]


async def _reply_events(daemon) -> list[dict]:
    rows = await daemon.store._all("SELECT body FROM events WHERE type = 'reply.received'"
                                   " ORDER BY id")
    return [json.loads(row["body"]) for row in rows]


async def test_the_first_reply_is_read_stored_with_its_text_and_leads_the_alert(running):
    daemon, _, sink = running  # the homeowner wrote "Yes please, kitchen remodel"
    conversation = await _conversation(daemon)
    rows = await daemon.store.intake_history(conversation)
    assert [(r["field"], r["value"], r["source"]) for r in rows] == [
        ("project", "kitchen", "extracted"),
        ("location", "area code 212", "extracted")]  # the caller's number: the weakest hint
    assert {r["cause"] for r in rows} == {"Yes please, kitchen remodel"}
    assert rows[0]["message_id"] is not None
    alert = sink.received[0].message
    plain = alert.get_body(("plain",)).get_content()
    assert plain.splitlines()[0] == "Kitchen · area 212"
    assert "#budget 80k" in plain
    [event] = await _reply_events(daemon)
    assert event["data"]["intake"]["project"]["value"] == "kitchen"
    jsonschema.Draft202012Validator(schemas(DOC)["reply.received"]).validate(event)


async def test_an_owners_budget_command_wins_over_later_extractions(running):
    daemon, reply_to, _ = running
    await asyncio.to_thread(send, mail("dana@acme.example", reply_to, "#budget 80k\n\n" + QUOTED))
    conversation = await _conversation(daemon)
    for _ in range(100):
        if (await daemon.store.intake(conversation)).get("budget"):
            break
        await asyncio.sleep(0.05)
    assert await sent_texts(daemon) == []  # a command is never texted
    budget = (await daemon.store.intake(conversation)).get("budget")
    assert (budget.value, budget.source) == ("80000", "person")
    history = await daemon.store.intake_history(conversation)
    assert history[-1]["cause"] == "#budget 80k" and history[-1]["author"] == "email:dana"

    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER,
                                          "Actually we could do 120k, and the bath too. 11215"),
                              "log")
    merged = await daemon.store.intake(conversation)
    assert merged.value("budget") == "80000"  # the person's value stands
    assert merged.value("project") == "bath"  # the newest extraction of a field nobody set
    assert merged.value("location") == "11215"
    stored = [(r["field"], r["value"], r["source"]) for r in
              await daemon.store.intake_history(conversation)]
    assert ("budget", "120000", "extracted") in stored  # kept, shown as the extraction
    row = (await daemon.store.inbox_page("all", 0))[0]
    assert row["intake_labels"] == "Bath · $80k · 11215" and row["intake_project"] == "bath"
    last = (await _reply_events(daemon))[-1]["data"]["intake"]
    assert last["budget"]["source"] == "person" and last["budget"]["value"] == "80000"


async def test_a_command_that_cannot_be_read_changes_nothing_and_says_why(running):
    daemon, reply_to, sink = running
    await asyncio.to_thread(send, mail("dana@acme.example", reply_to,
                                       "#project spaceship\n\n" + QUOTED))
    told = await notice(sink)
    assert "not changed" in told["Subject"]
    assert "not a known project type" in told.get_body(("plain",)).get_content()
    conversation = await _conversation(daemon)
    assert (await daemon.store.intake(conversation)).value("project") == "kitchen"
