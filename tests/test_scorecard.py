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
from hypothesis import given, settings, strategies as st

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from textback.core.segments import count_segments
from textback.store import migrations as store_module
from textback.cli import main
from textback.core.scorecard import build, csv_table, funnel, intake_csv_table, render_text
from textback.web.reports import month_period
from textback.store import CallRow, PlannedText, Store


def test_build_counts_conversations_through_the_funnel_each_stage_within_the_one_before():
    def call(conversation, reason="no_answer", text=None, outcome="missed", at=10):
        return {"business_number": "+1", "outcome": outcome, "reason": reason,
                "conversation_id": conversation, "started_at": at, "text_status": text,
                "text_at": at + 60 if text else None, "text_template": "default" if text else None}

    calls = [call(1, text="sent"), call(1, at=20),  # a second miss the same day: no text
             call(2, "busy", text="delivered"), call(3, text="failed"),  # refused: not texted
             call(4),  # already talking (open_conversation): no automatic text
             call(None, "voicemail"),  # a withheld number: nobody to text
             call(5, "answered", outcome="answered")]
    m = lambda cid, d, k, t, s="sent": {"conversation_id": cid, "business_number": "+1",  # noqa: E731
                                        "direction": d, "kind": k, "status": s, "created_at": t,
                                        "template": "default" if k == "auto" else "",
                                        "segments": 2 if t == 1250 else 1}
    messages = [m(1, "out", "auto", 70), m(1, "in", "", 100, "received"), m(1, "out", "owner", 400),
                m(2, "out", "auto", 70, "delivered"), m(2, "in", "", 50, "received"),
                m(2, "out", "owner", 1250), m(3, "out", "auto", 70, "failed"),
                m(5, "out", "owner", 900, "undelivered")]  # the gateway took it: it is billed
    replies = [{"conversation_id": 1, "created_at": 100},
               {"conversation_id": 2, "created_at": 50}]  # before its text: not a reply to it
    o = lambda cid, stage, at, value=None: {"conversation_id": cid, "stage": stage,  # noqa: E731
                                            "value": value, "at": at}
    outcomes = [o(1, "booked", 500), o(1, "won", 900, 82000), o(1, "won", 800, 80000),
                o(2, "booked", 600), o(2, "lost", 700),  # booked by phone, then lost
                o(4, "won", 900, 5000),  # never texted: outside the funnel
                o(3, "booked", 5)]  # before its missed call: another story
    [card] = build(calls, messages, outcomes, [{"business_number": "+1"}], replies)
    d = card.as_dict()
    assert [(k, n) for k, _, n, _ in funnel(d)] == [
        ("missed", 5), ("texted", 2), ("replies", 2), ("booked", 2), ("qualified", 1), ("won", 1)]
    # won implies qualified and booked; a booking implies a reply (by phone, for number 2)
    assert d["conversions"] == {"texted": 0.4, "replies": 1.0, "booked": 1.0, "qualified": 0.5,
                                "won": 1.0}
    assert (d["won_value"], d["lost"]) == (82000, 1)  # the latest #won counts
    assert d["missed_calls"] == 6 and d["missed_by_reason"] == {"busy": 1, "no_answer": 4,
                                                                "voicemail": 1}
    assert d["texts_sent"] == 5  # every text the gateway took, whatever its kind
    assert d["segments_sent"] == 6  # one of them costs two segments
    assert d["reply_rate"] == 1.0 and d["reply_rate_by_template"] == {"default": 1.0}
    assert d["median_minutes_reply_to_human_answer"] == 12.5  # (5 min + 20 min) / 2
    assert d["opt_outs"] == 1


_CONVERSATION = st.one_of(st.none(), st.integers(1, 6))
_CALLS = st.lists(st.fixed_dictionaries({
    "business_number": st.sampled_from(["+1", "+2"]), "outcome": st.sampled_from(["missed", "answered"]),
    "reason": st.just("no_answer"), "conversation_id": _CONVERSATION, "started_at": st.integers(0, 100),
    "text_status": st.sampled_from([None, "sent", "delivered", "undelivered", "failed", "pending"]),
    "text_at": st.integers(0, 200), "text_template": st.sampled_from([None, "default", "b"])}),
    max_size=12)
_OUTCOMES = st.lists(st.fixed_dictionaries({
    "conversation_id": st.integers(1, 6), "at": st.integers(0, 300), "value": st.just(1000.0),
    "stage": st.sampled_from(["booked", "qualified", "won", "lost", "spam"])}), max_size=12)
_REPLIES = st.lists(st.fixed_dictionaries({
    "conversation_id": st.integers(1, 6), "created_at": st.integers(0, 300)}), max_size=12)


@settings(max_examples=300, deadline=None)
@given(_CALLS, _OUTCOMES, _REPLIES)
def test_each_stage_of_the_funnel_is_within_the_one_before_whatever_the_rows(calls, outcomes,
                                                                              replies):
    for card in build(calls, [], outcomes, [], replies):
        counts = [n for _, _, n, _ in funnel(card.as_dict())]
        assert counts == sorted(counts, reverse=True), counts
        assert all(rate is None or 0 <= rate <= 1 for _, _, _, rate in funnel(card.as_dict()))


async def test_one_missed_call_and_many_texts_add_up_everywhere_and_self_tests_never_count(
        tmp_path):
    """The month that showed "texted 16" and "won 1, qualified 0" for one missed call."""
    path = write_config(tmp_path, base_config(tmp_path))
    store = await Store.open(tmp_path / "textback.db")
    now = time.time()
    caller = "+12125550111"
    await store.record_call(CallRow("1.1", BUSINESS_NUMBER, caller, caller, "", now - 60, None,
                                    now - 50, "missed", "no_answer", "missed_call_text"),
                            PlannedText("dana", "Sorry we missed you", now - 50))
    selftest = CallRow("st.1", BUSINESS_NUMBER, "selftest", None, "", now - 40, None, now - 30,
                       "missed", "no_answer", "missed_call_text")
    await store.record_selftest_call(selftest, "+12125550160", PlannedText("", "Self-test", now))
    inbound = await store.record_inbound(caller, BUSINESS_NUMBER, "Kitchen", "log", None, "dana")
    for n in range(14):
        await store.queue_reply(inbound.conversation_id, BUSINESS_NUMBER, caller, f"Answer {n}",
                                "owner")
    for i, item in enumerate(await store.due(now + 1)):
        await store.claim_all([item])
        await store.mark_all_sent([(item, f"id{i}")], "log")
    await store.record_outcome(inbound.conversation_id, "won", 82000, "test")
    month = datetime.now(ZoneInfo("America/New_York")).strftime("%Y-%m")
    begin, end = month_period(month, "America/New_York")
    cards = await store.scorecard(begin, end, month)
    await store.close()

    [card] = cards
    assert [(name, n) for _, name, n, _ in funnel(card)] == [
        ("missed", 1), ("texted", 1), ("replied", 1), ("booked", 1), ("qualified", 1), ("won", 1)]
    assert (card["texts_sent"], card["missed_calls"]) == (15, 1)  # the self-test's text is not

    def invoke(*args: str):
        return asyncio.to_thread(CliRunner().invoke, main,
                                 ["report", "-c", str(path), "--month", month, *args])

    assert json.loads((await invoke("--format", "json")).output)["numbers"] == cards
    table = (await invoke()).output
    funnel_part, _, intake_views = table.strip().partition("\n\nBy project type")
    assert funnel_part == render_text(cards, month, "America/New_York")
    assert "(not known)" in intake_views  # the intake views follow (test_scorecard_intake.py)
    assert "  texted                1   100% of missed\n" in table
    assert "  won                   1   100% of qualified   value 82,000\n" in table
    assert "  cost                 15   texts sent, 15 segments\n" in table
    [header, row, gap, *intake_rows] = list(csv.reader(io.StringIO(
        (await invoke("--format", "csv")).output)))
    assert gap == [] and intake_rows[0][:3] == ["period", "view", "group"]
    figures = dict(zip(header, row))
    assert [figures[k] for k in ("missed", "texted", "replies", "booked", "qualified", "won",
                                 "texted_of_missed", "won_of_qualified", "texts_sent")] == [
        "1", "1", "1", "1", "1", "1", "1.0", "1.0", "15"]


async def test_report_command_on_a_seeded_database(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path))
    store = await Store.open(tmp_path / "textback.db")
    now = time.time()
    for i, caller in enumerate(["+12125550111", "+12125550112"]):
        row = CallRow(f"1.{i}", BUSINESS_NUMBER, caller, caller, "", now - 60, None, now,
                      "missed", "no_answer", "missed_call_text")
        outbox_id = await store.record_call(row, PlannedText("dana", "Hi", now))
        [item] = [x for x in await store.due(now + 1) if x.id == outbox_id]
        await store.claim_all([item])
        await store.mark_all_sent([(item, f"id{i}")], "log")
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
    assert (card["missed"], card["texted"], card["won"]) == (2, 2, 1)
    assert card["reply_rate"] == 0.5 and card["won_value"] == 82000
    table = await invoke("--month", month)
    assert "value 82,000" in table.output
    csv_out = await invoke("--month", month, "--format", "csv")
    assert csv_out.output.splitlines()[0].startswith("period,business_number,missed,texted")


OTHER_NUMBER = "+12125550199"
# The scorecard's message rows as `textback report` read them before the segment column:
# every text's body, counted by the scorecard.
OLD_REPORT_MESSAGES = (
    "SELECT m.id, m.conversation_id, c.business_number, m.direction, m.kind, m.status,"
    " m.created_at, m.template, CASE m.direction WHEN 'out' THEN m.body ELSE '' END AS body"
    " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
    " WHERE m.created_at >= ? AND m.created_at < ? AND c.selftest = 0")


async def old_report(store: Store, begin: float, end: float, label: str) -> tuple[str, str]:
    """`textback report --format json` and `--format csv` as the body-counting code printed them,
    with the intake views (which count no segments) after the cards."""
    rows = await store.report_rows(begin, end)
    rows["messages"] = [dict(m, segments=count_segments(m["body"]).segments)
                        for m in map(dict, await store._all(OLD_REPORT_MESSAGES, (begin, end)))]
    cards = [card.as_dict() for card in build(**rows)]
    views = await store.scorecard_by_intake(begin, end)
    out = io.StringIO()
    csv.writer(out).writerows([*csv_table(cards, label), [], *intake_csv_table(views, label)])
    return (json.dumps({"period": label, "numbers": cards, "intake": views}, indent=2) + "\n",
            out.getvalue())


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
            await store.claim_all([item])
            await store.mark_all_sent([(item, f"new{i}")], "log")
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
