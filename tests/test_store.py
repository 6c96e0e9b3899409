"""The SQLite store: the outbox can never send a row twice, and nothing accepted is lost."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from textback.store import REPEAT_WITHOUT_ID_SECONDS, CallRow, PlannedText, Store
from tests.store_helpers import execute, outbox_states


def call(linkedid="1700000000.1", caller="+12125550123", outcome="missed") -> CallRow:
    now = time.time()
    return CallRow(linkedid=linkedid, business_number="+12125550100", caller_raw=caller,
                   caller=caller, caller_name="", started_at=now - 10, answered_at=None,
                   ended_at=now, outcome=outcome, reason="no_answer", decision="missed_call_text")


async def test_a_missed_call_queues_one_text_due_later(store):
    outbox_id = await store.record_call(call(), PlannedText("dana", "Hi", time.time() + 60))
    assert outbox_id is not None
    assert await store.due(time.time()) == []
    [item] = await store.due(time.time() + 61)
    assert (item.sender, item.recipient, item.body) == ("+12125550100", "+12125550123", "Hi")


async def test_the_same_call_twice_queues_nothing_more(store):
    first = await store.record_call(call(), PlannedText("dana", "Hi", 0))
    second = await store.record_call(call(), PlannedText("dana", "Hi", 0))
    assert first is not None and second is None
    assert len(await store.due(time.time())) == 1


async def test_a_row_can_be_claimed_only_once(store):
    await store.record_call(call(), PlannedText("dana", "Hi", 0))
    [item] = await store.due(time.time())
    assert await store.claim_all([item]) == [item]
    assert await store.claim_all([item]) == []
    assert await store.due(time.time()) == []


async def test_a_row_interrupted_while_sending_is_never_resent(tmp_path):
    s = await Store.open(tmp_path / "t.db")
    await s.record_call(call(), PlannedText("dana", "Hi", 0))
    [item] = await s.due(time.time())
    await s.claim_all([item])
    await s.close()  # the process dies here, before the gateway answered
    s = await Store.open(tmp_path / "t.db")
    assert await s.recover_interrupted() == [item.id]
    assert await s.due(time.time() + 3600) == []
    assert await outbox_states(s) == {"unknown": 1}
    await s.close()


async def test_retry_puts_the_row_back_and_sent_is_final(store):
    await store.record_call(call(), PlannedText("dana", "Hi", 0))
    [item] = await store.due(time.time())
    await store.claim_all([item])
    await store.mark_retry(item, time.time() - 1, "503")
    [again] = await store.due(time.time())
    assert again.attempts == 1
    await store.claim_all([again])
    await store.mark_all_sent([(again, "abc")], "log")
    assert await outbox_states(store) == {"sent": 1}
    assert await store.claim_all([again]) == []


async def test_inbound_text_is_stored_with_its_alert_and_deduplicated(store):
    await store.record_call(call(), PlannedText("dana", "Hi", 0))
    first = await store.record_inbound("+12125550123", "+12125550100", "Yes!", "twilio", "SM1", "dana")
    again = await store.record_inbound("+12125550123", "+12125550100", "Yes!", "twilio", "SM1", "dana")
    assert not first.duplicate and again.duplicate
    assert again.message_id == first.message_id
    assert await store.due_mail("alerts", time.time()) == [first.alert_id]
    kinds = [row["kind"] for row in await store.timeline("+12125550123")]
    assert kinds == ["call", "text_out", "text_in", "alert"]


async def test_a_text_without_an_id_repeated_at_once_is_stored_once(store):
    caller, number = "+12125550123", "+12125550100"
    first = await store.record_inbound(caller, number, "HELP", "asterisk", None, "dana")
    again = await store.record_inbound(caller, number, "HELP", "asterisk", None, "dana")
    assert not first.duplicate and again.duplicate and again.alert_id == first.alert_id
    # the same words again after the caller said something else are a new text
    for body in ("STOP", "START", "STOP"):
        assert not (await store.record_inbound(caller, number, body, "asterisk", None,
                                               "dana")).duplicate
    # ... and so are the same words once REPEAT_WITHOUT_ID_SECONDS have passed
    await execute(store, "UPDATE messages SET created_at = created_at - ?",
                            (REPEAT_WITHOUT_ID_SECONDS + 1,))
    assert not (await store.record_inbound(caller, number, "STOP", "asterisk", None,
                                           "dana")).duplicate
    assert len(await store.due_mail("alerts", time.time())) == 5


async def test_texts_with_ids_are_told_apart_by_id_not_words(store):
    caller, number = "+12125550123", "+12125550100"
    ids = ["c1@carrier 1 MESSAGE", "c1@carrier 2 MESSAGE", "c1@carrier 1 MESSAGE"]
    records = [await store.record_inbound(caller, number, "Yes", "asterisk", i, "dana") for i in ids]
    assert [r.duplicate for r in records] == [False, False, True]


async def test_a_text_from_a_stranger_opens_a_conversation(store):
    record = await store.record_inbound("+12125550199", "+12125550100", "Hello?", "asterisk",
                                        None, "dana")
    conversation = await store.conversation(record.conversation_id)
    assert conversation["owner_id"] == "dana"
    [row] = await store.inbox()
    assert row["last_reply"] == "Hello?"


async def test_a_newer_schema_is_refused(tmp_path):
    s = await Store.open(tmp_path / "t.db")
    await s._db.execute("PRAGMA user_version = 99")
    await s.close()
    with pytest.raises(RuntimeError, match="newer"):
        await Store.open(tmp_path / "t.db")


async def test_a_first_version_database_is_upgraded_in_place(tmp_path):
    import aiosqlite

    from textback.store import MIGRATIONS

    async with aiosqlite.connect(tmp_path / "t.db") as db:
        for statement in filter(str.strip, MIGRATIONS[0].split(";")):
            await db.execute(statement)
        await db.execute("INSERT INTO calls (linkedid, business_number, caller_raw, caller_name, started_at,"
                         " ended_at, outcome, reason, decision) VALUES ('0.1', '+12125550100', '+12125550123',"
                         " '', 1, 2, 'missed', 'no_answer', 'missed_call_text')")
        await db.execute("PRAGMA user_version = 1")
        await db.commit()
    s = await Store.open(tmp_path / "t.db")
    try:
        await s.record_call(replace(call("0.2"), route="r1-12125550100"), None, owner_id="dana")
        rows = {r["linkedid"]: r["route"] for r in await s.calls(since=0)}
        assert rows == {"0.1": "", "0.2": "r1-12125550100"}
    finally:
        await s.close()


async def test_the_dedupe_window_includes_its_first_instant(store):
    assert await store.record_call(call("4.1"), PlannedText("dana", "Hi", 0), dedupe_since=0)
    [(texted_at,)] = await store._all("SELECT created_at FROM messages")
    # A window that starts exactly when the last text was queued still holds it...
    assert await store.record_call(call("4.2"), PlannedText("dana", "Hi", 0), dedupe_since=texted_at) is None
    # ...and one that starts a microsecond later does not.
    assert await store.record_call(call("4.3"), PlannedText("dana", "Hi", 0), dedupe_since=texted_at + 1e-6)


async def test_a_miss_in_an_open_conversation_joins_the_thread_without_a_text(store):
    hour_ago = time.time() - 3600
    record = await store.record_inbound("+12125550123", "+12125550100", "Can you quote a deck?",
                                        "log", None, "dana")
    assert await store.record_call(call("3.1"), PlannedText("dana", "Hi", 0), dedupe_since=hour_ago) is None
    rows = {r["linkedid"]: r for r in await store.calls(since=0)}
    assert rows["3.1"]["decision"] == "open_conversation"
    assert rows["3.1"]["conversation_id"] == record.conversation_id
    # Once the conversation is closed (won, lost, spam), a new miss gets its text again.
    await store.record_outcome(record.conversation_id, "won", 12000, "test")
    assert await store.record_call(call("3.2"), PlannedText("dana", "Hi", 0), dedupe_since=hour_ago)
    # And a conversation quiet for longer than the window is no longer a reason to hold back.
    assert await store.record_call(call("3.3", caller="+12125550124"), None, owner_id="dana") is None
    assert await store.record_call(call("3.4", caller="+12125550124"), PlannedText("dana", "Hi", 0),
                                   dedupe_since=time.time() + 1)


async def test_calls_listing_shows_each_calls_own_text(store):
    await store.record_call(call("1.1", outcome="missed"), PlannedText("dana", "Hi", 0))
    await store.record_call(call("1.2", outcome="answered"), None, owner_id="dana")
    rows = {r["linkedid"]: r for r in await store.calls(since=0)}
    assert rows["1.1"]["text_state"] == "pending"
    assert rows["1.2"]["text_state"] is None


async def test_a_second_miss_within_the_dedupe_window_queues_nothing(store):
    since = time.time() - 24 * 3600
    first = await store.record_call(call("2.1"), PlannedText("dana", "Hi", 0), dedupe_since=since)
    second = await store.record_call(call("2.2"), PlannedText("dana", "Hi", 0), dedupe_since=since)
    later = await store.record_call(call("2.3"), PlannedText("dana", "Hi", 0),
                                    dedupe_since=time.time() + 1)
    assert first is not None and second is None and later is not None
    rows = {r["linkedid"]: r for r in await store.calls(since=0)}
    assert rows["2.2"]["decision"] == "deduplicated" and rows["2.2"]["conversation_id"]


def test_a_store_left_open_never_keeps_the_process_from_exiting(tmp_path):
    """A crash that skips Store.close once hung the interpreter at exit (aiosqlite's worker thread)."""
    script = ("import asyncio, sys\nfrom textback.store import Store\n"
              f"store = asyncio.run(Store.open({str(tmp_path / 'left-open.db')!r}))\nprint('done')\n")
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=15, cwd=Path(__file__).parent.parent)
    assert finished.returncode == 0 and finished.stdout == "done\n", finished.stderr
