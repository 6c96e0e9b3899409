"""The call tracker on AMI traces recorded from the lab PBX; no I/O, so these run in microseconds."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from tests.replay import load_trace, replay
from textback.tracker import CallTracker


def test_nobody_answers():
    [call] = replay(load_trace("noanswer"))
    assert (call.outcome, call.reason) == ("missed", "no_answer")
    assert (call.did, call.caller_id) == ("+12125550100", "+12125550123")
    assert call.ended_at - call.started_at > 5.5  # rang for the 6 s Dial timeout


def test_answered():
    calls = replay(load_trace("answered"))
    [call] = [c for c in calls if c.did == "+12125550100"]
    assert (call.outcome, call.reason) == ("answered", "answered")
    assert call.answered_by.startswith("PJSIP/office1-")


def test_ring_group_answered_by_the_second_phone_is_one_answered_call():
    [call] = replay(load_trace("ringgroup"))
    assert (call.outcome, call.did) == ("answered", "+12125550101")
    assert call.answered_by.startswith("PJSIP/office2-")


def test_calls_from_other_endpoints_are_not_inbound():
    tracker = CallTracker(trunks=["other-trunk"], contexts=[], grace=0.5)
    assert replay(load_trace("noanswer"), tracker) == []


def test_inbound_context_also_opens_a_call():
    tracker = CallTracker(trunks=[], contexts=["from-carrier"], grace=0.5)
    [call] = replay(load_trace("noanswer"), tracker)
    assert call.reason == "no_answer"


def test_the_decision_waits_for_the_grace_period():
    events = load_trace("noanswer")
    tracker = CallTracker(trunks=["carrier"], contexts=[], grace=0.5)
    for event in events:
        tracker.feed(event, event["_t"])
    hangup = max(e["_t"] for e in events if e["Event"] == "Hangup")
    assert tracker.expire(hangup + 0.4) == []
    assert tracker.next_deadline() == hangup + 0.5
    assert len(tracker.expire(hangup + 0.5)) == 1


def shuffled_within_grace(events, keys, grace=0.5):
    """Reorder events whose times are within `grace` of each other, as AMI may deliver them."""
    jittered = [(e["_t"] + k * grace, i, e) for i, (e, k) in enumerate(zip(events, keys))]
    jittered.sort(key=lambda item: (item[0], item[1]))
    # Keep each channel's own events in order: Asterisk orders events per channel.
    per_channel: dict[str, list] = {}
    for _, _, e in jittered:
        per_channel.setdefault(e.get("Uniqueid", ""), []).append(e)
    originals = {u: iter([e for e in events if e.get("Uniqueid", "") == u]) for u in per_channel}
    out = []
    for t, _, e in jittered:
        original = next(originals[e.get("Uniqueid", "")])
        out.append({**original, "_t": max(t, original["_t"])})
    return out


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["noanswer", "answered", "ringgroup"]), st.data())
def test_outcome_does_not_depend_on_cross_channel_order(name, data):
    events = load_trace(name)
    keys = data.draw(st.lists(st.floats(0, 0.999), min_size=len(events), max_size=len(events)))
    expected = [(c.outcome, c.reason, c.did) for c in replay(events)]
    got = [(c.outcome, c.reason, c.did) for c in replay(shuffled_within_grace(events, keys))]
    assert got == expected


def test_state_for_finished_calls_is_freed():
    tracker = CallTracker(trunks=["carrier"], contexts=[], grace=0.5)
    traces = [load_trace(n) for n in ("noanswer", "answered", "ringgroup")]
    finished = 0
    for i in range(10_000):
        events = traces[i % 3]
        suffix = f"-{i}"
        renamed = [{**e, **{k: e[k] + suffix for k in ("Uniqueid", "Linkedid", "DestUniqueid",
                                                       "DestLinkedid") if k in e}}
                   for e in events]
        finished += len(replay(renamed, tracker, offset=i * 100.0))
        if i == 100:
            baseline = tracker.tracked_channels
    assert finished >= 10_000
    assert tracker.active_calls == 0
    assert tracker.tracked_channels <= max(baseline, 0) + 10
