"""Per-number policy on calls replayed from lab traces: min ring time, voicemail, IVR abandons."""

from __future__ import annotations

import pytest
import yaml

from lab.configs import FLOW_NUMBERS, base_config
from tests.replay import load_trace, replay
from textback.config import ConfigError, PolicyConfig, parse
from textback.core.rules import apply_policy, decide


def config(tmp_path, **policy):
    numbers = [{**n, "policy": {**n.get("policy", {}), **policy}} for n in FLOW_NUMBERS]
    return parse(yaml.safe_dump(base_config(tmp_path, numbers=numbers)), base=tmp_path).config


def judged(tmp_path, trace, **policy):
    """(outcome, reason, decision) of each call in a trace, as the daemon records it."""
    c = config(tmp_path, **policy)
    out = []
    for call in replay(load_trace(trace)):
        call = apply_policy(c, call)
        out.append((call.outcome, call.reason, decide(c, call).reason))
    return out


def test_defaults():
    assert PolicyConfig() == PolicyConfig(min_ring_seconds=3.0, voicemail_counts_as_answered=False,
                                          ivr_abandon_counts_as_missed=True)


def test_a_caller_who_hangs_up_within_min_ring_seconds_is_not_texted(tmp_path):
    assert judged(tmp_path, "too_short") == [("missed", "too_short", "too_short")]


def test_a_caller_who_waited_longer_is_texted(tmp_path):
    assert judged(tmp_path, "caller_hung_up") == [("missed", "caller_hung_up", "missed_call_text")]
    # 4.8 s of ringing is short for a number that asks for 6.
    assert judged(tmp_path, "caller_hung_up", min_ring_seconds=6) == [
        ("missed", "too_short", "too_short")]


def test_min_ring_seconds_only_applies_when_the_caller_gave_up(tmp_path):
    # A busy phone ends the call at once: the caller did not give up, so it is texted.
    assert judged(tmp_path, "busy", min_ring_seconds=30) == [("missed", "busy", "missed_call_text")]


@pytest.mark.parametrize("trace", ["queue_abandoned", "ivr_abandoned"])
def test_giving_up_in_a_queue_or_a_menu_is_too_short_under_min_ring_seconds(tmp_path, trace):
    [(outcome, reason, decision)] = judged(tmp_path, trace, min_ring_seconds=10)
    assert (outcome, reason, decision) == ("missed", "too_short", "too_short")


def test_voicemail_is_a_missed_call_unless_the_number_counts_it_answered(tmp_path):
    assert judged(tmp_path, "voicemail") == [("missed", "voicemail", "missed_call_text")]
    assert judged(tmp_path, "voicemail", voicemail_counts_as_answered=True) == [
        ("answered", "voicemail", "answered")]


def test_an_ivr_abandon_is_missed_unless_the_number_says_otherwise(tmp_path):
    assert judged(tmp_path, "ivr_abandoned") == [("missed", "ivr_abandoned", "missed_call_text")]
    assert judged(tmp_path, "ivr_abandoned", ivr_abandon_counts_as_missed=False) == [
        ("answered", "ivr_abandoned", "answered")]


def test_withheld_and_invalid_caller_ids_are_recorded_but_never_texted(tmp_path):
    assert judged(tmp_path, "withheld_caller_ids") == [
        ("missed", "unavailable", "no_callback_number")] * 4


def test_policy_keys_are_checked(tmp_path):
    numbers = [{**FLOW_NUMBERS[0], "policy": {"min_ring_secs": 2}}]
    with pytest.raises(ConfigError) as error:
        parse(yaml.safe_dump(base_config(tmp_path, numbers=numbers)), base=tmp_path)
    assert "numbers[0].policy.min_ring_secs" in str(error.value)
