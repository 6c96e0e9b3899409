"""The outbox rows behind deadlines: oldest first, retries brought forward, expiry claims the row."""

from __future__ import annotations

import dataclasses
import sqlite3
import time


from tests.test_store import call
from textback.core.fleet import Senders, senders_through
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


async def test_a_daemon_claims_only_the_texts_from_the_numbers_of_the_pbxs_it_holds(store):
    """The asterisk gateway in a fleet: texts from PBX north's number and from PBX south's; a
    daemon holding north alone reads, claims and recovers north's alone, even when asked to
    claim south's by id (a lease gone between the read and the claim)."""
    now = time.time()
    north, south = "+12125550100", "+13125550100"
    for linkedid, business, caller in (("5.1", north, "+12125550101"),
                                       ("5.2", south, "+12125550102"),
                                       ("5.3", north, "+12125550103")):
        await store.record_call(dataclasses.replace(call(linkedid, caller),
                                                    business_number=business),
                                PlannedText("dana", "Hi", now - 1))
    pbx_numbers = [[north], [south]]
    holds_north = senders_through(pbx_numbers, {0})
    holds_south = senders_through(pbx_numbers, {1})
    holds_none = senders_through(pbx_numbers, set())
    assert holds_north == Senders(None, (south,))  # the first PBX: any number but the others'
    assert holds_south == Senders((south,))
    assert [item.recipient for item in await store.due(now, senders=holds_north)] == [
        "+12125550101", "+12125550103"]
    assert [item.sender for item in await store.due(now, senders=holds_south)] == [south]
    assert await store.due(now, senders=holds_none) == []
    assert await store.next_due(holds_none) is None
    assert await store.next_due(holds_south) == now - 1
    every = await store.due(now)
    assert len(every) == 3
    taken = await store.claim_all(every, holds_north)  # south's text is not this daemon's to send
    assert [item.sender for item in taken] == [north, north]
    assert await store.claim_all(every, holds_none) == []
    assert await outbox_states(store) == {"sending": 2, "pending": 1}
    assert await store.due(now, senders=holds_north) == []
    [south_text] = await store.due(now, senders=holds_south)
    assert await store.claim_all([south_text], holds_south) == [south_text]
    # The lease of north went: its sends are settled, south's go on.
    marked = await store.recover_interrupted(mine_too=True, senders=senders_through(pbx_numbers, {0}))
    assert sorted(marked) == sorted(item.id for item in taken)
    assert await outbox_states(store) == {"unknown": 2, "sending": 1}
    assert await store.recover_interrupted(mine_too=True, senders=holds_none) == []
    assert await store.recover_interrupted(mine_too=True, senders=holds_south) == [south_text.id]
