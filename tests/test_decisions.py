"""A finished call's and an inbound text's whole decision, as pure functions of config, stored
facts and the local time (textback.core.missed_call, textback.core.inbound)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import yaml

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config
from textback.config import parse
from textback.core.inbound import SenderFacts, plan_text
from textback.core.missed_call import (NO_HANGUP_SEEN, TOO_OLD_TO_TEXT, CallFacts, callback_number,
                                       judge_call)
from textback.core.rules import RecentTexts
from textback.core.tracker import CallFinished

NY = ZoneInfo("America/New_York")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=NY)
OWNERS = [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com"},
          {"id": "sam", "name": "Sam Ortiz", "email": "sam@example.com"}]


def config(tmp_path, **overrides):
    raw = base_config(tmp_path, owners=OWNERS, **{
        "numbers": [{"number": BUSINESS_NUMBER, "owner": "dana", "assignment": "round_robin",
                     "owners": ["dana", "sam"]}],
        "fraud": {"max_per_prefix_per_hour": 3}, **overrides})
    return parse(yaml.safe_dump(raw), base=tmp_path).config


def missed(caller=HOMEOWNER, did=BUSINESS_NUMBER, reason="no_answer", ring=20.0) -> CallFinished:
    ended = MONDAY_10.timestamp()
    return CallFinished("1.1", did, caller, "", "PJSIP/carrier-1", ended - ring, ended,
                        "missed", reason)


def test_a_missed_call_is_texted_and_a_new_conversation_takes_the_turn(tmp_path):
    judged = judge_call(config(tmp_path), missed(), CallFacts(turn=3), MONDAY_10)
    assert judged.decision.send and judged.decision.reason == "missed_call_text"
    assert judged.decision.caller == HOMEOWNER
    assert (judged.decision.owner_id, judged.owner_reason) == ("sam", "round robin (2 of 2)")
    assert judged.fraud_report is None


def test_an_existing_conversation_keeps_its_owner_while_that_owner_is_configured(tmp_path):
    c = config(tmp_path)
    kept = judge_call(c, missed(), CallFacts(conversation_owner="dana", turn=1), MONDAY_10)
    assert (kept.decision.owner_id, kept.owner_reason) == ("dana", "existing conversation")
    gone = judge_call(c, missed(), CallFacts(conversation_owner="lee", turn=1), MONDAY_10)
    assert (gone.decision.owner_id, gone.owner_reason) == ("sam", "round robin (2 of 2)")


def test_the_fraud_guard_is_decided_and_reported_from_the_counts(tmp_path):
    recent = RecentTexts(last_hour=7, last_day=40, same_prefix_last_hour=3)
    judged = judge_call(config(tmp_path), missed(), CallFacts(recent=recent), MONDAY_10)
    assert not judged.decision.send and judged.decision.reason == "fraud_prefix_burst"
    assert judged.fraud_report == (
        f"fraud guard (fraud_prefix_burst): no text to {HOMEOWNER}; 7 texts in the last hour, "
        f"40 today, 3 to {HOMEOWNER[:8]}… in the last hour")


@pytest.mark.parametrize("may_text, withheld, opted_out, reason", [
    (False, TOO_OLD_TO_TEXT, False, TOO_OLD_TO_TEXT),
    (False, NO_HANGUP_SEEN, False, NO_HANGUP_SEEN),
    (True, TOO_OLD_TO_TEXT, True, "opted_out"),
    (False, TOO_OLD_TO_TEXT, True, TOO_OLD_TO_TEXT),  # withheld first: the opt-out adds nothing
])
def test_a_withheld_text_and_an_opt_out_keep_the_call_and_drop_the_text(
        tmp_path, may_text, withheld, opted_out, reason):
    judged = judge_call(config(tmp_path), missed(), CallFacts(opted_out=opted_out), MONDAY_10,
                        may_text=may_text, withheld=withheld)
    assert not judged.decision.send and judged.decision.reason == reason
    assert judged.decision.owner_id == "dana"


def test_a_class_set_in_the_inbox_wins_over_the_config(tmp_path):
    c = config(tmp_path, contacts=[{"number": HOMEOWNER, "class": "vendor"}])
    assert judge_call(c, missed(), CallFacts(), MONDAY_10).decision.reason == "caller_is_vendor"
    lead = judge_call(c, missed(), CallFacts(contact_class="lead"), MONDAY_10)
    assert lead.decision.send


def test_the_policy_is_applied_before_the_decision(tmp_path):
    judged = judge_call(config(tmp_path), missed(reason="caller_hung_up", ring=1.0), CallFacts(),
                        MONDAY_10)
    assert judged.call.reason == "too_short" and judged.decision.reason == "too_short"


def test_a_call_to_another_number_has_no_owner(tmp_path):
    judged = judge_call(config(tmp_path), missed(did="+13125550199"), CallFacts(turn=5), MONDAY_10)
    assert judged.decision.reason == "not_a_business_number"
    assert (judged.decision.owner_id, judged.owner_reason) == (None, "fixed owner")


def test_the_callback_number_keys_the_facts(tmp_path):
    c = config(tmp_path)
    assert callback_number(c, missed(caller="(212) 555-0123")) == HOMEOWNER
    assert callback_number(c, missed(caller="anonymous")) == ""


@pytest.mark.parametrize("body, opted_out, opt, kind", [
    ("STOP", False, "out", "optout_confirmation"),
    # Already out: the store applies it only if the list needs it, so no second confirmation
    # (and, kept in the thread and ledger, it alerts nobody: tests/test_consent.py).
    ("STOP", True, "out", "optout_confirmation"),
    ("please stop texting me", False, "out", "optout_confirmation"),
    ("START", True, "in", "optin_confirmation"),
    ("HELP", False, "", "help"),
    ("HELP", True, "", "help"),
])
def test_a_keyword_is_answered(tmp_path, body, opted_out, opt, kind):
    c = config(tmp_path)
    plan = plan_text(c, c.numbers[0], HOMEOWNER, body, SenderFacts(opted_out=opted_out), MONDAY_10)
    assert plan.answer is not None and (plan.answer.opt, plan.answer.kind) == (opt, kind)
    assert plan.answer.body and "{" not in plan.answer.body
    assert plan.keyword


@pytest.mark.parametrize("body, opted_out", [
    ("yes", False),  # "yes" from someone never opted out is an ordinary reply
    ("START", False),
    ("Tuesday works", False),
])
def test_no_answer_when_nothing_changes(tmp_path, body, opted_out):
    c = config(tmp_path)
    plan = plan_text(c, c.numbers[0], HOMEOWNER, body, SenderFacts(opted_out=opted_out), MONDAY_10)
    assert plan.answer is None


def test_a_text_takes_the_turn_and_names_its_keyword(tmp_path):
    c = config(tmp_path)
    plan = plan_text(c, c.numbers[0], HOMEOWNER, "Tuesday works", SenderFacts(turn=2), MONDAY_10)
    assert (plan.owner_id, plan.owner_reason, plan.keyword) == ("dana", "round robin (1 of 2)", "")
    assert plan_text(c, c.numbers[0], HOMEOWNER, "STOP", SenderFacts(), MONDAY_10).keyword == "STOP"
