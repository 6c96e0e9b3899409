"""The inbox query: summary columns kept in each message's transaction, views, search, and the
`textback inbox` output unchanged for a store migrated from the schema before them."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from textback.store import migrations as store_module
from textback.cli import main
from textback.store import CallRow, PlannedText, Store
from textback.store.web import StaleState

CALLER = "+12125550123"
OTHER = "+12125550177"


def missed(linkedid: str, caller: str = CALLER, name: str = "") -> CallRow:
    now = time.time()
    return CallRow(linkedid=linkedid, business_number=BUSINESS_NUMBER, caller_raw=caller,
                   caller=caller, caller_name=name, started_at=now - 10, answered_at=None,
                   ended_at=now, outcome="missed", reason="no_answer", decision="missed_call_text")


async def inbound(store: Store, body: str, caller: str = CALLER):
    return await store.record_inbound(caller, BUSINESS_NUMBER, body, "log", None, "dana")


async def test_a_reply_is_unread_and_waiting_until_a_person_answers_not_when_a_robot_does(store):
    await store.record_call(missed("1.1"), PlannedText("dana", "Sorry we missed you", 0))
    record = await inbound(store, "Kitchen remodel, please call")
    [row] = await store.inbox_page("all", time.time())
    assert (row["unread"], row["unanswered"], row["last_body"]) == (1, 1, "Kitchen remodel, please call")
    waiting_since = row["waiting_since"]
    assert waiting_since is not None
    await inbound(store, "Are you there?")
    await store.queue_reply(record.conversation_id, BUSINESS_NUMBER, CALLER, "HELP text", "help")
    [row] = await store.inbox_page("all", time.time())
    assert (row["unread"], row["unanswered"], row["waiting_since"]) == (1, 1, waiting_since)
    assert await store.unread_count() == 1
    await store.queue_reply(record.conversation_id, BUSINESS_NUMBER, CALLER, "On my way", "owner",
                            author="sam")
    [row] = await store.inbox_page("all", time.time())
    assert (row["unread"], row["unanswered"], row["waiting_since"]) == (0, 0, None)
    assert row["last_answer_at"] is not None and await store.unread_count() == 0
    [answer] = [m for m in (await store.thread(row["id"]))["messages"] if m["kind"] == "owner"]
    assert answer["author"] == "sam"


async def test_views_mine_unassigned_waiting_snoozed_done_and_reopening(store):
    first = await inbound(store, "first")
    second = await inbound(store, "second", OTHER)
    now = time.time()

    async def view(name, owner="dana"):
        return [r["id"] for r in await store.inbox_page(name, time.time(), owner_id=owner)]

    assert await view("unassigned") == [first.conversation_id, second.conversation_id]
    await store.assign(second.conversation_id, "sam", "assigned by dana (web)")
    assert await view("mine", "sam") == [second.conversation_id]
    assert await view("mine", "dana") == [first.conversation_id]
    assert await view("unassigned") == [first.conversation_id]
    await store.snooze(first.conversation_id, now + 3600)
    assert await view("snoozed") == [first.conversation_id]
    assert await view("waiting") == [second.conversation_id]
    await store.mark_done(second.conversation_id)
    assert await view("done") == [second.conversation_id]
    assert await view("all") == [first.conversation_id]  # snoozed, still open
    assert await store.unread_count() == 1
    # The homeowner writes again: both come back, unread and waiting.
    await inbound(store, "hello again")
    await inbound(store, "me too", OTHER)
    assert await view("snoozed") == [] and await view("done") == []
    assert sorted(await view("waiting")) == sorted([first.conversation_id, second.conversation_id])
    assert await store.unread_count() == 2


async def test_waiting_replies_come_first_longest_waiting_first_then_the_most_recent(store):
    answered = await inbound(store, "thanks", "+12125550131")
    await store.queue_reply(answered.conversation_id, BUSINESS_NUMBER, "+12125550131", "ok", "owner")
    older = await inbound(store, "first waiting", "+12125550132")
    newer = await inbound(store, "second waiting", "+12125550133")
    await store.record_call(missed("9.1", "+12125550134"), PlannedText("dana", "Sorry", 0))
    rows = await store.inbox_page("all", time.time())
    assert [r["caller"] for r in rows] == ["+12125550132", "+12125550133", "+12125550134",
                                           "+12125550131"]
    assert [r["id"] for r in rows[:2]] == [older.conversation_id, newer.conversation_id]
    assert len(await store.inbox_page("all", time.time(), limit=3)) == 3


async def test_search_finds_a_number_however_written_a_name_and_words(store):
    await store.record_call(missed("2.1", name="Jane Homeowner"), PlannedText("dana", "Sorry", 0))
    await inbound(store, "Our bathroom tiles are cracked", OTHER)
    await store.set_contact_name((await store.conversation_for(OTHER))["id"], "Bob Builder")

    async def found(query):
        return [r["caller"] for r in await store.inbox_page("all", time.time(), search=query)]

    assert await found("(212) 555-0123") == [CALLER]
    assert await found("5550123") == [CALLER]
    assert await found("+12125550177") == [OTHER]
    assert await found("jane") == [CALLER]
    assert await found("BUILDER") == [OTHER]
    assert await found("bathroom tile") == [OTHER]
    assert await found("kitchen") == []
    assert await found('"; DROP TABLE x') == []
    assert await found("ab") == []  # too short for the trigram index: nothing, not everything


async def test_an_inbox_page_reads_one_index_range_not_the_history(sqlite_store, monkeypatch):
    """SQLite's plans (PostgreSQL's: tests/test_query_plans_postgres.py)."""
    store = sqlite_store
    seen: list[str] = []
    run = store._all

    async def planned(sql, args=()):
        if sql.startswith("SELECT") and "FROM conversations c WHERE" in sql:
            seen.append(" ".join(r[3] for r in await run(f"EXPLAIN QUERY PLAN {sql}", args)))
        return await run(sql, args)

    monkeypatch.setattr(store, "_all", planned)
    for view in ("all", "mine", "unassigned", "waiting", "snoozed", "done"):
        await store.inbox_page(view, time.time(), owner_id="dana")
    assert len(seen) >= 6
    for plan in seen:
        assert "INDEX conversations_" in plan and "TEMP B-TREE" not in plan, plan


# -- the same `textback inbox` for a store made before the summary columns ---------------

# The inbox query as it was before the summary columns: the reference for what the CLI printed.
OLD_INBOX = (
    "SELECT c.*, (SELECT body FROM messages WHERE conversation_id = c.id"
    "   AND direction = 'in' ORDER BY created_at DESC, id DESC LIMIT 1) AS last_reply,"
    " (SELECT MAX(created_at) FROM messages WHERE conversation_id = c.id"
    "   AND direction = 'in') AS last_reply_at,"
    " (SELECT MAX(created_at) FROM messages WHERE conversation_id = c.id"
    "   AND direction = 'out' AND kind = 'owner') AS last_answer_at,"
    " (SELECT COUNT(*) FROM calls WHERE conversation_id = c.id) AS missed_calls"
    " FROM conversations c WHERE c.status = 'open'")


def old_inbox(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["unanswered"] = bool(row["last_reply_at"]) and (
            row["last_answer_at"] is None or row["last_answer_at"] < row["last_reply_at"])
    rows.sort(key=lambda r: (not r["unanswered"],
                             r["last_reply_at"] if r["unanswered"] else -r["updated_at"]))
    return rows


async def fill_old_schema(db, now: float) -> None:
    """Conversations written by the code before the summary columns, as raw rows."""
    conversations = [  # caller, status, updated
        ("+12125550141", "open", now - 500), ("+12125550142", "open", now - 400),
        ("+12125550143", "closed", now - 300), ("+12125550144", "open", now - 200),
        ("+12125550145", "open", now - 100)]
    for n, (caller, status, updated) in enumerate(conversations, start=1):
        await db.execute("INSERT INTO conversations (id, caller, business_number, owner_id, status,"
                         " created_at, updated_at, contact_name) VALUES (?,?,?,?,?,?,?,?)",
                         (n, caller, BUSINESS_NUMBER, "dana", status, now - 900, updated,
                          "Ann" if n == 2 else ""))
        await db.execute("INSERT INTO calls (linkedid, business_number, caller_raw, caller,"
                         " started_at, ended_at, outcome, reason, conversation_id) VALUES"
                         " (?,?,?,?,?,?,'missed','no_answer',?)",
                         (f"old.{n}", BUSINESS_NUMBER, caller, caller, now - 900, now - 890, n))
    messages = [  # conversation, direction, kind, body, at
        (1, "out", "auto", "Sorry we missed you", now - 880), (1, "in", "", "Call me", now - 700),
        (2, "out", "auto", "Sorry we missed you", now - 880), (2, "in", "", "Kitchen", now - 600),
        (2, "out", "owner", "Tomorrow?", now - 550),
        (3, "in", "", "never mind", now - 650),
        (4, "in", "", "Still there?", now - 800), (4, "in", "", "Hello??", now - 300),
        (5, "out", "auto", "Sorry we missed you", now - 880)]
    for conversation, direction, kind, body, at in messages:
        await db.execute("INSERT INTO messages (conversation_id, direction, kind, body, status,"
                         " created_at) VALUES (?,?,?,?,'sent',?)",
                         (conversation, direction, kind or "auto", body, at))


async def test_textback_inbox_prints_the_same_for_a_store_migrated_from_the_old_schema(
        tmp_path, monkeypatch):
    migrations = store_module.MIGRATIONS
    # The schema `textback inbox` last read with its old query: before the self-test columns
    # and the inbox summaries.
    ours = next(i for i, script in enumerate(migrations)
                if "ADD COLUMN selftest" in script or "CREATE TABLE web_sessions" in script)
    monkeypatch.setattr(store_module, "MIGRATIONS", migrations[:ours])
    path = tmp_path / "textback.db"
    old = await Store.open(path)
    now = time.time()
    async with old._transaction() as db:
        await fill_old_schema(db, now)
    before = old_inbox([dict(r) for r in await old._all(OLD_INBOX)])
    await old.close()
    monkeypatch.setattr(store_module, "MIGRATIONS", migrations)

    config = write_config(tmp_path, base_config(tmp_path))
    result = await asyncio.to_thread(CliRunner().invoke, main, ["inbox", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    # The same rows, with the fields added since (no text of the old store is held; no
    # intake facts were read from texts stored before intake existed).
    assert json.loads(result.output) == [row | {"held_until": None, "intake_labels": "",
                                                "intake_project": None, "intake_area": None}
                                         for row in before]
    assert [r["caller"] for r in before] == ["+12125550141", "+12125550144", "+12125550145",
                                             "+12125550142"]
    table = await asyncio.to_thread(CliRunner().invoke, main, ["inbox", "-c", str(config)])
    lines = [line for line in table.output.splitlines() if "+1212555014" in line]
    assert [line[:14] for line in lines] == [f"{'! ' if r['unanswered'] else '  '}{r['caller']}"
                                             for r in before]
    assert "Hello??" in lines[1]

    migrated = await Store.open(path)
    try:
        rows = {r["caller"]: r for r in await migrated.inbox_page("all", now)}
        assert rows["+12125550144"]["waiting_since"] == pytest.approx(now - 800)
        assert rows["+12125550142"]["unread"] == 0 and rows["+12125550141"]["unread"] == 1
        found = await migrated.inbox_page("all", now, search="kitchen")
        assert [r["caller"] for r in found] == ["+12125550142"]
        assert [r["caller"] for r in await migrated.inbox_page("all", now, search="ann")] == \
            ["+12125550142"]
    finally:
        await migrated.close()


async def test_state_version_follows_every_change_of_state_and_only_those(store):
    """Owner, done/open, snooze, outcome, contact name and class bump it (triggers, in the
    change's own transaction); a text to an open, awake conversation does not."""
    record = await inbound(store, "Hello")
    cid = record.conversation_id

    async def version():
        return (await store.conversation(cid))["state_version"]
    seen = await version()
    await inbound(store, "Still there?")
    assert await version() == seen
    changes = [lambda: store.assign(cid, "sam", "cli"), lambda: store.snooze(cid, time.time() + 60),
               lambda: inbound(store, "Wake up"), lambda: store.mark_done(cid),
               lambda: inbound(store, "Open again"),
               lambda: store.record_outcome(cid, "booked", None, "web:dana"),
               lambda: store.set_contact_name(cid, "Pat"),
               lambda: store.set_contact_class(CALLER, "client", "dana")]
    for change in changes:
        await change()
        assert await version() == seen + 1, change
        seen += 1
    live = (await store.conversation(cid))["version"]
    await store.set_contact_class(CALLER, "vendor", "api:crm")  # open pages hear of it too
    assert (await store.conversation(cid))["version"] > live
    assert await version() == seen + 1
    seen += 1
    await store.assign(cid, "sam", "cli")  # the same owner again: nothing changed
    await store.set_contact_class(CALLER, "vendor", "dana")
    assert await version() == seen
    # A write that expects an older version is refused inside its transaction, nothing applied.
    with pytest.raises(StaleState):
        await store.assign(cid, "dana", "cli", expected_state=seen - 1)
    with pytest.raises(StaleState):
        await store.record_outcome(cid, "won", 5000.0, "api:crm", expected_state=seen - 1)
    assert (await store.conversation(cid))["owner_id"] == "sam"
    assert await store.latest_outcome(cid) == "booked"
    await store.assign(cid, "dana", "cli", expected_state=seen)
    assert (await store.conversation(cid))["owner_id"] == "dana"


@pytest.mark.parametrize("close", ["done", "lost"])
async def test_a_conversation_closed_then_reopened_by_a_call_waits_only_for_a_new_text(store, close):
    """Done (or an outcome that closes it) ends the waiting; a call reopens the conversation
    without bringing the old text back; only a text after it waits, from its own time."""
    old = await inbound(store, "Kitchen remodel, please call")
    conversation = old.conversation_id
    if close == "done":
        await store.mark_done(conversation)
    else:
        await store.record_outcome(conversation, "lost", None, "web:dana")

    async def waiting() -> tuple[list[int], list[int]]:
        """The Waiting view's conversations and the texts the digest and escalation report."""
        now = time.time() + 1
        return ([r["id"] for r in await store.inbox_page("waiting", now)],
                [r["message_id"] for r in await store.waiting_replies(now)])

    assert await waiting() == ([], [])
    await store.record_call(missed(f"{close}.2"), PlannedText("dana", "Sorry we missed you", 0))
    [row] = await store.inbox_page("all", time.time())  # open again, but nothing waits
    assert (row["id"], row["status"], row["unanswered"], row["waiting_since"]) == (
        conversation, "open", 0, None)
    assert await waiting() == ([], [])
    await asyncio.sleep(0.01)  # the new text's time is after the old one's
    new = await inbound(store, "Still need that kitchen done")
    assert await waiting() == ([conversation], [new.message_id])
    [row] = await store.inbox_page("waiting", time.time())
    [text] = [m for m in (await store.thread(conversation))["messages"] if m["id"] == new.message_id]
    assert row["waiting_since"] == text["created_at"] > [
        m["created_at"] for m in (await store.thread(conversation))["messages"]
        if m["id"] == old.message_id][0]
