"""Escalation: an unanswered homeowner text goes to the backup owner, once, then one reminder."""

from __future__ import annotations

import asyncio
import time

import pytest

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from textback.config import load
from textback.daemon import Daemon
from textback.store import Store


@pytest.fixture
async def daemon(tmp_path):
    config = base_config(tmp_path, **{
        "smtp.port": 15025,
        "owners": [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com"},
                   {"id": "boss", "name": "Pat Boss", "email": "boss@example.com"}],
        "escalation": {"backup_owner": "boss", "after_minutes": 10, "reminder_minutes": 30},
    })
    d = Daemon(load(write_config(tmp_path, config)))
    d.store = await Store.open(d.config.storage.path)
    yield d
    await d.store.close()


async def test_escalates_once_then_reminds_then_stops(daemon, smtp_sink):
    record = await daemon.store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "Anyone there?", "log",
                                               None, "dana")
    start = time.time()
    await daemon.escalate(start + 5 * 60)          # too early
    await daemon.escalate(start + 11 * 60)         # first escalation
    await daemon.escalate(start + 12 * 60)         # not again
    await daemon.escalate(start + 45 * 60)         # the reminder
    await daemon.escalate(start + 120 * 60)        # nothing more
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
    await daemon.escalate(time.time() + 3600)
    await asyncio.sleep(0.3)
    assert smtp_sink.received == []
