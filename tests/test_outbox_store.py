"""The outbox rows behind deadlines: oldest first, retries brought forward, expiry claims the row."""

from __future__ import annotations

import sqlite3
import time


from tests.test_store import call
from textback.store import MIGRATIONS, PlannedText, Store
from tests.store_helpers import outbox_states


async def test_due_texts_come_oldest_first_by_when_they_were_first_due(store):
    now = time.time()
    for index, first_due in enumerate((now - 30, now - 90, now - 60)):
        await store.record_call(call(f"1700000000.{index}", f"+1212555010{index}"),
                                PlannedText("dana", "Hi", first_due))
    [oldest, *_] = await store.due(now)
    assert await store.claim_all([oldest])
    await store.mark_retry(oldest, now - 1, "HTTP 503")  # due again before the others: still first
    assert [item.recipient for item in await store.due(now)] == [
        "+12125550101", "+12125550102", "+12125550100"]
    assert (await store.due(now))[0].first_due_at == now - 90


async def test_the_link_coming_back_makes_only_retries_due_now(store):
    now = time.time()
    await store.record_call(call("1.1", "+12125550101"), PlannedText("dana", "Hi", now))
    await store.record_call(call("1.2", "+12125550102"), PlannedText("dana", "Later", now + 600))
    [failed] = await store.due(now)
    assert await store.claim_all([failed])
    await store.mark_retry(failed, now + 40, "not logged in to AMI")
    assert await store.bring_forward(now + 1) == 1
    assert [item.recipient for item in await store.due(now + 1)] == ["+12125550101"]  # not "Later"


async def test_an_expired_text_can_no_longer_be_claimed_nor_a_claimed_one_expire(store):
    now = time.time()
    await store.record_call(call("2.1", "+12125550101"), PlannedText("dana", "Hi", now))
    await store.record_call(call("2.2", "+12125550102"), PlannedText("dana", "Hi", now))
    first, second = await store.due(now)
    assert await store.expire(first, "http")
    assert not await store.claim_all([first])
    assert await store.claim_all([second])
    assert not await store.expire(second, "http")
    assert await outbox_states(store) == {"expired": 1, "sending": 1}
    facts = await store.text_facts(first.message_id)
    assert (facts["caller"], facts["owner_id"], facts["call_reason"]) == ("+12125550101", "dana",
                                                                          "no_answer")


async def test_rows_queued_before_the_upgrade_keep_their_due_time_as_first_due(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS[:2], start=1):  # the schema before deadlines
        old.executescript(script)
        old.execute(f"PRAGMA user_version = {number}")
    old.execute("INSERT INTO conversations (caller, business_number, owner_id, created_at,"
                " updated_at) VALUES ('+12125550101', '+12125550100', 'dana', 1, 1)")
    old.execute("INSERT INTO messages (conversation_id, direction, body, status, created_at)"
                " VALUES (1, 'out', 'Hi', 'queued', 1)")
    old.execute("INSERT INTO outbox (message_id, sender, recipient, due_at, attempts,"
                " idempotency_key, updated_at) VALUES (1, '+12125550100', '+12125550101', 1234.5,"
                " 3, 'k', 1)")
    old.commit()
    old.close()
    store = await Store.open(path)
    try:
        [item] = await store.due(2000)
        assert (item.due_at, item.first_due_at, item.attempts) == (1234.5, 1234.5, 3)
        assert await store.expire(item, "asterisk")
    finally:
        await store.close()


async def _held_summary(store, caller: str) -> tuple[float | None, int]:
    row = await store._one("SELECT held_until, version FROM conversations WHERE caller = ?", (caller,))
    return row["held_until"], row["version"]


async def test_the_conversation_says_a_text_is_held_until_it_is_sent_failed_or_expired(store):
    now = time.time()
    until = now + 36000
    for index, caller in enumerate(("+12125550101", "+12125550102", "+12125550103")):
        await store.record_call(call(f"3.{index}", caller), PlannedText("dana", "Hi", now))
    sent, failed, expired = await store.due(now)
    assert await store.claim_all([sent, failed, expired])
    for item in (sent, failed, expired):
        _, before = await _held_summary(store, item.recipient)
        assert await store.hold(item, until, "until tomorrow 8:00, their quiet hours")
        held, after = await _held_summary(store, item.recipient)
        assert held == until and after > before  # an open inbox page refreshes the row
    assert await store.inbox_page("all", now) != []
    assert {row["held_until"] for row in await store.inbox_page("all", now)} == {until}
    [sent, failed, expired] = await store.due(until)
    assert await store.claim_all([sent, failed])

    _, before = await _held_summary(store, sent.recipient)
    await store.mark_all_sent([(sent, "gw-1")], "http")
    held, after = await _held_summary(store, sent.recipient)
    assert held is None and after > before

    await store.mark_final(failed, "failed", "http", "HTTP 400")
    assert (await _held_summary(store, failed.recipient))[0] is None

    assert await store.expire(expired, "http")
    assert (await _held_summary(store, expired.recipient))[0] is None
    assert [row["held_until"] for row in await store.inbox(10)] == [None, None, None]


async def test_a_conversation_stays_held_while_another_of_its_texts_is(store):
    now = time.time()
    until = now + 36000
    await store.record_call(call("4.1", "+12125550101"), PlannedText("dana", "Hi", now))
    await store.record_call(call("4.2", "+12125550101"), PlannedText("dana", "Hi again", now))
    first, second = await store.due(now)
    assert await store.claim_all([first, second])
    assert await store.hold(first, until, "quiet hours")
    assert await store.hold(second, until, "quiet hours")
    first, second = await store.due(until)
    assert await store.claim_all([first])
    await store.mark_final(first, "blocked", "http", "opted out")
    assert (await _held_summary(store, "+12125550101"))[0] == until
    assert await store.claim_all([second])
    await store.mark_all_sent([(second, None)], "http")
    assert (await _held_summary(store, "+12125550101"))[0] is None
