"""A call whose Hangup never arrives: the tracker lets it go after inbound.max_call_hours, and
Asterisk's CDR decides it (or, with no CDR, it is recorded as seen, without a text).

The call is the lab's recorded no-answer call, cut where AMI dropped while the phone rang;
the CDR is the lab's recorded rows of the same flow in a real Master.csv, given the trace's
call id. A real store, the SMTP sink, no AMI.
"""

from __future__ import annotations

import asyncio
import time

from pydantic import SecretStr

import textback.workers.pbx as pbx_module
from ami_listener.connection import AmiConnection
from tests.cdr_rows import as_csv, load_fields, moved
from tests.replay import load_trace
from tests.test_recovery_daemon import recovery_config
from textback.core.recovery import CsvLayout
from textback.core.tracker import CallOverdue, CallTracker
from textback.workers.common import SystemClock

LIMIT = 4 * 3600  # the default inbound.max_call_hours
CALLER = "+12125550123"
LINKEDID = next(e["Linkedid"] for e in load_trace("noanswer") if e.get("Event") == "Newchannel")


def cut_while_ringing() -> list[dict]:
    """The no-answer call up to the moment AMI dropped: ringing, before any DialEnd or Hangup."""
    events = load_trace("noanswer")
    return events[:next(i for i, e in enumerate(events) if e["Event"] == "DialEnd")]


def cdr_rows_of_the_same_call(ended_at: float) -> str:
    """The recorded CDR of the no-answer flow, its call id made the trace's."""
    columns = CsvLayout().columns()
    recorded = load_fields("noanswer")[0][columns.index("linkedid")].split(".")[0]
    rows = moved("noanswer", ended_at)
    for row in rows:
        for name in ("uniqueid", "linkedid"):
            row[columns.index(name)] = row[columns.index(name)].replace(recorded, LINKEDID.split(".")[0])
    return as_csv(rows)


def test_a_call_with_no_hangup_is_let_go_at_the_limit_and_one_that_hung_up_is_not():
    tracker = CallTracker(["carrier"], [], grace=0.5, max_open=LIMIT)
    for event in cut_while_ringing():
        tracker.feed(event, 1000.0 + event["_t"])
    started = 1000.0 + next(e["_t"] for e in load_trace("noanswer") if e["Event"] == "Newchannel")
    assert tracker.next_deadline() == started + LIMIT
    assert tracker.expire(started + LIMIT - 1) == [] and tracker.is_tracking(LINKEDID)
    [overdue] = tracker.expire(started + LIMIT)
    assert isinstance(overdue, CallOverdue) and overdue.call_id == LINKEDID
    assert (overdue.started_at, overdue.as_seen.caller_id, overdue.as_seen.outcome,
            overdue.as_seen.ended_at) == (started, CALLER, "missed", started + LIMIT)
    assert (tracker.active_calls, tracker.tracked_channels, tracker.next_deadline()) == (0, 0, None)

    whole = CallTracker(["carrier"], [], grace=0.5, max_open=LIMIT)
    finished = [h for e in load_trace("noanswer") for h in whole.feed(e, 1000.0 + e["_t"])]
    finished += whole.expire(started + 10 * LIMIT)
    assert [type(h).__name__ for h in finished] == ["CallStarted", "CallFinished"]


def feed_the_cut_call(daemon) -> None:
    for event in cut_while_ringing():
        daemon.on_event(event)
    assert daemon.tracker.is_tracking(LINKEDID)


async def pass_the_limit(daemon) -> None:
    daemon.expire_calls(time.time() + LIMIT + 60)
    await daemon.settle()
    assert not daemon.tracker.is_tracking(LINKEDID)


async def feed_and_pass_the_limit(daemon) -> None:
    feed_the_cut_call(daemon)
    await pass_the_limit(daemon)


async def test_the_cdr_decides_a_call_whose_hangup_was_missed(offline_daemon, tmp_path, smtp_sink):
    daemon = await offline_daemon(**recovery_config(tmp_path))
    started = time.time()
    feed_the_cut_call(daemon)
    (tmp_path / "Master.csv").write_text(cdr_rows_of_the_same_call(started + 8))
    await daemon.recover(started - 60)
    assert await daemon.store.calls(0) == []  # the tracker still holds it: recovery skips it

    await pass_the_limit(daemon)
    assert daemon.pbxs[0].overdue.pending == [LINKEDID]
    await daemon.pbxs[0].overdue.check()
    [row] = await daemon.store.calls(0)
    assert (row["linkedid"], row["caller"], row["outcome"], row["reason"], row["recovered"]) == (
        LINKEDID, CALLER, "missed", "no_answer", 1)
    assert daemon.pbxs[0].overdue.pending == []


class Clock(SystemClock):
    """The workers' clock, set by the test: a day passes at once."""

    def __init__(self, at: float):
        self.at = at

    def now(self) -> float:
        return self.at


async def test_a_call_the_cdr_never_shows_is_recorded_as_seen_after_a_day(offline_daemon, tmp_path):
    clock = Clock(time.time())
    daemon = await offline_daemon(clock=clock, **recovery_config(tmp_path))
    (tmp_path / "Master.csv").write_text("")
    await feed_and_pass_the_limit(daemon)
    await daemon.pbxs[0].overdue.check()
    assert daemon.pbxs[0].overdue.pending == [LINKEDID] and await daemon.store.calls(0) == []
    clock.at += LIMIT + 25 * 3600
    await daemon.pbxs[0].overdue.check()
    [row] = await daemon.store.calls(0)
    assert (row["linkedid"], row["caller"], row["outcome"], row["decision"], row["recovered"]) == (
        LINKEDID, CALLER, "missed", "no_hangup_seen", 0)
    assert await daemon.store.due(time.time() + 10 * LIMIT) == []  # never texted hours late
    assert daemon.pbxs[0].overdue.pending == []


async def test_without_a_cdr_the_call_is_recorded_as_seen_without_a_text(offline_daemon):
    daemon = await offline_daemon()
    await feed_and_pass_the_limit(daemon)
    [row] = await daemon.store.calls(0)
    assert (row["linkedid"], row["caller"], row["outcome"], row["decision"]) == (
        LINKEDID, CALLER, "missed", "no_hangup_seen")
    assert await daemon.store.due(time.time() + 10 * LIMIT) == []
    assert daemon.pbxs[0].overdue.pending == []


async def test_a_failed_channel_listing_after_login_is_tried_again_until_it_works(
        offline_daemon, monkeypatch):
    """The AMI peer refuses CoreShowChannels twice (as Asterisk does for a user without the
    `reporting` right), then answers with the lab's recorded listing of a ringing call."""
    monkeypatch.setattr(pbx_module, "LISTING_RETRY_FIRST_SECONDS", 0.05)
    listing = [e for e in load_trace("mid_call_ringing") if e["Event"].startswith("CoreShowChannel")]
    ringing = listing[0]["Linkedid"]
    asked = []

    def frame(fields: dict) -> bytes:
        return "".join(f"{k}: {v}\r\n" for k, v in fields.items()
                       if k not in ("_t", "content")).encode() + b"\r\n"

    async def peer(reader, writer):
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        while True:
            block = (await reader.readuntil(b"\r\n\r\n")).decode()
            fields = dict(line.split(": ", 1) for line in block.strip().split("\r\n"))
            action_id = fields.get("ActionID", "")
            if fields["Action"] == "CoreShowChannels":
                asked.append(action_id)
                if len(asked) <= 2:
                    writer.write(frame({"Response": "Error", "ActionID": action_id,
                                        "Message": "Permission denied"}))
                else:
                    writer.write(frame({"Response": "Success", "ActionID": action_id,
                                        "EventList": "start", "Message": "Channels will follow"}))
                    for event in listing:
                        writer.write(frame({**event, "ActionID": action_id}))
            else:
                writer.write(frame({"Response": "Success", "ActionID": action_id}))
            await writer.drain()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    daemon = await offline_daemon()
    daemon.ami = AmiConnection("127.0.0.1", server.sockets[0].getsockname()[1], "u", SecretStr("s"),
                               on_event=daemon.on_event, on_login=daemon.on_login)
    try:
        daemon.ami.start()
        for _ in range(200):
            if daemon.tracker.is_tracking(ringing):
                break
            await asyncio.sleep(0.05)
        assert daemon.tracker.is_tracking(ringing) and len(asked) == 3
    finally:
        await daemon.settle()
        await daemon.ami.close()
        server.close()
