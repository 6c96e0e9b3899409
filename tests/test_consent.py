"""The consent ledger: append-only in the database, one fact per change in that change's
transaction, one number's record printed and exported, and never pruned."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time

import pytest
from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from sms_gateway.base import InboundText
from sms_gateway.log import LogGateway
from textback.core import consent
from textback.cli import main
from textback.core.replies import Verdict
from textback.pruning import prune
from textback.store import CallRow, PlannedText
from textback.core.tracker import CallFinished
from tests.store_helpers import REFUSED, execute, on_postgres, refuse_inserts

SECOND_NUMBER = "+12125550109"


def missed(linkedid: str, caller: str = HOMEOWNER, did: str = BUSINESS_NUMBER) -> CallFinished:
    now = time.time()
    return CallFinished(linkedid, did, caller, "", "PJSIP/carrier-1", now - 20, now, "missed",
                        "no_answer")


async def send_due(daemon) -> None:
    for item in await daemon.store.due(time.time() + 3600):  # the automatic text waits a little
        if await daemon.store.claim_all([item]):
            await daemon.outbox.send(item)


def facts(record: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["fact"], r["kind"], r["channel"]) for r in record]


async def test_update_and_delete_of_the_ledger_are_refused(store):
    await store.suppress(HOMEOWNER, "cli")
    statements = ["UPDATE consent_ledger SET channel = 'sms'", "DELETE FROM consent_ledger",
                  "UPDATE consent_ledger SET at = 0 WHERE fact = 'opted_out'"]
    if on_postgres(store):  # SQLite has no TRUNCATE; PostgreSQL's skips the row triggers
        statements.append("TRUNCATE consent_ledger")
    for statement in statements:
        with pytest.raises(REFUSED, match="append-only"):
            await execute(store, statement)
    [row] = await store.consent_record(HOMEOWNER)
    assert (row["fact"], row["channel"]) == ("opted_out", "cli")


async def test_a_fact_is_lost_with_the_change_it_records(store):
    """The fact shares the transaction: a change that fails leaves no fact behind."""
    now = time.time()
    call = CallRow("7.1", BUSINESS_NUMBER, HOMEOWNER, HOMEOWNER, "", now, None, now, "missed",
                   "no_answer", "missed_call_text")
    await store.record_call(call, PlannedText("dana", "Hi", now))
    before = await store.consent_record(HOMEOWNER)
    # an outbox that refuses the row fails the transaction after the message and its fact
    await refuse_inserts(store, "outbox", "outbox refused")
    with pytest.raises(Exception, match="outbox refused"):
        await store.record_call(CallRow("7.2", BUSINESS_NUMBER, HOMEOWNER, HOMEOWNER, "", now,
                                        None, now, "missed", "no_answer", "missed_call_text"),
                                PlannedText("dana", "Hi again", now))
    assert await store.consent_record(HOMEOWNER) == before


async def test_one_lead_from_the_call_through_stop_and_start(offline_daemon, backend_storage):
    daemon = await offline_daemon(**{"numbers": [{"number": BUSINESS_NUMBER, "owner": "dana"},
                                                 {"number": SECOND_NUMBER, "owner": "dana"}]},
                                  **backend_storage, send_with=LogGateway())
    assert on_postgres(daemon.store) is bool(backend_storage)
    await daemon.finish_call(missed("1.1"))
    await send_due(daemon)
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "please stop texting me"),
                              "log")
    await send_due(daemon)
    # Revoke-all: every kind of text, from every business number, is refused from now on.
    conversation = (await daemon.store.conversation_for(HOMEOWNER, BUSINESS_NUMBER))["id"]
    await daemon.store.queue_reply(conversation, BUSINESS_NUMBER, HOMEOWNER, "Still there?",
                                   "owner", channel="email:dana")
    await daemon.finish_call(missed("1.2", did=SECOND_NUMBER))
    await send_due(daemon)
    await daemon.receive_text(InboundText(HOMEOWNER, SECOND_NUMBER, "START"), "log")
    await send_due(daemon)

    record = await daemon.store.consent_record(HOMEOWNER)
    assert facts(record) == [
        ("call", "", "ami"), ("text_queued", "auto", "automatic"), ("text_sent", "auto", "log"),
        ("keyword", "STOP (free text)", "sms"), ("opted_out", "", "sms"),
        ("text_queued", "optout_confirmation", "sms"),
        ("text_sent", "optout_confirmation", "log"),
        ("text_queued", "owner", "email:dana"),
        ("call", "", "ami"), ("text_refused", "auto", ""),
        ("text_refused", "owner", "log"),
        ("keyword", "START", "sms"), ("opted_in", "", "sms"),
        ("text_queued", "optin_confirmation", "sms"), ("text_sent", "optin_confirmation", "log"),
    ]
    first_call = json.loads(record[0]["detail"])
    assert first_call["linkedid"] == "1.1" and first_call["outcome"] == "missed"
    assert record[0]["business_number"] == BUSINESS_NUMBER
    auto = json.loads(record[1]["detail"])
    assert auto["template"] == "missed_call" and "Acme Remodeling" in record[1]["body"]
    assert record[2]["body"] == record[1]["body"]  # the exact words that went
    assert record[3]["body"] == "please stop texting me"
    assert record[8]["business_number"] == SECOND_NUMBER
    assert json.loads(record[9]["detail"])["linkedid"] == "1.2"
    assert record[10]["body"] == "Still there?"
    assert [r["at"] for r in record] == sorted(r["at"] for r in record)


@pytest.mark.parametrize("channel", ["cli", "web:dana", "api:crm"])
async def test_each_opt_out_channel_is_recorded(store, channel):
    assert await store.suppress(HOMEOWNER, channel)
    assert not await store.suppress(HOMEOWNER, "sms")  # already out: no second fact
    assert await store.unsuppress(HOMEOWNER, channel)
    assert facts(await store.consent_record(HOMEOWNER)) == [("opted_out", "", channel),
                                                             ("opted_in", "", channel)]


async def test_retention_never_prunes_the_ledger(store):
    old = time.time() - 6 * 365 * 86400
    call = CallRow("3.1", BUSINESS_NUMBER, HOMEOWNER, HOMEOWNER, "", old, None, old, "missed",
                   "no_answer", "missed_call_text")
    await store.record_call(call, PlannedText("dana", "Hi from long ago", old))
    await execute(store, "UPDATE messages SET created_at = ?", (old,))
    await execute(store, "UPDATE outbox SET state = 'sent'")
    pruned = await prune(store, 12, "America/New_York")
    assert pruned.deleted["calls"] == 1 and pruned.deleted["messages"] == 1
    assert facts(await store.consent_record(HOMEOWNER)) == [("call", "", "ami"),
                                                             ("text_queued", "auto", "automatic")]


def test_the_record_renders_in_time_order_in_each_format():
    rows = [
        {"id": 2, **dict(zip(consent.COLUMNS, consent.Fact(
            consent.OPTED_OUT, HOMEOWNER, 1_800_000_100.0, BUSINESS_NUMBER, "sms").row()))},
        {"id": 1, **dict(zip(consent.COLUMNS, consent.Fact(
            consent.KEYWORD, HOMEOWNER, 1_800_000_100.0, BUSINESS_NUMBER, "sms", "STOP",
            "=STOP,\n").row()))},
    ]
    table = consent.render(rows, "table", "America/Chicago")
    assert table.index("STOP received by sms") < table.index("opted out through sms")
    assert "2027-01-15T02:01:40-06:00" in table
    parsed = list(csv.reader(io.StringIO(consent.render(rows, "csv", "UTC"))))
    assert parsed[0][:3] == ["time", "at", "fact"]
    assert [r[2] for r in parsed[1:]] == ["keyword", "opted_out"]
    assert parsed[1][7] == "'=STOP,\n"  # quoted by the CSV writer, never a formula
    assert parsed[1][3] == HOMEOWNER
    as_json = json.loads(consent.render(rows, "json", "UTC"))
    assert [r["fact"] for r in as_json] == ["keyword", "opted_out"]
    assert as_json[0]["body"] == "=STOP,\n"  # the exact words
    with pytest.raises(ValueError):
        consent.render(rows, "xml", "UTC")
    with pytest.raises(ValueError):
        consent.Fact("gossip", HOMEOWNER, 0.0)


def test_textback_consent_prints_one_numbers_record(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path))

    runner = CliRunner()
    for number in ("212-555-0123", "+12125550124"):  # `textback optout add`, the CLI channel
        added = runner.invoke(main, ["optout", "add", "--config", str(path), number])
        assert added.exit_code == 0, added.output
    shown = runner.invoke(main, ["consent", "--config", str(path), "(212) 555-0123"])
    assert shown.exit_code == 0, shown.output
    assert "opted out through cli" in shown.output and "1 fact(s)" in shown.output
    as_csv = runner.invoke(main, ["consent", "--config", str(path), "--format", "csv",
                                  f"<sip:{HOMEOWNER}@carrier.example>"])
    assert as_csv.exit_code == 0, as_csv.output
    assert [row[3] for row in csv.reader(io.StringIO(as_csv.output))][1:] == [HOMEOWNER]
    bad = runner.invoke(main, ["consent", "--config", str(path), "anonymous"])
    assert bad.exit_code != 0 and "not a valid phone number" in bad.output


async def test_each_owner_path_is_named_with_the_words_it_queued(offline_daemon, backend_storage,
                                                                 tmp_path):
    """An owner's answers by email, the CLI and their own phone (the SMS relay) through each
    path's own entry, each kept as queued by that path and then as sent (the inbox's and the
    API's: tests/test_revoke_all.py and tests/test_api.py)."""
    mobile = "+19175550188"
    daemon = await offline_daemon(**{"owners": [
        {"id": "dana", "name": "Dana Reyes", "email": "dana@example.com",
         "alerts": {"channels": ["email", "sms"], "sms": mobile}}]}, **backend_storage,
        send_with=LogGateway())
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "Deck quote?", "m1"), "log")
    await send_due(daemon)  # the alert text to Dana's phone: the relay answers it
    conversation = (await daemon.store.conversation_for(HOMEOWNER, BUSINESS_NUMBER))["id"]
    await daemon.owner_reply({"conversation_id": conversation, "caller": HOMEOWNER,
                              "owner_id": "dana", "business_number": BUSINESS_NUMBER},
                             Verdict("text", text="By email: Tuesday?"))
    replied = await asyncio.to_thread(CliRunner().invoke, main, [
        "reply", "-c", str(tmp_path / "config.yaml"), "(212) 555-0123", "By the CLI: 10 am?"])
    assert replied.exit_code == 0, replied.output
    await daemon.receive_text(InboundText(mobile, BUSINESS_NUMBER, "From my phone: see you",
                                          "m2"), "log")
    await send_due(daemon)
    owner_texts = [(r["fact"], r["channel"], r["body"]) for r in
                   await daemon.store.consent_record(HOMEOWNER) if r["kind"] == "owner"]
    assert owner_texts == [
        ("text_queued", "email:dana", "By email: Tuesday?"),
        ("text_queued", "cli", "By the CLI: 10 am?"),
        ("text_queued", "sms:dana", "From my phone: see you"),
        ("text_sent", "log", "By email: Tuesday?"),
        ("text_sent", "log", "By the CLI: 10 am?"),
        ("text_sent", "log", "From my phone: see you")]


async def test_a_repeated_stop_is_recorded_but_neither_waits_nor_alerts_again(offline_daemon,
                                                                              backend_storage):
    daemon = await offline_daemon(**backend_storage, send_with=LogGateway())
    store = daemon.store

    async def text(body: str, gateway_id: str) -> None:
        await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, body,
                                              gateway_id=gateway_id), "log")
        await send_due(daemon)

    async def waiting() -> tuple[list[int], list[int]]:
        """The conversations the inbox's Waiting view and the digest list."""
        now = time.time() + 1
        return ([row["id"] for row in await store.inbox_page("waiting", now)],
                [row["conversation_id"] for row in await store.waiting_replies(now)])

    async def alerts() -> int:
        return len((await store.thread(conversation))["alerts"])

    await daemon.finish_call(missed("4.1"))
    await send_due(daemon)
    conversation = (await store.conversation_for(HOMEOWNER, BUSINESS_NUMBER))["id"]
    await text("STOP", "in-1")
    assert await waiting() == ([], []) and await alerts() == 1  # the owner hears of the opt-out
    await text("stop texting me", "in-2")  # already out: kept, nobody told, nothing waits
    await text("STOP", "in-3")
    assert await waiting() == ([], []) and await alerts() == 1
    # An ordinary text from the opted-out number waits, and a STOP after it ends that again.
    await text("Actually, call me about the deck", "in-4")
    assert await waiting() == ([conversation], [conversation]) and await alerts() == 2
    await text("Stop", "in-5")
    assert await waiting() == ([], []) and await alerts() == 2
    # HELP and START keep their answers, their alert, and wait as any text does.
    await text("HELP", "in-6")
    assert await waiting() == ([conversation], [conversation]) and await alerts() == 3
    await text("START", "in-7")
    assert await alerts() == 4

    keywords = [(r["kind"], r["body"]) for r in await store.consent_record(HOMEOWNER)
                if r["fact"] == consent.KEYWORD]
    assert keywords == [("STOP", "STOP"), ("STOP (free text)", "stop texting me"),
                        ("STOP", "STOP"), ("STOP", "Stop"), ("HELP", "HELP"), ("START", "START")]
    sent = [r["kind"] for r in await store.consent_record(HOMEOWNER)
            if r["fact"] == consent.TEXT_SENT]
    # The help text to a number still opted out is blocked at sending, as every text is.
    assert sent == ["auto", "optout_confirmation", "optin_confirmation"]
    bodies = [m["body"] for m in (await store.thread(conversation))["messages"]
              if m["direction"] == "in"]
    assert bodies == ["STOP", "stop texting me", "STOP", "Actually, call me about the deck",
                      "Stop", "HELP", "START"]  # every text is in the thread
    replies = [e for e in await store._all("SELECT type FROM events")
               if e["type"] == "reply.received"]
    assert len(replies) == 4  # the repeated STOPs are nobody's news
