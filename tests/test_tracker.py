"""The call tracker on AMI traces recorded from the lab PBX; no I/O, so these run in microseconds.

Every trace in tests/traces/ is one flow of lab/flows.py, recorded by
lab/record_traces.py as the product's AMI user saw it.
"""

from __future__ import annotations

import json
import pytest
from hypothesis import given, settings, strategies as st

from tests.replay import TRACES, load_trace, replay, trace_names
from textback.core.tracker import CallTracker

# trace -> every inbound call in it: (caller ID, DID, outcome, reason)
EXPECTED = {
    "noanswer": [("+12125550123", "+12125550100", "missed", "no_answer")],
    "named_caller": [("+16465550175", "+12125550100", "missed", "no_answer")],
    "answered": [("+12125550123", "+12125550100", "answered", "answered")],
    "ringgroup": [("+12125550124", "+12125550101", "answered", "answered")],
    "caller_hung_up": [("+16465550102", "+12125550100", "missed", "caller_hung_up")],
    "too_short": [("+16465550124", "+12125550100", "missed", "caller_hung_up")],
    "ringgroup_noanswer": [("+16465550104", "+12125550104", "missed", "no_answer")],
    "busy": [("+16465550105", "+12125550102", "missed", "busy")],
    "unavailable": [("+16465550106", "+12125550105", "missed", "unavailable")],
    "voicemail": [("+16465550107", "+12125550106", "missed", "voicemail")],
    "ivr_abandoned": [("+16465550108", "+12125550107", "missed", "ivr_abandoned")],
    "queue_abandoned": [("+16465550109", "+12125550108", "missed", "queue_abandoned")],
    "queue_timeout": [("+16465550110", "+12125550108", "missed", "queue_timeout")],
    "queue_answered": [("+16465550111", "+12125550108", "answered", "answered")],
    "blind_transfer": [("+16465550112", "+12125550109", "answered", "answered")],
    "attended_transfer": [("+16465550113", "+12125550109", "answered", "answered")],
    "forwarded_to_cell": [("+16465550114", "+12125550110", "answered", "answered")],
    "forwarded_confirm_voicemail": [("+16465550128", "+12125550113", "missed", "voicemail")],
    "outbound": [],
    "internal": [],
    "withheld_caller_ids": [(caller, "+12125550105", "missed", "unavailable")
                            for caller in ("anonymous", "<unknown>", "Restricted", "201")],
    "two_callers_at_once": [("+16465550115", "+12125550102", "missed", "no_answer"),
                            ("+16465550116", "+12125550103", "missed", "no_answer")],
    "same_caller_twice": [("+16465550117", "+12125550105", "missed", "unavailable")] * 2,
    "freepbx_queue_answered": [("+16465550118", "+12125550111", "answered", "answered")],
    "freepbx_queue_voicemail": [("+16465550119", "+12125550111", "missed", "voicemail")],
    "freepbx_ringgroup_answered": [("+16465550120", "+12125550112", "answered", "answered")],
    "freepbx_ringgroup_voicemail": [("+16465550121", "+12125550112", "missed", "voicemail")],
    "mid_call_ringing": [("+16465550122", "+12125550100", "missed", "caller_hung_up")],
    "mid_call_answered": [("+16465550123", "+12125550100", "answered", "answered")],
    "agi_routed_closed": [("+16465550129", "+12125550118", "missed", "no_answer")],
    # A Local channel from AMI Originate is never an inbound call, unless the self-test names it.
    "selftest": [],
    "selftest_ring_phones": [],
}


def test_every_recorded_trace_has_an_expectation():
    assert sorted(EXPECTED) == trace_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_outcome_and_reason(name):
    calls = replay(load_trace(name))
    got = sorted((c.caller_id, c.did, c.outcome, c.reason) for c in calls)
    assert got == sorted(EXPECTED[name])
    assert len({c.call_id for c in calls}) == len(calls)  # each call is its own record


def test_the_callers_name_is_unescaped_once_as_asterisk_escaped_it():
    """Asterisk C-escapes CallerIDName in AMI (the trace keeps what it wrote); the edge, and the
    replay that stands in for it, undo that once."""
    with open(TRACES / "named_caller.jsonl", encoding="utf-8") as trace:
        written = {json.loads(line).get("CallerIDName") for line in trace}
    assert "Pat O\\'Brien & Zoë \\\\ Sons" in written
    [call] = replay(load_trace("named_caller"))
    assert call.caller_name == "Pat O'Brien & Zoë \\ Sons"


def test_the_route_the_dialplan_named_is_kept_on_the_call():
    [routed] = replay(load_trace("agi_routed_closed"))  # textback's AGI: route, and closed today
    assert (routed.route, routed.dialplan_hours) == ("r3-12125550118", "closed")
    [plain] = replay(load_trace("noanswer"))  # the lab's own Set(__TEXTBACK_ROUTE=office1), no hours
    assert (plain.route, plain.dialplan_hours) == ("office1", "")


def test_the_route_is_read_from_varset_without_channelvars():
    events = [{k: v for k, v in e.items() if k != "ChanVariable"} for e in load_trace("agi_routed_closed")]
    [routed] = replay(events)
    assert (routed.route, routed.dialplan_hours) == ("r3-12125550118", "closed")


def test_nobody_answers_after_the_full_ring_timeout():
    [call] = replay(load_trace("noanswer"))
    assert call.ended_at - call.started_at > 5.5  # rang for the 6 s Dial timeout
    assert call.answered_at is None


@pytest.mark.parametrize("name, device", [
    ("answered", "PJSIP/office1-"),
    ("ringgroup", "PJSIP/office2-"),
    ("queue_answered", "PJSIP/office1-"),
    ("blind_transfer", "PJSIP/office1-"),  # answered before the transfer; that is what counts
    ("attended_transfer", "PJSIP/office1-"),
    ("freepbx_queue_answered", "PJSIP/office1-"),  # the phone behind the Local queue member
    ("freepbx_ringgroup_answered", "PJSIP/office2-"),
    ("forwarded_to_cell", "PJSIP/carrier-"),  # the trunk leg to the cell phone: a device to Asterisk
])
def test_answered_by_the_device_that_reached_the_caller(name, device):
    [call] = replay(load_trace(name))
    assert call.answered_by.startswith(device)


def test_a_ring_group_nobody_answers_is_one_missed_call():
    events = load_trace("ringgroup_noanswer")
    dialled = {e["DestChannel"].split("-")[0] for e in events if e["Event"] == "DialBegin"}
    assert dialled == {"PJSIP/office1", "PJSIP/office2"}
    assert len(replay(events)) == 1


def test_the_losing_legs_of_a_ring_group_are_cancelled_answered_elsewhere():
    events = load_trace("ringgroup")
    cancelled = [e for e in events if e["Event"] == "Hangup" and e["Channel"].startswith("PJSIP/office1-")]
    assert [e["Cause"] for e in cancelled] == ["26"]
    [call] = replay(events)
    assert call.outcome == "answered"


@pytest.mark.parametrize("name", ["freepbx_ringgroup_voicemail", "freepbx_queue_voicemail"])
def test_a_local_channel_that_answers_for_voicemail_is_not_a_person(name):
    events = load_trace(name)
    local_answers = [e for e in events if e["Event"] == "DialEnd" and e.get("DialStatus") == "ANSWER"
                     and e["DestChannel"].startswith("Local/") and e["Channel"].startswith("PJSIP/carrier-")]
    assert local_answers, "the trace no longer shows Asterisk answering through a Local channel"
    [call] = replay(events)
    assert (call.outcome, call.reason, call.answered_by) == ("missed", "voicemail", None)


def test_a_cell_phone_voicemail_turned_away_by_confirm_calls_is_not_an_answer():
    events = load_trace("forwarded_confirm_voicemail")
    cell_bridged = [e for e in events if e["Event"] == "BridgeEnter" and e["Channel"].startswith("PJSIP/carrier-")]
    assert cell_bridged, "the cell's voicemail answered and was bridged to the confirm prompt"
    [call] = replay(events)
    assert (call.outcome, call.reason) == ("missed", "voicemail")


def test_an_outbound_leg_in_an_inbound_context_opens_no_call():
    # The office phone's call out over the trunk creates a carrier channel in from-carrier.
    tracker = CallTracker(trunks=[], contexts=["from-carrier"], grace=0.5)
    assert replay(load_trace("outbound"), tracker) == []


def test_calls_from_other_endpoints_are_not_inbound():
    tracker = CallTracker(trunks=["other-trunk"], contexts=[], grace=0.5)
    assert replay(load_trace("noanswer"), tracker) == []


def test_inbound_context_also_opens_a_call():
    tracker = CallTracker(trunks=[], contexts=["from-carrier"], grace=0.5)
    [call] = replay(load_trace("noanswer"), tracker)
    assert call.reason == "no_answer"


def test_a_listener_started_mid_call_learns_the_call_from_the_channel_listing():
    events = load_trace("mid_call_ringing")
    [call] = replay(events)
    listing = [e for e in events if e["Event"] == "CoreShowChannel"]
    [trunk] = [e for e in listing if e["Channel"].startswith("PJSIP/carrier-")]
    hours, minutes, seconds = map(int, trunk["Duration"].split(":"))
    # The call started when the channel did (whole seconds), not when the listener logged in.
    assert call.started_at == listing[-1]["_t"] - (hours * 3600 + minutes * 60 + seconds)
    assert call.reason == "caller_hung_up"  # the ringing leg in the listing: phones did ring
    without_listing = [e for e in events if e["Event"] != "CoreShowChannel"]
    assert replay(without_listing) == []


def test_a_listener_started_mid_conversation_sees_the_bridge_in_the_listing():
    events = load_trace("mid_call_answered")
    assert not [e for e in events if e["Event"] == "BridgeEnter"]  # it happened before login
    [call] = replay(events)
    assert call.outcome == "answered" and call.answered_by.startswith("PJSIP/office1-")


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
    """Reorder events whose times are within `grace` of each other, as AMI may deliver them.

    A CoreShowChannels listing stays where it was: it is one answer to one action.
    """
    keys = [0.0 if e["Event"] == "CoreShowChannel" else k for e, k in zip(events, keys)]
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


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(EXPECTED)), st.data())
def test_outcome_does_not_depend_on_cross_channel_order(name, data):
    events = load_trace(name)
    keys = data.draw(st.lists(st.floats(0, 0.999), min_size=len(events), max_size=len(events)))
    expected = sorted((c.outcome, c.reason, c.did, c.caller_id) for c in replay(events))
    got = sorted((c.outcome, c.reason, c.did, c.caller_id)
                 for c in replay(shuffled_within_grace(events, keys)))
    assert got == expected


def test_state_for_finished_calls_is_freed():
    tracker = CallTracker(trunks=["carrier"], contexts=[], grace=0.5)
    traces = [load_trace(n) for n in sorted(EXPECTED)]
    finished = 0
    for i in range(10_000):
        events = traces[i % len(traces)]
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


@pytest.mark.parametrize("name, reason", [("selftest", "not_dialled"),
                                          ("selftest_ring_phones", "no_answer")])
def test_the_selftest_call_is_one_missed_call_when_the_tracker_expects_it(name, reason):
    from lab.flows import SELFTEST_CALL_ID, SELFTEST_CALLER_UNIQUEID

    tracker = CallTracker(trunks=["carrier"], contexts=[], grace=0.5)
    tracker.expect_selftest(SELFTEST_CALLER_UNIQUEID)
    [call] = replay(load_trace(name), tracker)
    # The Originate's own half (its dial ends NOANSWER when the dialplan rings nobody) is not
    # part of the call: the reason is what the inbound context did.
    assert (call.call_id, call.selftest, call.did, call.outcome, call.reason) == (
        SELFTEST_CALL_ID, True, "+12125550118", "missed", reason)
    assert call.caller_id.startswith("+1646555013") and call.route == "r3-12125550118"
    assert tracker.active_calls == 0 and tracker.tracked_channels == 0


def test_a_forgotten_selftest_is_no_longer_expected():
    from lab.flows import SELFTEST_CALLER_UNIQUEID

    tracker = CallTracker(trunks=["carrier"], contexts=[], grace=0.5)
    tracker.expect_selftest(SELFTEST_CALLER_UNIQUEID)
    tracker.forget_selftest(SELFTEST_CALLER_UNIQUEID)
    assert replay(load_trace("selftest"), tracker) == []
