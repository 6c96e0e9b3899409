"""Every query on a hot path uses an index: none scans a table that grows with the history.

The daemon's per-call and per-reply path, the workers and the CLI listings run
against a store with a history (built through the store's own API, lab/history.py);
every statement they send to SQLite is caught with a trace callback and its
EXPLAIN QUERY PLAN read. A full SCAN of a history table fails, and so does a
temporary B-tree for ORDER BY, except where it sorts a set the history cannot
grow (listed below with the reason). Both with the planner's statistics
(ANALYZE, as a migrated store has them) and without (a new store before its
first close).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import time
from datetime import datetime, timezone

import pytest

from lab.history import BUSINESS_NUMBERS, Shape, build_history
from textback.core.fleet import Senders
from textback.core.intake import correction, extract
from textback.store import CallRow, NewMedia, Notice, PlannedText, Store

# Tables that grow with the history.
HISTORY_TABLES = {"calls", "messages", "conversations", "outbox", "alerts", "notices",
                  "outcomes", "assignments", "escalations", "reply_tokens", "intake_facts"}

# The history of an install with escalation on: half the replies nobody answered were escalated
# (its statistics then describe a table of escalations, not an empty one or one row).
ESCALATING = Shape(escalated=0.5)

# ORDER BY sorts that an index cannot serve, and why their cost does not follow the history.
SORTS_ALLOWED = {
    "FROM outbox o JOIN messages m ON m.id = o.message_id WHERE o.state = 'pending' AND o.due_at <=":
        "sorts the pending texts due now by when they were first due: the in-flight rows only",
    "WHERE state = 'pending' AND retry_at <=":
        "sorts the emails waiting to be mailed by id: the pending rows only",
    "ORDER BY updated_at DESC LIMIT 1":
        "sorts one caller's conversations: at most one per business number",
    " UNION ALL ":
        "merges one caller's calls, texts and alerts (textback thread) into one timeline",
}
_SQL_KEYWORDS = {"WHERE", "ON", "SET", "LEFT", "JOIN", "ORDER", "GROUP", "LIMIT", "USING",
                 "VALUES", "INNER", "AS", "SELECT"}
_TABLE_REF = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", re.I)


def _aliases(sql: str) -> dict[str, str]:
    """Each name a statement's plan may use for a table (the table's own, or its alias)."""
    names = {}
    for table, alias in _TABLE_REF.findall(sql):
        names[table] = table
        if alias and alias.upper() not in _SQL_KEYWORDS:
            names[alias] = table
    return names


def _problems(db: sqlite3.Connection, sql: str) -> list[str]:
    plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
    names = _aliases(sql)
    # A partial index holds only the rows still to send or mail: reading it all is bounded.
    partial = {row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'")}
    found = []
    for step in plan:
        scanned = re.match(r"SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?", step)
        if (scanned and names.get(scanned.group(1)) in HISTORY_TABLES
                and scanned.group(2) not in partial):
            found.append(f"full scan: {step}")
        if "TEMP B-TREE FOR" in step and "ORDER BY" in step and not any(
                key in sql for key in SORTS_ALLOWED):
            found.append(f"sort: {step}")
    return found


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A store file with 1,500 calls and what followed them (escalations too), and the moment
    it ends."""
    path = tmp_path_factory.mktemp("history") / "history.db"
    end = time.time() - 3600

    async def build():
        store = await Store.open(path)
        try:
            await build_history(store, 1500, end, ESCALATING)
        finally:
            await store.close()

    asyncio.run(build())
    return path, end


@pytest.fixture(params=["analyzed", "no statistics"])
def history_db(request, history, tmp_path):
    path, end = history
    copy = tmp_path / "store.db"
    shutil.copy(path, copy)
    db = sqlite3.connect(copy)
    if request.param == "analyzed":
        db.execute("ANALYZE")
    else:
        db.execute("DROP TABLE IF EXISTS sqlite_stat1")
    db.commit()
    db.close()
    return copy, end


async def _hot_paths(store: Store, end: float) -> None:
    """What the daemon, its workers and the CLI ask of the store, once each."""
    now = time.time()
    caller, number = "+12125550123", BUSINESS_NUMBERS[0]
    waiting = await store.waiting_replies(now)
    known = waiting[0]
    # A missed call: its facts (owner, turn, fraud counts, class, opt-out), the commit itself.
    await store.call_facts(known["caller"], known["business_number"], now)
    await store.call_facts(caller, number, now)
    await store.call_facts("", None, now)
    await store.is_suppressed(caller)
    await store.record_call(
        CallRow("plan-1", number, caller, caller, "", now - 30, None, now, "missed", "no_answer",
                "missed_call_text"), PlannedText("dana", "Sorry we missed you", now),
        owner_id="dana", dedupe_since=now - 86400)
    await store.call_decision("plan-1")
    # The outbox worker.
    await store.next_due()
    due = await store.due(now + 1)
    await store.first_due_before(now)
    taken = await store.claim_all(due)
    await store.text_facts(taken[0].message_id)
    # Held for the homeowner's quiet hours, then claimed again when the window opens.
    assert await store.hold(taken[0], now, "their quiet hours")
    taken = [item for item in await store.due(now + 1) if item.id == taken[0].id]
    assert await store.claim_all(taken) == taken
    await store.mark_all_sent([(taken[0], "gw-plan")], "log")
    await store.bring_forward(now)
    await store.recover_interrupted()
    # A fleet with the asterisk gateway: the texts of the PBXs a daemon holds, either form.
    for senders in (Senders((number,)), Senders(None, (BUSINESS_NUMBERS[1],))):
        await store.next_due(senders)
        await store.claim_all(await store.due(now + 1, senders=senders), senders)
        await store.recover_interrupted(mine_too=True, senders=senders)
    # An inbound text, with and without a provider id; a delivery report; an opt-out.
    await store.sender_facts(caller, number)
    inbound = await store.record_inbound(caller, number, "Yes please", "log", "plan-in-1", "dana")
    await store.record_inbound(caller, number, "Hello?", "log", None, "dana")
    # Its intake facts (read, then corrected), and the inbox filtered on them.
    await store.record_inbound(caller, number, "kitchen, 40k, 11215", "log", "plan-in-2", "dana",
                               intake=extract("kitchen, 40k, 11215", datetime.now(timezone.utc)))
    await store.correct_intake(inbound.conversation_id, [correction("budget", "50k")],
                               "web:dana", "50k")
    await store.inbox_page("all", now, project="kitchen", area="in")
    await store.update_delivery("log", "gw-plan", "delivered", None)
    await store.record_unroutable("ACME", number, "promo", "log", None)
    await store.suppress("+12125550124", "sms")
    await store.unsuppress("+12125550124", "sms")
    # The mail workers: alerts and notices.
    for table in ("alerts", "notices"):
        await store.due_mail(table, now)
        await store.next_mail_retry(table)
    await store.claim_mail("alerts", inbound.alert_id, now)
    await store.conversation(inbound.conversation_id)
    await store.conversation_history(inbound.conversation_id)
    token = await store.reply_token(inbound.conversation_id, "dana", 3600)
    await store.token(token, now)
    await store.mark_alert(inbound.alert_id, "sent", "dana@example.com", "New reply")
    notice_id = await store.queue_notice("Dana", "dana@example.com", "fraud", "body",
                                         unless_since=now - 3600)
    await store.claim_mail("notices", notice_id, now)
    await store.retry_mail("notices", notice_id, now, "relay down")
    await store.recover_interrupted_mail()
    # Inbound media: the fetch worker's claims, retries, results, the waiting alert and the
    # owner's notice; the thread, the API and the CRM read a message's media.
    photo = await store.record_inbound(caller, number, "", "twilio", "MMplan", "dana",
                                       media=[NewMedia("https://api.twilio.com/m/1", "image/jpeg"),
                                              NewMedia("https://api.twilio.com/m/2", "image/png")])
    await store.next_media_retry()
    first, second = await store.claim_media(now, 4)
    await store.message_media_bytes(photo.message_id)
    await store.media_unsettled(photo.message_id)
    await store.retry_media(first["id"], now, "HTTP 503")
    await store.keep_media(second["id"], "ab" * 32, "image/png", True, 100)
    await store.fail_media(first["id"], "refused: not a media host")
    await store.untold_media_failures()
    await store.mark_media_told(photo.message_id)
    await store.media_of([photo.message_id, inbound.message_id])
    await store.media_item(second["id"])
    await store.recover_interrupted_media()
    alert = await store.claim_mail("alerts", photo.alert_id, now)
    await store.defer_alert(alert["id"], now + 60)
    # Escalation and the digest.
    await store.record_escalation(known["message_id"], 1, "boss",
                                  Notice("Boss", "boss@example.com", "Unanswered", "body"))
    await store.waiting_replies(now, now - 900, 2)
    await store.report_rows(end - 31 * 86400, end)
    # An owner's answer, assignment and outcome (email or CLI).
    await store.queue_reply(inbound.conversation_id, number, caller, "Calling you", "owner")
    await store.assign(inbound.conversation_id, "eli", "cli")
    await store.record_outcome(inbound.conversation_id, "booked", None, "cli")
    # An owner's own mobile: the alert text, an answer, its conversation, the help's limit.
    await store.queue_owner_alert("dana", "+19175550188", number, inbound.conversation_id, "alert")
    await store.record_owner_text("dana", "+19175550188", number, "Calling", "log", "plan-own-1")
    await store.alerted_conversation("dana", None)
    await store.alerted_conversation("dana", inbound.conversation_id)
    await store.queue_owner_notice("dana", "+19175550188", number, "help", template="owner_help")
    await store.owner_notice_since("+19175550188", "owner_help", now - 600)
    # The CLI listings.
    await store.conversation_for(known["caller"])
    await store.timeline(known["caller"])
    await store.calls(now - 86400)
    await store.progress("last_ami_event_at")
    await store.note_progress("last_ami_event_at", now)
    # The web inbox's listings (and `textback inbox`, which reads the first).
    for view in ("open", "mine", "unassigned", "waiting", "snoozed", "done"):
        await store.inbox_page(view, now, owner_id="dana")
    await store.unread_count()
    await store.changes_since(0)
    await store.thread(inbound.conversation_id)
    await store.calls_page(now - 86400, now)
    # Retention (textback prune, and its dry run).
    await store.oldest_activity()
    await store.prunable(end - 10 * 86400, expired_before=end)
    await store.prune_batch(end - 10 * 86400, 10, expired_before=end)
    await store.monthly_scorecard("2020-01")
    # The push worker, every second: what changed after its cursors, then its due pushes.
    await store.start_push_cursors()
    events_after, escalations_after = await store.push_cursors()
    await store.push_events_after(events_after)
    await store.push_escalations_after(escalations_after)
    await store.push_conversation(inbound.conversation_id)
    await store.push_subscriptions_of(["dana", "sam"])
    await store.alert_channels("dana")
    await store.due_pushes(now)
    await store.next_push_retry()


async def test_no_hot_query_scans_the_history_or_sorts_it(history_db):
    path, end = history_db
    statements: list[str] = []
    store = await Store.open(path)
    try:
        await store._db.set_trace_callback(statements.append)
        await _hot_paths(store, end)
        await store._db.set_trace_callback(None)
    finally:
        await store.close()
    queries = {s for s in statements if re.match(r"\s*(SELECT|UPDATE|DELETE|WITH|INSERT)", s, re.I)}
    assert len(queries) > 40  # the workload ran
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        problems = {sql: found for sql in sorted(queries) if (found := _problems(db, sql))}
    finally:
        db.close()
    assert not problems, "\n\n".join(f"{sql}\n  " + "\n  ".join(found)
                                     for sql, found in problems.items())


async def test_the_digest_and_escalation_read_one_range_as_long_as_the_reported_window(history_db):
    """Not every waiting conversation of the history (a SEARCH the check above allows): the
    range of `conversations_waiting` is bounded on both sides by the texts' times."""
    statements: list[str] = []
    store = await Store.open(history_db[0])
    try:
        await store._db.set_trace_callback(statements.append)
        await store.waiting_replies(time.time())
        await store.waiting_replies(time.time(), time.time() - 900, 1)
    finally:
        await store.close()
    db = sqlite3.connect(history_db[0])
    try:
        reads = [s for s in statements if "ON m.id = c.last_reply_id" in s]
        assert len(reads) == 2
        for sql in reads:
            first = next(iter(db.execute("EXPLAIN QUERY PLAN " + sql)))[3]
            assert first == ("SEARCH c USING INDEX conversations_waiting (status=? AND"
                             " unanswered=? AND last_reply_at>? AND last_reply_at<?)"), (sql, first)
    finally:
        db.close()


def test_the_check_sees_a_scan_and_a_sort(history_db):
    """The check itself: a query on an unindexed column, and a sort no index serves, fail it."""
    db = sqlite3.connect(history_db[0])
    try:
        assert _problems(db, "SELECT * FROM messages m WHERE m.body = 'x'") == ["full scan: SCAN m"]
        assert _problems(db, "SELECT id FROM calls WHERE linkedid > 'a' ORDER BY ended_at") == [
            "sort: USE TEMP B-TREE FOR ORDER BY"]
    finally:
        db.close()
