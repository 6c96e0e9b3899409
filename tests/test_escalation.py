"""Escalation: an unanswered homeowner text goes to the backup owner, once, then one reminder."""

from __future__ import annotations

import asyncio
import time

import pytest

from lab.configs import BUSINESS_NUMBER, DANA_AND_BOSS, HOMEOWNER


@pytest.fixture
async def daemon(offline_daemon):
    return await offline_daemon(owners=DANA_AND_BOSS, escalation={
        "backup_owner": "boss", "after_minutes": 10, "reminder_minutes": 30})


async def test_escalates_once_then_reminds_then_stops(daemon, smtp_sink):
    record = await daemon.store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "Anyone there?", "log",
                                               None, "dana")
    start = time.time()
    await daemon.mail.escalate(start + 5 * 60)          # too early
    await daemon.mail.escalate(start + 11 * 60)         # first escalation
    await daemon.mail.escalate(start + 12 * 60)         # not again
    await daemon.mail.escalate(start + 45 * 60)         # the reminder
    await daemon.mail.escalate(start + 120 * 60)        # nothing more
    mails = await asyncio.to_thread(smtp_sink.wait_for, 2, 5)
    await asyncio.sleep(0.3)
    assert len(smtp_sink.received) == 2
    assert [m.recipients for m in mails] == [["boss@example.com"], ["boss@example.com"]]
    assert mails[0].message["Subject"].startswith("Unanswered: text from +12125550123")
    assert mails[1].message["Subject"].startswith("Reminder: still unanswered")
    assert record.conversation_id


async def test_an_owner_answer_stops_escalation(daemon, smtp_sink):
    record = await daemon.store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "Hello?", "log", None,
                                               "dana")
    await daemon.store.queue_reply(record.conversation_id, BUSINESS_NUMBER, HOMEOWNER, "Hi!", "owner")
    await daemon.mail.escalate(time.time() + 3600)
    await asyncio.sleep(0.3)
    assert smtp_sink.received == []


def test_business_minutes_only_count_while_open():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from textback.core.hours import Hours, Window

    ny = ZoneInfo("America/New_York")
    hours = Hours("America/New_York", (Window(("mon", "tue", "wed", "thu", "fri"), "08:00", "17:00"),))
    friday_1655 = datetime(2026, 11, 20, 16, 55, tzinfo=ny).timestamp()
    monday_0810 = datetime(2026, 11, 23, 8, 10, tzinfo=ny).timestamp()
    assert hours.open_seconds_between(friday_1655, monday_0810) == 15 * 60


async def test_nothing_escalates_after_hours(offline_daemon, smtp_sink):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    d = await offline_daemon(
        owners=DANA_AND_BOSS, escalation={"backup_owner": "boss", "after_minutes": 15},
        hours={"windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "17:00"}]})
    await d.store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "Evening!", "log", None, "dana")
    ny = ZoneInfo("America/New_York")
    # pretend the text came in Friday 16:55: move its timestamp
    friday_1655 = datetime(2026, 11, 20, 16, 55, tzinfo=ny).timestamp()
    await d.store._db.execute("UPDATE messages SET created_at = ?", (friday_1655,))
    await d.store._db.execute("UPDATE conversations SET last_reply_at = ?, waiting_since = ?",
                              (friday_1655, friday_1655))
    await d.mail.escalate(datetime(2026, 11, 21, 12, 0, tzinfo=ny).timestamp())  # Saturday
    await asyncio.sleep(0.2)
    assert smtp_sink.received == []
    await d.mail.escalate(datetime(2026, 11, 23, 8, 11, tzinfo=ny).timestamp())  # Monday 8:11
    [mail] = await asyncio.to_thread(smtp_sink.wait_for, 1, 5)
    assert mail.recipients == ["boss@example.com"]
