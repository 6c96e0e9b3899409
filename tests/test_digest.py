"""The daily digest and the monthly scorecard email, on seeded data, through a real SMTP sink."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lab.configs import BUSINESS_NUMBER, DANA_AND_BOSS, HOMEOWNER
from textback.core.scorecard import render_text
from textback.store import CallRow, PlannedText
from textback.web.reports import month_period
from textback.workers.owner_mail import next_daily

NY = ZoneInfo("America/New_York")


@pytest.fixture
async def daemon(offline_daemon):
    return await offline_daemon(owners=DANA_AND_BOSS, digest={"daily_at": "07:30", "monthly_report_to": ["boss"]})


def test_next_daily_is_the_next_local_occurrence():
    before = datetime(2026, 11, 26, 7, 0, tzinfo=NY).timestamp()
    after = datetime(2026, 11, 26, 8, 0, tzinfo=NY).timestamp()
    assert next_daily(before, "07:30", NY) == datetime(2026, 11, 26, 7, 30, tzinfo=NY).timestamp()
    assert next_daily(after, "07:30", NY) == datetime(2026, 11, 27, 7, 30, tzinfo=NY).timestamp()


async def test_digest_lists_waiting_texts_and_the_first_brings_the_scorecard(daemon, smtp_sink):
    store, now = daemon.store, time.time()
    await store.record_call(CallRow("1.1", BUSINESS_NUMBER, HOMEOWNER, HOMEOWNER, "", now - 60,
                                    None, now - 50, "missed", "no_answer", "missed_call_text"),
                            PlannedText("dana", "Sorry we missed you", now - 50))
    [item] = await store.due(now + 1)
    await store.claim_all([item])
    await store.mark_all_sent([(item, "sid-1")], "log")
    record = await daemon.store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "Still interested!",
                                               "log", None, "dana")
    await daemon.store.record_outcome(record.conversation_id, "booked", None, "test")
    next_month = datetime.now(NY).replace(day=28) + timedelta(days=7)
    first = next_month.replace(day=1, hour=7, minute=30).timestamp()  # the report covers this month
    await daemon.mail.send_digest(first)
    mails = await asyncio.to_thread(smtp_sink.wait_for, 2, 5)
    by_recipient = {m.recipients[0]: m.message for m in mails}
    digest = by_recipient["dana@example.com"]
    assert digest["Subject"] == "1 text(s) waiting for an answer"
    assert "+12125550123: Still interested!" in digest.get_content()
    report = by_recipient["boss@example.com"]
    assert report["Subject"].startswith("textback scorecard ")
    assert "  booked                1   100% of replied\r\n" in report.get_content()
    # the figures of `textback report`, the CSV and the web page: one function makes them all
    label = datetime.now(NY).strftime("%Y-%m")
    start, end = month_period(label, "America/New_York")
    assert report.get_content().replace("\r\n", "\n").rstrip("\n") == render_text(
        await store.scorecard(start, end, label), label, "America/New_York")
