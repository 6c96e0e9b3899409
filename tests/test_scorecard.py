"""The scorecard on seeded data with known answers."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from sms_gateway.segments import count_segments
from textback import store as store_module
from textback.cli import main
from textback.scorecard import build, csv_table
from textback.store import CallRow, PlannedText, Store


def test_build_counts_the_funnel():
    calls = [{"business_number": "+1", "outcome": o, "reason": r, "conversation_id": c}
             for o, r, c in [("missed", "no_answer", 1), ("missed", "busy", 2),
                             ("missed", "no_answer", 3), ("answered", "answered", None)]]
    m = lambda cid, d, k, t, s="sent": {"conversation_id": cid, "business_number": "+1",  # noqa: E731
                                        "direction": d, "kind": k, "status": s, "created_at": t,
                                        "template": "default" if k == "auto" else "",
                                        "segments": 2 if t == 1250 else 1}
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
    assert d["segments_sent"] == 5  # one of them costs two segments
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


OTHER_NUMBER = "+12125550199"
# The scorecard's message rows as `textback report` read them before the segment column:
# every text's body, counted by the scorecard.
OLD_REPORT_MESSAGES = (
    "SELECT m.id, m.conversation_id, c.business_number, m.direction, m.kind, m.status,"
    " m.created_at, m.template, CASE m.direction WHEN 'out' THEN m.body ELSE '' END AS body"
    " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
    " WHERE m.created_at >= ? AND m.created_at < ? AND c.selftest = 0")


async def old_report(store: Store, begin: float, end: float, label: str) -> tuple[str, str]:
    """`textback report --format json` and `--format csv` as the body-counting code printed them."""
    rows = await store.report_rows(begin, end)
    rows["messages"] = [dict(m, segments=count_segments(m["body"]).segments)
                        for m in map(dict, await store._all(OLD_REPORT_MESSAGES, (begin, end)))]
    cards = [card.as_dict() for card in build(**rows)]
    out = io.StringIO()
    csv.writer(out).writerows(csv_table(cards, label))
    return json.dumps({"period": label, "numbers": cards}, indent=2) + "\n", out.getvalue()


async def test_report_is_unchanged_for_texts_written_before_and_after_the_segment_column(
        tmp_path, monkeypatch):
    migrations = store_module.MIGRATIONS
    ours = next(i for i, script in enumerate(migrations) if "ADD COLUMN segments" in script)
    monkeypatch.setattr(store_module, "MIGRATIONS", migrations[:ours])
    path = write_config(tmp_path, base_config(tmp_path))
    old = await Store.open(tmp_path / "textback.db")
    now = time.time()
    texts = [  # conversation, direction, kind, body, status: segments counted
        (1, "out", "auto", "Hi, sorry we missed your call", "sent"),  # GSM-7: 1
        (1, "in", "", "Call me", "received"),
        (1, "out", "owner", "x" * 200, "sent"),  # GSM-7, long: 2
        (2, "out", "auto", "We’re on our way", "delivered"),  # UCS-2 (curly quote): 1
        (2, "in", "", "😀" * 40, "received"),  # inbound: not billed to us
        (2, "out", "owner", "’" + "a" * 70, "sent"),  # UCS-2, 71 units: 2
        (3, "out", "auto", "{" * 81, "delivered"),  # GSM-7 extension, 162 septets: 2
        (3, "out", "owner", "😀" * 40, "sent"),  # surrogate pairs, 80 units: 2
        (3, "out", "owner", "{" * 80, "failed"),  # not sent: not counted
        (4, "out", "auto", "😀" * 34, "sent"),  # 68 units: 1
    ]
    async with old._transaction() as db:
        for n, number in enumerate([BUSINESS_NUMBER, BUSINESS_NUMBER, OTHER_NUMBER, OTHER_NUMBER],
                                   start=1):
            caller = f"+1212555014{n}"
            await db.execute("INSERT INTO conversations (id, caller, business_number, owner_id,"
                             " status, created_at, updated_at) VALUES (?,?,?,'dana','open',?,?)",
                             (n, caller, number, now - 900, now - 100))
            await db.execute("INSERT INTO calls (linkedid, business_number, caller_raw, caller,"
                             " started_at, ended_at, outcome, reason, conversation_id) VALUES"
                             " (?,?,?,?,?,?,'missed','no_answer',?)",
                             (f"old.{n}", number, caller, caller, now - 900, now - 890, n))
        for at, (conversation, direction, kind, body, status) in enumerate(texts):
            await db.execute("INSERT INTO messages (conversation_id, direction, kind, template, body,"
                             " status, created_at) VALUES (?,?,?,?,?,?,?)",
                             (conversation, direction, kind or "auto",
                              "default" if kind == "auto" else "", body, status, now - 800 + at))
    await old.close()
    monkeypatch.setattr(store_module, "MIGRATIONS", migrations)

    store = await Store.open(tmp_path / "textback.db")  # the migration counts the old texts
    try:
        caller = "+12125550151"
        row = CallRow("new.1", BUSINESS_NUMBER, caller, caller, "", now - 60, None, now - 30,
                      "missed", "no_answer", "missed_call_text")
        await store.record_call(row, PlannedText("dana", "Merci ç" + "a" * 70, now))  # UCS-2: 2
        inbound = await store.record_inbound(caller, BUSINESS_NUMBER, "ok 😀", "log", None, "dana")
        await store.queue_reply(inbound.conversation_id, BUSINESS_NUMBER, caller, "€" * 100,
                                "owner")  # 200 septets: 2
        for i, item in enumerate(await store.due(time.time() + 1)):
            await store.claim(item.id)
            await store.mark_sent(item, "log", f"new{i}")
        label = "2000-01-01 to 2100-01-01"
        begin, end = datetime(2000, 1, 1).timestamp() - 86400, datetime(2100, 1, 1).timestamp()
        before_json, before_csv = await old_report(store, begin, end, label)
    finally:
        await store.close()

    def invoke(fmt: str):
        return asyncio.to_thread(CliRunner().invoke, main, [
            "report", "-c", str(path), "--from", "2000-01-01", "--to", "2100-01-01", "--format", fmt])

    result = await invoke("json")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == before_json.encode()
    cards = {card["business_number"]: card for card in json.loads(result.output)["numbers"]}
    assert (cards[BUSINESS_NUMBER]["texts_sent"], cards[BUSINESS_NUMBER]["segments_sent"]) == (6, 10)
    assert (cards[OTHER_NUMBER]["texts_sent"], cards[OTHER_NUMBER]["segments_sent"]) == (3, 5)
    result = await invoke("csv")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == before_csv.encode()  # byte for byte, CRLF line ends included
