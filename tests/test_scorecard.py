"""The scorecard on seeded data with known answers."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from textback.cli import main
from textback.scorecard import build
from textback.store import CallRow, PlannedText, Store


def test_build_counts_the_funnel():
    calls = [{"business_number": "+1", "outcome": o, "reason": r, "conversation_id": c}
             for o, r, c in [("missed", "no_answer", 1), ("missed", "busy", 2),
                             ("missed", "no_answer", 3), ("answered", "answered", None)]]
    m = lambda cid, d, k, t, s="sent": {"conversation_id": cid, "business_number": "+1",  # noqa: E731
                                        "direction": d, "kind": k, "status": s, "created_at": t,
                                        "template": "default" if k == "auto" else "",
                                        "body": "x" * 200 if t == 1250 else "hi"}
    messages = [m(1, "out", "auto", 0), m(1, "in", "", 100, "received"), m(1, "out", "owner", 400),
                m(2, "out", "auto", 0), m(2, "in", "", 50, "received"), m(2, "out", "owner", 1250),
                m(3, "out", "auto", 0, "failed")]
    outcomes = [{"conversation_id": 1, "business_number": "+1", "stage": "booked", "value": None, "at": 1},
                {"conversation_id": 1, "business_number": "+1", "stage": "won", "value": 82000, "at": 2},
                {"conversation_id": 1, "business_number": "+1", "stage": "won", "value": 80000, "at": 1}]
    [card] = build(calls, messages, outcomes, [{"business_number": "+1"}])
    d = card.as_dict()
    assert d["missed_calls"] == 3 and d["missed_by_reason"] == {"busy": 1, "no_answer": 2}
    assert d["texts_sent"] == 4  # two auto texts sent, two owner answers; the failed one is not
    assert d["segments_sent"] == 5  # one of them is 200 GSM-7 characters: two segments
    assert d["replies"] == 2 and d["reply_rate"] == 1.0
    assert d["median_minutes_reply_to_human_answer"] == 12.5  # (5 min + 20 min) / 2
    assert (d["booked"], d["won"], d["won_value"]) == (1, 1, 82000)  # the latest #won counts
    assert d["opt_outs"] == 1
    assert d["reply_rate_by_template"] == {"default": 1.0}


async def test_report_command_on_a_seeded_database(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path))
    store = await Store.open(tmp_path / "textback.db")
    now = time.time()
    for i, caller in enumerate(["+12125550111", "+12125550112"]):
        row = CallRow(f"1.{i}", BUSINESS_NUMBER, caller, caller, "", now - 60, None, now,
                      "missed", "no_answer", "missed_call_text")
        outbox_id = await store.record_call(row, PlannedText("dana", "Hi", now))
        [item] = [x for x in await store.due(now + 1) if x.id == outbox_id]
        await store.claim(item.id)
        await store.mark_sent(item, "log", f"id{i}")
    inbound = await store.record_inbound("+12125550111", BUSINESS_NUMBER, "Yes", "log", None, "dana")
    await store.record_outcome(inbound.conversation_id, "won", 82000, "test")
    await store.close()

    month = datetime.now(ZoneInfo("America/New_York")).strftime("%Y-%m")

    def invoke(*args: str):
        return asyncio.to_thread(CliRunner().invoke, main, ["report", "-c", str(path), *args])

    result = await invoke("--month", month, "--format", "json")
    assert result.exit_code == 0, result.output
    [card] = json.loads(result.output)["numbers"]
    assert (card["missed_calls"], card["texts_sent"], card["replies"]) == (2, 2, 1)
    assert card["reply_rate"] == 0.5 and card["won_value"] == 82000
    table = await invoke("--month", month)
    assert "value 82,000" in table.output
    csv_out = await invoke("--month", month, "--format", "csv")
    assert csv_out.output.splitlines()[0].startswith("period,business_number,missed_calls")
