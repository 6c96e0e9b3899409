"""Owner alerts and notices are rows claimed before they are mailed: never twice, never lost.

Every test mails a real SMTP server (aiosmtpd, lab.harness) and counts what arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import pytest

from lab.configs import BUSINESS_NUMBER, DANA_AND_BOSS
from lab.harness import in_process, start_smtp_sink
from textback.daemon import Daemon
from textback.workers.owner_mail import MAX_ALERT_ATTEMPTS
from textback.store import Store

ROWS = 15  # of each kind


async def states(store: Store, table: str) -> Counter:
    return Counter(row["state"] for row in await store._all(f"SELECT state FROM {table}"))


async def test_two_daemons_on_one_database_mail_each_alert_and_notice_once(offline_daemon,
                                                                         smtp_sink):
    first = await offline_daemon(owners=DANA_AND_BOSS)
    second = await offline_daemon(owners=DANA_AND_BOSS)  # its own connection to the same file
    for n in range(ROWS):
        await first.store.record_inbound(f"+1212555{n + 200:04d}", BUSINESS_NUMBER,
                                         f"Reply number {n}", "log", f"id-{n}", "dana")
        await first.store.queue_notice("Pat Boss", "boss@example.com", f"Notice {n}", "Body")
    workers = [asyncio.create_task(worker()) for daemon in (first, second)
               for worker in (daemon.mail.run_alerts, daemon.mail.run_notices)]
    try:
        await asyncio.to_thread(smtp_sink.wait_for, 2 * ROWS, 20)
        await asyncio.sleep(1.0)  # room for any second copy to arrive
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    subjects = Counter(m.message["Subject"] for m in smtp_sink.received)
    assert len(smtp_sink.received) == 2 * ROWS
    assert set(subjects.values()) == {1}
    for table in ("alerts", "notices"):
        assert await states(first.store, table) == {"sent": ROWS}
        rows = await first.store._all(f"SELECT attempts FROM {table}")
        assert {row["attempts"] for row in rows} == {1}


async def test_a_notice_is_committed_first_retried_and_mailed_when_the_relay_is_back(
        offline_daemon, caplog):
    daemon = await offline_daemon(owners=DANA_AND_BOSS)  # the relay at the sink port is down
    assert await daemon.mail.mail_notice("Dana Reyes", "dana@example.com", "Not sent", "Why") is True
    [notice] = await daemon.store.notices()
    assert (notice["state"], notice["attempts"]) == ("pending", 1)
    assert notice["retry_at"] > time.time() + 3  # backoff: about 5 s for the first retry
    assert any(r.levelno == logging.WARNING and "notice 1 not sent" in r.getMessage()
               for r in caplog.records)

    sink, controller = start_smtp_sink()
    worker = asyncio.create_task(daemon.mail.run_notices())
    try:
        await asyncio.sleep(0.5)
        assert sink.received == []  # not before its retry time
        await daemon.store._db.execute("UPDATE notices SET retry_at = ?", (time.time(),))
        [mail] = await asyncio.to_thread(sink.wait_for, 1, 10)
        await asyncio.sleep(0.5)
        assert len(sink.received) == 1
    finally:
        worker.cancel()
        controller.stop()
    assert mail.message["Subject"] == "Not sent" and mail.recipients == ["dana@example.com"]
    assert await states(daemon.store, "notices") == {"sent": 1}


async def test_a_notice_that_fails_for_good_is_logged_as_an_error(offline_daemon, caplog):
    daemon = await offline_daemon(owners=DANA_AND_BOSS)  # no relay
    notice_id = await daemon.store.queue_notice("Dana Reyes", "dana@example.com", "Lost?", "Body")
    await daemon.store._db.execute("UPDATE notices SET attempts = ?", (MAX_ALERT_ATTEMPTS - 1,))
    await daemon.mail.deliver_notice(notice_id)
    [notice] = await daemon.store.notices()
    assert notice["state"] == "failed" and notice["last_error"]
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"notice {notice_id} failed for good after {MAX_ALERT_ATTEMPTS} attempts" in error.getMessage()


async def test_mail_interrupted_by_a_crash_is_mailed_again_once_after_restart(tmp_path, smtp_sink,
                                                                             caplog):
    from lab.configs import base_config, write_config
    from textback.config import load

    config = load(write_config(tmp_path, base_config(tmp_path, **{
        "ami.port": 15099, "smtp.port": 15025, "owners": DANA_AND_BOSS})))
    store = await Store.open(config.config.storage.path)
    record = await store.record_inbound("+12125550190", BUSINESS_NUMBER, "Still there?", "log",
                                        "id-1", "dana")
    notice_id = await store.queue_notice("Pat Boss", "boss@example.com", "Escalated", "Body")
    assert await store.claim_mail("alerts", record.alert_id, time.time())
    assert await store.claim_mail("notices", notice_id, time.time())
    await store.close()  # the process dies here, mid-send: both rows are left in `sending`

    async with in_process(Daemon(config)):
        mails = await asyncio.to_thread(smtp_sink.wait_for, 2, 15)
        await asyncio.sleep(1.0)
        assert len(smtp_sink.received) == 2
    assert {m.recipients[0] for m in mails} == {"dana@example.com", "boss@example.com"}
    warnings = [r.getMessage() for r in caplog.records if "when textback stopped" in r.getMessage()]
    assert f"alerts [{record.alert_id}] were being mailed" in warnings[0]
    assert f"notices [{notice_id}] were being mailed" in warnings[1]


@pytest.mark.parametrize("table", ["alerts", "notices"])
async def test_a_row_can_be_claimed_once_and_not_before_its_retry_time(tmp_path, table):
    store = await Store.open(tmp_path / "t.db")
    try:
        if table == "alerts":
            row_id = (await store.record_inbound("+12125550190", BUSINESS_NUMBER, "Hi", "log",
                                                 "id-1", "dana")).alert_id
        else:
            row_id = await store.queue_notice("Dana", "dana@example.com", "Subject", "Body")
        now = time.time()
        claimed = await store.claim_mail(table, row_id, now)
        assert claimed["state"] == "sending" and claimed["attempts"] == 1
        assert await store.claim_mail(table, row_id, now) is None
        await store.retry_mail(table, row_id, now + 60, "421 try later")
        assert await store.due_mail(table, now) == []
        assert await store.claim_mail(table, row_id, now) is None
        assert await store.due_mail(table, now + 60) == [row_id]
        assert (await store.claim_mail(table, row_id, now + 60))["attempts"] == 2
    finally:
        await store.close()


async def test_two_daemons_escalating_at_once_email_the_backup_once_per_level(offline_daemon,
                                                                            smtp_sink):
    settings = {"owners": DANA_AND_BOSS, "escalation": {
        "backup_owner": "boss", "after_minutes": 10, "reminder_minutes": 30}}
    first, second = await offline_daemon(**settings), await offline_daemon(**settings)
    await first.store.record_inbound("+12125550191", BUSINESS_NUMBER, "Anyone?", "log", "id-1",
                                     "dana")
    start = time.time()
    for minutes in (11, 45, 120):  # the escalation, the reminder, then nothing more
        await asyncio.gather(first.mail.escalate(start + minutes * 60),
                             second.mail.escalate(start + minutes * 60))
    mails = await asyncio.to_thread(smtp_sink.wait_for, 2, 5)
    await asyncio.sleep(0.5)
    assert len(smtp_sink.received) == 2
    assert [m.message["Subject"].split(":")[0] for m in mails] == [
        "Unanswered", "Reminder"]
    assert await states(first.store, "notices") == {"sent": 2}


async def test_a_fraud_guard_emails_once_an_hour_across_daemons_and_restarts(offline_daemon,
                                                                           smtp_sink):
    settings = {"fraud": {"max_per_prefix_per_hour": 2, "alert_email": "it@acme.example"}}
    first, second = await offline_daemon(**settings), await offline_daemon(**settings)
    now = time.time()
    await asyncio.gather(first.mail.report_fraud("fraud_prefix_burst", "report", now),
                         second.mail.report_fraud("fraud_prefix_burst", "report", now))
    restarted = await offline_daemon(**settings)  # a fresh daemon remembers the hour too
    await restarted.mail.report_fraud("fraud_prefix_burst", "report", now + 60)
    await asyncio.to_thread(smtp_sink.wait_for, 1, 5)
    await asyncio.sleep(0.5)
    assert len(smtp_sink.received) == 1
    await restarted.mail.report_fraud("fraud_prefix_burst", "report", time.time() + 3601)
    await asyncio.to_thread(smtp_sink.wait_for, 2, 5)  # the next hour gets its email


async def test_alerts_stored_before_the_claims_keep_their_state_and_can_be_claimed(tmp_path):
    import sqlite3

    from textback.store import MIGRATIONS

    rebuild = next(i for i, script in enumerate(MIGRATIONS) if "alerts_claimed" in script)
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:rebuild], start=1):
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute("INSERT INTO conversations (caller, business_number, owner_id, created_at,"
               " updated_at) VALUES ('+12125550190', ?, 'dana', 1, 1)", (BUSINESS_NUMBER,))
    db.execute("INSERT INTO messages (conversation_id, direction, body, status, created_at)"
               " VALUES (1, 'in', 'Hi', 'received', 1)")
    db.executemany("INSERT INTO alerts (conversation_id, message_id, owner_id, state, attempts,"
                   " created_at) VALUES (1, 1, 'dana', ?, ?, 1)", [("sent", 1), ("pending", 3)])
    db.close()
    store = await Store.open(tmp_path / "t.db")
    try:
        rows = await store._all("SELECT id, state, attempts FROM alerts ORDER BY id")
        assert [tuple(r) for r in rows] == [(1, "sent", 1), (2, "pending", 3)]
        assert (await store.claim_mail("alerts", 2, time.time()))["attempts"] == 4
    finally:
        await store.close()
