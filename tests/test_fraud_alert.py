"""A tripped fraud guard is recorded on the call, logged, and emailed to the admin once per hour."""

from __future__ import annotations

import asyncio
import time

import pytest

from lab.configs import BUSINESS_NUMBER
from textback.core.tracker import CallFinished

# Same country code and first six digits: the per-prefix burst limit counts them together.
PUMPED = [f"+1212555{n:04d}" for n in range(140, 146)]


@pytest.fixture
async def daemon(offline_daemon):
    return await offline_daemon(fraud={"max_per_prefix_per_hour": 2, "alert_email": "it@acme.example"})


def missed_from(caller: str, linkedid: str) -> CallFinished:
    now = time.time()
    return CallFinished(linkedid, BUSINESS_NUMBER, caller, "", "PJSIP/carrier-1", now - 20, now,
                        "missed", "no_answer")


async def test_a_prefix_burst_is_stopped_recorded_and_emailed_once(daemon, smtp_sink, caplog):
    for index, caller in enumerate(PUMPED):
        await daemon.finish_call(missed_from(caller, f"1.{index}"))
    decisions = [row["decision"] for row in sorted(await daemon.store.calls(since=0),
                                                   key=lambda r: r["linkedid"])]
    assert decisions == ["missed_call_text"] * 2 + ["fraud_prefix_burst"] * 4
    [mail] = await asyncio.to_thread(smtp_sink.wait_for, 1, 5)
    await asyncio.sleep(0.3)
    assert len(smtp_sink.received) == 1  # four trips, one email
    assert mail.recipients == ["it@acme.example"]
    assert mail.message["Subject"] == "Fraud guard tripped: fraud_prefix_burst"
    assert "no text to +12125550142; 2 texts in the last hour" in mail.message.get_content()
    assert sum("fraud guard (fraud_prefix_burst)" in r.message for r in caplog.records) == 4


async def test_no_admin_address_means_no_email(offline_daemon, smtp_sink):
    d = await offline_daemon(fraud={"max_per_prefix_per_hour": 1})
    for index, caller in enumerate(PUMPED[:3]):
        await d.finish_call(missed_from(caller, f"2.{index}"))
    assert [r["decision"] for r in await d.store.calls(since=0)].count("fraud_prefix_burst") == 2
    await asyncio.sleep(0.3)
    assert smtp_sink.received == []
