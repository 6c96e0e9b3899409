"""The intake aggregate of the store: extractions go with their text when retention prunes it,
corrections (a person's words) stay; the checks on what may be stored."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from textback.core.intake import correction, extract

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=ZoneInfo("America/New_York"))


async def test_pruning_a_text_takes_what_was_read_from_it_and_keeps_corrections(store):
    text = "kitchen, around 75k, call me at 917-555-0143"
    record = await store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, text, "log", None, "dana",
                                        intake=extract(text, NOW))
    await store.correct_intake(record.conversation_id, [correction("timing", "asap", now=NOW)],
                               "web:dana", "asap")
    assert len(await store.intake_history(record.conversation_id)) == 3
    assert await store.claim_mail("alerts", record.alert_id, time.time())  # the alert went out
    await store.mark_alert(record.alert_id, "sent", "dana@example.com", "Text from ...")
    await store.prune_batch(time.time() + 60, 100)
    rows = await store.intake_history(record.conversation_id)
    assert [(r["field"], r["source"], r["cause"]) for r in rows] == [("timing", "person", "asap")]
    assert all(text not in str(row) for row in rows)


async def test_only_a_persons_value_is_a_correction_and_only_an_extractors_a_suggestion(store):
    record = await store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "hi", "log", None, "dana")
    extracted = extract("kitchen", NOW).get("project")
    with pytest.raises(ValueError):
        await store.correct_intake(record.conversation_id, [extracted], "web:dana", "kitchen")
    with pytest.raises(ValueError):
        await store.suggest_intake(record.conversation_id, record.message_id, [extracted],
                                   "model:x", "hi")
    with pytest.raises(KeyError):
        await store.correct_intake(999, [correction("project", "bath")], "web:dana", "bath")
    assert await store.intake_history(record.conversation_id) == []
