"""Owner commands on a seeded database: inbox order, assign, reply, outcome."""

from __future__ import annotations

import asyncio
import json
import time

from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from textback.cli import main
from textback.store import CallRow, Store

ANSWERED, WAITING, QUIET = "+12125550131", "+12125550132", "+12125550133"


async def seeded(tmp_path):
    config = base_config(tmp_path, owners=[
        {"id": "dana", "name": "Dana Reyes", "email": "dana@example.com"},
        {"id": "sam", "name": "Sam Ortiz", "email": "sam@example.com"}])
    path = write_config(tmp_path, config)
    store = await Store.open(tmp_path / "textback.db")
    for caller in (ANSWERED, WAITING):
        record = await store.record_inbound(caller, BUSINESS_NUMBER, f"hi from {caller}", "log",
                                            None, "dana")
        if caller == ANSWERED:
            await store.queue_reply(record.conversation_id, BUSINESS_NUMBER, caller, "on it", "owner")
    await store.record_inbound(QUIET, BUSINESS_NUMBER, "hello", "log", None, "dana")
    await store.suppress(QUIET, "sms")
    await store.close()
    return path


async def cli(*args: str):
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


async def test_inbox_puts_unanswered_replies_first(tmp_path):
    path = await seeded(tmp_path)
    result = await cli("inbox", "-c", str(path), "--json")
    rows = json.loads(result.output)
    assert [r["caller"] for r in rows][:2] == [WAITING, QUIET]
    assert rows[-1]["caller"] == ANSWERED and not rows[-1]["unanswered"]
    table = (await cli("inbox", "-c", str(path))).output.splitlines()
    assert table[1].startswith("! " + WAITING)


async def test_assign_reply_and_outcome(tmp_path):
    path = await seeded(tmp_path)
    assert (await cli("assign", "-c", str(path), WAITING, "sam")).exit_code == 0
    assert (await cli("assign", "-c", str(path), WAITING, "nobody")).exit_code == 2
    assert (await cli("reply", "-c", str(path), WAITING, "See you at 10")).exit_code == 0
    refused = await cli("reply", "-c", str(path), QUIET, "Still there?")
    assert refused.exit_code == 1 and "opted out" in refused.output
    too_long = await cli("reply", "-c", str(path), WAITING, "x" * 500)
    assert too_long.exit_code == 1 and "segments" in too_long.output
    assert (await cli("outcome", "-c", str(path), WAITING, "won", "$82k")).exit_code == 0
    assert (await cli("outcome", "-c", str(path), WAITING, "booked", "5")).exit_code == 2

    store = await Store.open(tmp_path / "textback.db")
    conversation = await store.conversation_for(WAITING)
    assert conversation["owner_id"] == "sam" and conversation["status"] == "closed"
    queued = [m for m in (await store.conversation_history(conversation["id"]))["messages"]
              if m["direction"] == "out"]
    assert [(m["kind"], m["body"]) for m in queued] == [("owner", "See you at 10")]
    outcomes = await store._all("SELECT stage, value FROM outcomes")
    assert [tuple(r) for r in outcomes] == [("won", 82000.0)]
    await store.close()


async def test_test_text_is_queued_from_the_business_number_unless_opted_out(tmp_path):
    path = await seeded(tmp_path)
    sent = await cli("test-text", "-c", str(path), "(212) 555-0140")
    assert sent.exit_code == 0, sent.output
    assert "Queued a test text from +12125550100 to +12125550140" in sent.output
    assert (await cli("test-text", "-c", str(path), QUIET)).exit_code == 1  # opted out
    assert (await cli("test-text", "-c", str(path), "555-not")).exit_code == 2
    store = await Store.open(tmp_path / "textback.db")
    try:
        [item] = [i for i in await store.due(time.time() + 1) if i.recipient == "+12125550140"]
        assert item.sender == BUSINESS_NUMBER
        assert item.body.startswith("Acme Remodeling: this is a test text from textback.")
    finally:
        await store.close()


async def test_thread_says_why_a_call_was_missed_in_the_inbox_words(tmp_path):
    """`textback thread` names a missed call's reason as the inbox and the alert email do,
    not by its code."""
    path = write_config(tmp_path, base_config(tmp_path))
    store = await Store.open(tmp_path / "textback.db")
    now = time.time()
    for n, (outcome, reason) in enumerate((("missed", "queue_abandoned"), ("answered", ""))):
        await store.record_call(CallRow(f"4.{n}", BUSINESS_NUMBER, QUIET, QUIET, "", now + n,
                                        now + n, now + n + 1, outcome, reason, "too_short"))
    await store.close()
    result = await cli("thread", "-c", str(path), QUIET)
    assert result.exit_code == 0, result.output
    missed, answered = result.output.splitlines()
    assert missed.endswith(f"call         missed (they hung up while waiting in the queue) on"
                           f" {BUSINESS_NUMBER}")
    assert answered.endswith(f"call         answered on {BUSINESS_NUMBER}")
