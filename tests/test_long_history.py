"""The benchmark's long histories (lab/long_history.py) hold the rows the store writes.

The builder writes a stretch of calls through the store's own methods and copies its rows
forward in time. Each copy must be, caller by caller, field by field, the story the store
wrote for the stretch: the same conversations, messages, calls, texts queued and sent,
alerts, assignments, outcomes, intake facts, search entries, events and consent facts, apart
from ids, the caller's number and the moment. This test reads the rows back on its own
terms (every id turned into the position of what it names within the caller's story, every
time made relative to the caller's first call) and compares the copies with the stretch, on
both backends. Then the store's kept state must agree with the history counted afresh, and
the store must go on writing after the copies (new ids, no collision).
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from lab.history import BUSINESS_NUMBERS, Shape
from lab.long_history import build_long_history
from textback.store import CallRow, PlannedText
from tests.conftest import open_store_at
from tests.test_kept_counts import COUNTED_WAITING, KEPT_WAITING

STRETCH, COPIES = 200, 3  # two days of calls, three times
# Every kind of row: more opt-outs than a business sees, and escalations to a backup owner.
SHAPE = Shape(opt_outs=0.1, escalated=0.3)
# The columns and JSON keys that hold an id, and what each names (owner_id is a name).
IDS = {"conversation_id": "conversations", "message_id": "messages",
       "last_reply_id": "messages", "outbox_id": "outbox"}
CALL_KEY = re.compile(r"(?:history|in)-(\d+)-(\d+)")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """The store's location: SQLite's file, or a fresh PostgreSQL database owned by the
    superuser (the builder copies rows with triggers off, which needs one)."""
    if request.param == "sqlite":
        return tmp_path / "t.db"
    server = request.getfixturevalue("postgres_server")
    return server.new_database(template=request.getfixturevalue("postgres_template"))


def read(target: Path | str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables a history writes, in the order they were written."""
    tables = ("conversations", "messages", "calls", "outbox", "alerts", "notices",
              "assignments", "outcomes", "escalations", "suppressions", "intake_facts",
              "events", "consent_ledger", "conversation_search", "conversation_turns")
    if isinstance(target, Path):
        db = sqlite3.connect(target)
        db.row_factory = sqlite3.Row
        try:
            return {table: [dict(row) for row in db.execute(
                "SELECT rowid, conversation_id, text FROM conversation_search ORDER BY rowid"
                if table == "conversation_search" else f"SELECT * FROM {table} ORDER BY rowid")]
                for table in tables}
        finally:
            db.close()
    with psycopg.connect(target, row_factory=dict_row) as db:
        return {table: list(db.execute(
            f"SELECT * FROM {table} ORDER BY "
            + ("rowid" if table == "conversation_search" else
               "id" if table not in ("escalations", "suppressions", "conversation_turns")
               else "1"))) for table in tables}


class Story:
    """One caller's rows, with ids as positions in the story and times from its first call."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]], caller: str) -> None:
        self.caller = caller
        conversations = [c for c in rows["conversations"] if c["caller"] == caller]
        ids = {c["id"] for c in conversations}
        messages = [m for m in rows["messages"] if m["conversation_id"] in ids]
        message_ids = {m["id"] for m in messages}
        outbox = [o for o in rows["outbox"] if o["message_id"] in message_ids]
        calls = [c for c in rows["calls"] if c["caller"] == caller]
        self.positions = {
            "conversations": {c["id"]: i for i, c in enumerate(conversations)},
            "messages": {m["id"]: i for i, m in enumerate(messages)},
            "outbox": {o["id"]: i for i, o in enumerate(outbox)},
            "calls": {(int(seed), int(index)): i for i, c in enumerate(calls)
                      for seed, index in [CALL_KEY.fullmatch(c["linkedid"]).groups()]},
        }
        self.base = calls[0]["started_at"]
        keys = {f"conversation:{i}" for i in ids} | {f"number:{caller}"}
        self.parts = {
            "conversations": conversations, "messages": messages, "outbox": outbox,
            "calls": calls,
            **{table: [r for r in rows[table] if r["conversation_id"] in ids]
               for table in ("alerts", "assignments", "outcomes", "intake_facts",
                             "conversation_search")},
            "escalations": [e for e in rows["escalations"] if e["message_id"] in message_ids],
            "events": [e for e in rows["events"] if e["order_key"] in keys],
            "consent_ledger": [f for f in rows["consent_ledger"] if f["number"] == caller],
            "suppressions": [s for s in rows["suppressions"] if s["number"] == caller],
        }

    def ref(self, table: str, value: int) -> tuple:
        """What an id names, as its position in the story; failing if it names another's."""
        assert value in self.positions[table], f"{self.caller}: {table} {value} is not its own"
        return (table, self.positions[table][value])

    def normal(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: self.normal(v, k) for k, v in value.items()
                    if k not in ("id", "event_id", "idempotency_key", "company_id", "version")}
        if isinstance(value, list):
            return [self.normal(item) for item in value]
        if key in IDS and isinstance(value, int):
            return self.ref(IDS[key], value)
        if key == "rowid":  # the search index: a message's id, or minus its conversation's
            return (self.ref("messages", value) if value > 0
                    else ("caller line", self.ref("conversations", -value)))
        if isinstance(value, float) and value >= self.base - 86400:
            return ("time", value - self.base)
        if not isinstance(value, str):
            return value
        if value == self.caller:
            return "CALLER"
        if RFC3339.fullmatch(value):
            return ("time", datetime.fromisoformat(value).timestamp() - self.base)
        if match := CALL_KEY.fullmatch(value):
            return (value.split("-")[0], self.ref("calls", (int(match[1]), int(match[2]))))
        if match := re.fullmatch(r"gw-(\d+)", value):
            return ("gateway id", self.ref("outbox", int(match[1])))
        if value == f"number:{self.caller}":
            return ("order key", "CALLER")
        if match := re.fullmatch(r"conversation:(\d+)", value):
            return ("order key", self.ref("conversations", int(match[1])))
        if value.startswith(("{", "[")):
            return self.normal(json.loads(value), key)
        return value

    def told(self) -> dict[str, list]:
        return {name: [self.normal(row) for row in part] for name, part in self.parts.items()}


def assert_same(copy: Any, stretch: Any, where: str = "") -> None:
    """Equal, times to the millisecond (RFC 3339 strings carry milliseconds)."""
    if isinstance(stretch, tuple) and stretch[:1] == ("time",):
        assert copy[0] == "time" and math.isclose(copy[1], stretch[1], abs_tol=2e-3), where
    elif isinstance(stretch, (dict, list, tuple)):
        assert type(copy) is type(stretch) and len(copy) == len(stretch), \
            f"{where}: {copy!r} != {stretch!r}"
        if isinstance(stretch, dict):
            assert copy.keys() == stretch.keys(), where
            for key in stretch:
                assert_same(copy[key], stretch[key], f"{where}.{key}")
        else:
            for i, (mine, theirs) in enumerate(zip(copy, stretch)):
                assert_same(mine, theirs, f"{where}[{i}]")
    else:
        assert copy == stretch, f"{where}: {copy!r} != {stretch!r}"


def callers_in_order(calls: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(c["caller"] for c in calls))


async def test_each_copy_is_what_the_store_wrote_for_the_stretch(target):
    # The stretch before 2001 (Unix time 1e9), the copies after: a 1M-call history at 100
    # calls a day starts 27 years back, and its times are moved whatever their size.
    end = 1e9 + 4 * 86400
    counts = await build_long_history(lambda: open_store_at(target), target, STRETCH * COPIES,
                                      end, template_calls=STRETCH, shape=SHAPE)
    rows = read(target)
    assert len(rows["calls"]) == counts["calls"] == STRETCH * COPIES
    assert math.isclose(rows["calls"][-1]["started_at"], end - 864)  # 100 calls a day
    copies = [callers_in_order(rows["calls"][k * STRETCH:(k + 1) * STRETCH])
              for k in range(COPIES)]
    assert len({c for copy in copies for c in copy}) == sum(map(len, copies)), \
        "a copy's callers are new callers"
    assert len(copies[0]) > 100 and all(len(copy) == len(copies[0]) for copy in copies)

    stories = [[Story(rows, caller) for caller in copy] for copy in copies]
    for k in range(1, COPIES):
        for stretch, copy in zip(stories[0], stories[k]):
            assert_same(copy.told(), stretch.told(), f"copy {k}, {copy.caller}")
            assert math.isclose(copy.base - stretch.base, k * STRETCH * 864, abs_tol=1e-3)
    # Every row of those tables is in some caller's story: nothing went uncompared.
    for table in stories[0][0].parts:
        told = sum(len(story.parts[table]) for copy in stories for story in copy)
        assert told == len(rows[table]), table
        assert rows[table], f"the history wrote no {table}"
    # The daily digests, each copy's moved by its stretches.
    per_copy = len(rows["notices"]) // COPIES
    assert per_copy and len(rows["notices"]) == per_copy * COPIES
    for k in range(1, COPIES):
        for copy, stretch in zip(rows["notices"][k * per_copy:], rows["notices"][:per_copy]):
            assert {**copy, "id": 0, "created_at": 0, "sent_at": 0} == \
                {**stretch, "id": 0, "created_at": 0, "sent_at": 0}
            assert math.isclose(copy["created_at"] - stretch["created_at"], k * STRETCH * 864)
    # Unique keys stay unique; each event's body names the event.
    for table, key in (("events", "event_id"), ("outbox", "idempotency_key"),
                       ("calls", "linkedid")):
        assert len({row[key] for row in rows[table]}) == len(rows[table]), table
    assert all(json.loads(e["body"])["id"] == e["event_id"] for e in rows["events"])


async def test_the_kept_state_is_the_history_counted_and_the_store_writes_on(target):
    end = time.time() - 3600
    await build_long_history(lambda: open_store_at(target), target, STRETCH * COPIES, end,
                             template_calls=STRETCH, shape=SHAPE)
    if isinstance(target, Path):
        db = sqlite3.connect(target)
        counted, kept = db.execute(COUNTED_WAITING).fetchall(), db.execute(KEPT_WAITING).fetchall()
        turns = db.execute("SELECT business_number, started FROM conversation_turns").fetchall()
        started = db.execute("SELECT business_number, COUNT(*) FROM conversations"
                             " GROUP BY business_number").fetchall()
        db.close()
    else:
        with psycopg.connect(target) as db:
            counted, kept = db.execute(COUNTED_WAITING).fetchall(), db.execute(KEPT_WAITING).fetchall()
            turns = db.execute("SELECT business_number, started FROM conversation_turns").fetchall()
            started = db.execute("SELECT business_number, COUNT(*) FROM conversations"
                                 " GROUP BY business_number").fetchall()
    assert counted and [tuple(r) for r in kept] == [tuple(r) for r in counted]
    assert sorted(map(tuple, turns)) == sorted(map(tuple, started))

    store = await open_store_at(target)
    try:
        now = time.time()
        caller = "+12125550199"
        outbox_id = await store.record_call(CallRow(
            linkedid="after-the-history", business_number=BUSINESS_NUMBERS[0], caller_raw=caller,
            caller=caller, caller_name="", started_at=now - 30, answered_at=None, ended_at=now,
            outcome="missed", reason="no_answer", decision="missed_call_text"),
            PlannedText("dana", "Sorry we missed your call.", now, "missed_call"), owner_id="dana")
        inbound = await store.record_inbound(caller, BUSINESS_NUMBERS[0], "Call me back?", "log",
                                             "after-1", "dana")
        waiting = await store.waiting_replies(time.time() + 1)
    finally:
        await store.close()
    rows = read(target)
    assert outbox_id == max(o["id"] for o in rows["outbox"])
    assert inbound.message_id == max(m["id"] for m in rows["messages"])
    assert inbound.conversation_id == max(c["id"] for c in rows["conversations"])
    assert [w["message_id"] for w in waiting if w["caller"] == caller] == [inbound.message_id]
