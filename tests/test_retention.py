"""Retention: whole months go, their scorecards stay, opt-outs and texts in flight are never pruned."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import time_machine
from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from lab.history import OWNERS, Shape, build_history
from textback.core import retention
from textback.cli import main
from textback.pruning import prune
from textback.store import PlannedText, Store, CallRow

NY = "America/New_York"
MONTHS = 6


def at(*args) -> float:
    return datetime(*args, tzinfo=ZoneInfo(NY)).timestamp()


def test_the_horizon_is_a_first_of_the_month_in_the_business_time_zone():
    assert retention.horizon(at(2027, 3, 15, 10), 24, NY) == at(2025, 3, 1)
    assert retention.horizon(at(2027, 1, 1, 0, 30), 1, NY) == at(2026, 12, 1)
    assert retention.horizon(at(2027, 3, 1, 0, 0), 14, NY) == at(2026, 1, 1)
    months = retention.months_between(at(2026, 11, 20), at(2027, 2, 1), NY)
    assert [(m.label, m.start, m.end) for m in months] == [
        ("2026-11", at(2026, 11, 1), at(2026, 12, 1)), ("2026-12", at(2026, 12, 1), at(2027, 1, 1)),
        ("2027-01", at(2027, 1, 1), at(2027, 2, 1))]
    assert retention.months_between(at(2027, 2, 3), at(2027, 2, 1), NY) == []


def test_batches_follow_how_long_the_last_one_held_the_lock():
    assert retention.next_batch(200, 0.030) == 100
    assert retention.next_batch(200, 0.001) == 400
    assert retention.next_batch(200, 0.012) == 200
    assert retention.next_batch(retention.MIN_BATCH, 1.0) == retention.MIN_BATCH
    assert retention.next_batch(retention.MAX_BATCH, 0.0) == retention.MAX_BATCH


async def cli(*args: str):
    result = await asyncio.to_thread(CliRunner().invoke, main, list(args))
    assert result.exit_code == 0, result.output
    return result


async def history(tmp_path, now: float):
    """A year of calls (3 a day), and one text from long ago that is still waiting to go."""
    store = await Store.open(tmp_path / "textback.db")
    try:
        await build_history(store, 1100, now - 86400, Shape(calls_per_day=3, opt_outs=0.2))
        with time_machine.travel(now - 300 * 86400, tick=False):
            await store.record_call(
                CallRow("stuck", BUSINESS_NUMBER, "+12125550177", "+12125550177", "",
                        time.time(), None, time.time(), "missed", "no_answer", "missed_call_text"),
                PlannedText(OWNERS[0], "Sorry we missed you", time.time() + 10**9))
    finally:
        await store.close()


def counts(path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("calls", "messages", "alerts", "suppressions", "conversations")}
    finally:
        db.close()


async def test_prune_keeps_old_reports_and_opt_outs_and_says_first_what_would_go(tmp_path):
    now = time.time()
    await history(tmp_path, now)
    config = write_config(tmp_path, base_config(tmp_path, **{
        "retention.months": MONTHS, "business.timezone": NY,
        "owners": [{"id": o, "name": o.title(), "email": f"{o}@example.com"} for o in OWNERS]}))
    old = datetime.fromtimestamp(now - 250 * 86400, ZoneInfo(NY)).strftime("%Y-%m")
    report_before = json.loads((await cli("report", "-c", str(config), "--month", old,
                                   "--format", "json")).stdout)
    assert report_before["numbers"] and report_before["numbers"][0]["missed_calls"] > 0
    before = counts(tmp_path / "textback.db")
    assert before["suppressions"] > 0

    dry = (await cli("prune", "-c", str(config), "--dry-run")).stdout
    assert counts(tmp_path / "textback.db") == before  # a dry run changes nothing
    store = await Store.open(tmp_path / "textback.db")
    try:
        result = await prune(store, MONTHS, NY, now)
        horizon = retention.horizon(now, MONTHS, NY)
        assert not await store._all("SELECT 1 FROM calls WHERE started_at < ?", (horizon,))
        left = await store._all("SELECT body FROM messages WHERE created_at < ?", (horizon,))
        assert [row["body"] for row in left] == ["Sorry we missed you"]  # still waiting to go
    finally:
        await store.close()
    deleted = result.deleted
    assert f"{deleted['calls']} call(s), {deleted['messages']} message(s) and " \
           f"{deleted['alerts']} alert(s) would be deleted" in dry
    after = counts(tmp_path / "textback.db")
    assert deleted["calls"] > 500 and after["calls"] == before["calls"] - deleted["calls"]
    assert after["messages"] == before["messages"] - deleted["messages"]
    assert after["alerts"] == before["alerts"] - deleted["alerts"] and deleted["alerts"] > 0
    assert (after["suppressions"], after["conversations"]) == (
        before["suppressions"], before["conversations"])
    # Batches are small: a typical one holds the write lock for a few ms (the longest also
    # waits for its commit's fsync, which a busy disk can stretch whatever the batch's size).
    assert len(result.batch_seconds) > 1
    assert statistics.median(result.batch_seconds) <= retention.MAX_BATCH_SECONDS

    report_after = json.loads((await cli("report", "-c", str(config), "--month", old,
                                  "--format", "json")).stdout)
    # The funnel of a month summed up is kept whole; its intake views (by project, by area) are
    # read from the conversations' rows, so they go with them.
    intake_before, intake_after = report_before.pop("intake"), report_after.pop("intake")
    assert report_after == report_before
    assert intake_before["project"] and intake_after == {"project": [], "area": []}
    again = (await cli("prune", "-c", str(config))).stdout
    assert "0 call(s), 0 message(s) and 0 alert(s) were deleted" in again
    ranged = await cli("report", "-c", str(config), "--from", f"{old}-01", "--to",
                       datetime.fromtimestamp(now, ZoneInfo(NY)).strftime("%Y-%m-%d"))
    assert "were pruned (retention.months)" in ranged.stderr


async def test_the_daemon_prunes_when_it_starts_and_daily(tmp_path):
    from lab.harness import eventually, in_process
    from textback.config import load
    from textback.daemon import Daemon

    now = time.time()
    await history(tmp_path, now)
    before = counts(tmp_path / "textback.db")
    config = write_config(tmp_path, base_config(tmp_path, **{
        "retention.months": MONTHS, "business.timezone": NY,
        "owners": [{"id": o, "name": o.title(), "email": f"{o}@example.com"} for o in OWNERS]}))
    async with in_process(Daemon(load(config))) as daemon:
        pruned = await eventually(lambda: daemon.store.progress("pruned_before"), 20,
                                  "the daemon's first prune")
    assert pruned == retention.horizon(time.time(), MONTHS, NY)
    after = counts(tmp_path / "textback.db")
    assert after["calls"] < before["calls"] and after["suppressions"] == before["suppressions"]


async def test_retention_clears_what_old_reply_addresses_quoted_and_keeps_them_working(store):
    """A reply address keeps the lines of its alert (the homeowner's words) to strip them from a
    reply; they go with the month they came from, and the address still takes a reply."""
    now = time.time()
    inbound = await store.record_inbound("+12125550123", BUSINESS_NUMBER, "Kitchen remodel", "log",
                                         None, "dana")
    old = await store.reply_token(inbound.conversation_id, "dana", 400 * 86400, ("Kitchen remodel",))
    recent = await store.reply_token(inbound.conversation_id, "dana", 30 * 86400, ("Bathroom",))
    async with store._transaction() as db:  # the text and its alert were 200 days ago
        await db.execute("UPDATE reply_tokens SET created_at = ? WHERE token = ?",
                         (now - 200 * 86400, old))
        await db.execute("UPDATE messages SET created_at = ?", (now - 200 * 86400,))
    assert (await prune(store, 3, NY, now, dry_run=True)).deleted["quotes"] == 1
    result = await prune(store, 3, NY, now)
    assert result.deleted["quotes"] == 1
    assert (await store.token(old, now))["quoted"] == ()
    assert (await store.token(recent, now))["quoted"] == ("Bathroom",)


async def test_retention_deletes_the_reply_tokens_that_expired_and_keeps_the_live_ones(store):
    """An expired reply address takes no reply (it is refused as an unknown one is): its row is
    deleted, whatever its month, even when no call or text is old enough to prune."""
    now = time.time()
    inbound = await store.record_inbound("+12125550123", BUSINESS_NUMBER, "Kitchen remodel", "log",
                                         None, "dana")
    expired = await store.reply_token(inbound.conversation_id, "dana", 60, ("Kitchen remodel",))
    live = await store.reply_token(inbound.conversation_id, "dana", 30 * 86400)
    later = now + 3600  # the first one's hour is up; nothing is months old
    assert (await prune(store, 3, NY, later, dry_run=True)).deleted["reply_tokens"] == 1
    assert await store._one("SELECT 1 FROM reply_tokens WHERE token = ?", (expired,))
    result = await prune(store, 3, NY, later)
    assert result.deleted["reply_tokens"] == 1 and result.deleted["messages"] == 0
    assert await store._one("SELECT 1 FROM reply_tokens WHERE token = ?", (expired,)) is None
    assert await store.token(live, later) is not None
    assert (await prune(store, 3, NY, later)).deleted["reply_tokens"] == 0
