"""Many calls in flight at once: each finishes once, in deadline order, and leaves nothing behind."""

from __future__ import annotations

from tests.replay import load_trace, renamed, replay
from textback.core.tracker import CallFinished, CallTracker

CALLS = 300


def overlapping(name: str, calls: int, spacing: float) -> list[dict]:
    """`calls` copies of one recorded call, each starting `spacing` seconds after the last."""
    events = load_trace(name)
    copies = [renamed(events, f"c{i}", i * spacing) for i in range(calls)]
    return sorted((e for copy in copies for e in copy), key=lambda e: e["_t"])


def test_hundreds_of_calls_in_flight_finish_once_each_in_deadline_order():
    [alone] = replay(load_trace("noanswer"))
    tracker = CallTracker(trunks=["carrier"], contexts=[], grace=0.5)
    events = overlapping("noanswer", CALLS, 0.01)  # a call rings ~6 s: all 300 are up at once
    finished, peak = [], 0
    for event in events:
        for happening in tracker.feed(event, event["_t"]):
            if isinstance(happening, CallFinished):
                finished.append(happening)
        peak = max(peak, tracker.active_calls)
        deadline = tracker.next_deadline()
        assert deadline is None or deadline > event["_t"]  # nothing overdue is left waiting
    finished += tracker.expire(events[-1]["_t"] + 10)
    assert peak == CALLS
    assert len(finished) == CALLS and len({c.call_id for c in finished}) == CALLS
    assert [c.ended_at for c in finished] == sorted(c.ended_at for c in finished)
    assert {(c.outcome, c.reason) for c in finished} == {(alone.outcome, alone.reason)}
    assert (tracker.active_calls, tracker.tracked_channels, tracker.next_deadline()) == (0, 0, None)


def test_the_next_deadline_is_the_soonest_hangup_plus_grace():
    tracker = CallTracker(trunks=["carrier"], contexts=[], grace=0.5)
    events = overlapping("noanswer", 3, 1.0)
    hangups = []
    for event in events:
        tracker.feed(event, event["_t"])
        if event.get("Event") == "Hangup" and event.get("Channel", "").startswith("PJSIP/carrier-"):
            hangups.append(event["_t"])
            break
    assert tracker.next_deadline() == hangups[0] + 0.5
    assert tracker.expire(hangups[0] + 0.4) == []
    [first] = tracker.expire(hangups[0] + 0.5)
    assert first.ended_at == hangups[0] and tracker.active_calls == 2


def test_thousands_of_channels_in_the_callers_bridge_keep_every_event_working():
    """A page group of Local channels: 5,000 enter the caller's bridge, then the call goes on.

    The channels are copies of the recorded ring group's own Local half entering that
    bridge, each with its own uniqueid and channel name; a recursive union-find raised
    RecursionError on every event after about a thousand of them.
    """
    events = load_trace("freepbx_ringgroup_answered")
    [alone] = replay(events)
    [enter] = [e for e in events if e.get("Event") == "BridgeEnter"
               and e.get("Channel", "").startswith("Local/202@") and e["Channel"].endswith(";1")]
    [hangup] = [e for e in events if e.get("Event") == "Hangup" and e.get("Channel") == enter["Channel"]]
    page = [dict(enter, Uniqueid=f"{enter['Uniqueid']}-p{i}",
                 Channel=enter["Channel"].replace("-0000000", f"-p{i}-0000000")) for i in range(5000)]
    at = events.index(enter) + 1
    paged = events[:at] + [dict(e, _t=enter["_t"]) for e in page] + events[at:]
    paged[-1:-1] = [dict(hangup, Uniqueid=e["Uniqueid"], Channel=e["Channel"]) for e in page]
    tracker = CallTracker(trunks=["carrier"], contexts=[], grace=0.5)
    [call] = replay(paged, tracker)
    assert (call.outcome, call.reason, call.answered_by) == (alone.outcome, alone.reason, alone.answered_by)
    assert (tracker.active_calls, tracker.tracked_channels) == (0, 0)
