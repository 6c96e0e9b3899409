"""The one record of who waits for the company's answer (textback/core/waiting.py), on both
backends: every change that starts or ends waiting keeps it right, and every reader (the
inbox's Waiting view, the digest, escalation) sees the same conversations."""

from __future__ import annotations

import time

import time_machine

from lab.configs import BUSINESS_NUMBER
from textback.core.delivery import OPTOUT_CONFIRMATION
from textback.core.inbound import KeywordAnswer
from textback.core.waiting import REPORTED_DAYS
from textback.store import CallRow, Notice, PlannedText

CALLER = "+12125550123"
OTHER = "+12125550177"


def missed(linkedid: str, caller: str = CALLER) -> CallRow:
    now = time.time()
    return CallRow(linkedid=linkedid, business_number=BUSINESS_NUMBER, caller_raw=caller,
                   caller=caller, caller_name="", started_at=now - 10, answered_at=None,
                   ended_at=now, outcome="missed", reason="no_answer", decision="missed_call_text")


async def text_in(store, body: str = "Kitchen, please call", caller: str = CALLER, **more):
    return await store.record_inbound(caller, BUSINESS_NUMBER, body, "log", None, "dana", **more)


async def waiting(store, now: float | None = None) -> set[int]:
    """The waiting conversations as each reader sees them; they must agree."""
    now = time.time() if now is None else now
    viewed = {row["id"] for row in await store.inbox_page("waiting", now, limit=1000)}
    reported = {row["conversation_id"] for row in await store.waiting_replies(now + 1)}
    assert viewed == reported, (viewed, reported)
    return viewed


async def test_a_text_waits_until_an_owner_answers_by_any_path_not_a_robot(store):
    for path in ("web:dana", "api:crm", "email", "cli", "owner_phone"):
        record = await text_in(store, f"Call me ({path})")
        assert await waiting(store) == {record.conversation_id}
        # A text a robot sends (an automatic text, a keyword's answer) is no answer.
        await store.queue_reply(record.conversation_id, BUSINESS_NUMBER, CALLER, "Got it", "auto")
        assert await waiting(store) == {record.conversation_id}
        assert await store.queue_owner_reply(record.conversation_id, BUSINESS_NUMBER, CALLER,
                                             "Calling you now", path, author="dana")
        assert await waiting(store) == set()
        row = await store.conversation(record.conversation_id)
        assert (row["unanswered"], row["waiting_since"], row["last_reply_id"]) == (
            0, None, record.message_id)


async def test_the_latest_text_is_the_one_reported_and_a_new_one_resets_its_escalations(store):
    first = await text_in(store, "Hello?")
    notice = Notice("Boss", "boss@example.com", "Unanswered", "body")
    assert await store.record_escalation(first.message_id, 1, "boss", notice) is not None
    [row] = await store.waiting_replies(time.time() + 1)
    assert (row["message_id"], row["escalated"], row["listed"]) == (first.message_id, 1, "Hello?")
    assert await store.waiting_replies(time.time() + 1, escalated_fewer_than=1) == []
    second = await text_in(store, "Anyone there?")
    [row] = await store.waiting_replies(time.time() + 1, escalated_fewer_than=1)
    assert (row["message_id"], row["escalated"], row["escalated_at"]) == (second.message_id, 0, None)
    conversation = await store.conversation(first.conversation_id)
    assert conversation["waiting_since"] < row["created_at"]  # waiting since the first


async def test_done_ends_waiting_a_call_does_not_bring_it_back_a_text_does(store):
    record = await text_in(store)
    await store.mark_done(record.conversation_id)
    assert await waiting(store) == set()
    await store.record_call(missed("2.1"), PlannedText("dana", "Sorry we missed you", 0))
    assert (await store.conversation(record.conversation_id))["status"] == "open"
    assert await waiting(store) == set()
    await text_in(store, "Still there?")
    assert await waiting(store) == {record.conversation_id}
    # An outcome that closes the conversation ends it too; one that keeps it open does not.
    await store.record_outcome(record.conversation_id, "booked", None, "test")
    assert await waiting(store) == {record.conversation_id}
    await store.record_outcome(record.conversation_id, "won", 82000, "test")
    assert await waiting(store) == set()


async def test_a_snoozed_conversation_is_neither_shown_nor_reported_until_it_wakes(store):
    record = await text_in(store)
    now = time.time()
    await store.snooze(record.conversation_id, now + 3600)
    assert await waiting(store, now) == set()
    assert await store.waiting_replies(now + 60, now) == []  # nor escalated meanwhile
    assert await waiting(store, now + 3601) == {record.conversation_id}


async def test_an_opt_out_ends_waiting_by_stop_or_any_other_path_and_a_later_text_waits(store):
    record = await text_in(store)
    stop = KeywordAnswer("out", "You are opted out.", OPTOUT_CONFIRMATION)
    await text_in(store, "STOP", keyword="STOP", answer=stop)
    assert await waiting(store) == set()
    await text_in(store, "Sorry, I still need the quote")
    assert await waiting(store) == {record.conversation_id}
    other = await text_in(store, "Hi", caller=OTHER)
    assert await waiting(store) == {record.conversation_id, other.conversation_id}
    assert await store.suppress(OTHER, "web:dana")  # the inbox's or the CLI's opt-out
    assert await waiting(store) == {record.conversation_id}


async def test_retention_ends_the_waiting_of_a_text_it_deletes(store):
    now = time.time()
    with time_machine.travel(now - 400 * 86400, tick=False):
        old = await text_in(store, "Old question", caller=OTHER)
        await store.claim_mail("alerts", old.alert_id, float("inf"))
        await store.mark_alert(old.alert_id, "sent", "dana@example.com", "New reply")
    recent = await text_in(store)
    # Older than the reported window: in the Waiting view, not in the digest or escalation.
    viewed = {row["id"] for row in await store.inbox_page("waiting", now + 1)}
    assert viewed == {old.conversation_id, recent.conversation_id}
    assert [r["conversation_id"] for r in await store.waiting_replies(now + 1)] == [
        recent.conversation_id]
    assert (await store.prune_batch(now - 300 * 86400, 100))["messages"] == 1
    assert await waiting(store, now + 1) == {recent.conversation_id}
    row = await store.conversation(old.conversation_id)
    assert (row["unanswered"], row["last_reply_id"], row["last_reply"]) == (0, None, "Old question")


async def test_the_digest_reads_the_reported_window_only(store):
    now = time.time()
    inside = now - (REPORTED_DAYS - 1) * 86400
    outside = now - (REPORTED_DAYS + 1) * 86400
    with time_machine.travel(outside, tick=False):
        await text_in(store, "Too old", caller=OTHER)
    with time_machine.travel(inside, tick=False):
        kept = await text_in(store, "Old but reported")
    assert [r["message_id"] for r in await store.waiting_replies(now)] == [kept.message_id]
    # Escalation's `older_than`: only texts that have waited that long.
    assert await store.waiting_replies(now, inside) == []
    assert len(await store.waiting_replies(now, inside + 1)) == 1
