"""A finished call's whole decision, made once from values: who owns it, text or not, why, and
what the fraud guard reports. No I/O.

The daemon reads every stored fact the decision needs in one store call (`Store.call_facts`
→ `CallFacts`), passes them here with the local time, and commits the `CallJudgement` in one
store call (`Store.record_call`), so nothing the decision rests on is read half-way through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from textback.core.numbers import to_e164
from textback.core.ownership import choose_owner
from textback.core.rules import Decision, RecentTexts, apply_policy, decide, match_number, prefix_of
from textback.core.tracker import CallFinished

if TYPE_CHECKING:  # the core reads config values; it never builds them
    from textback.config import Config

# The decision of a missed call recovered too late for a text: the owner gets a ring-back list.
TOO_OLD_TO_TEXT = "recovered_too_old"
# The decision of a call open for inbound.max_call_hours with no Hangup seen, and no CDR row for
# it: recorded as the AMI events showed it, never texted hours late.
NO_HANGUP_SEEN = "no_hangup_seen"
OPTED_OUT = "opted_out"


@dataclass(frozen=True)
class CallFacts:
    """What the store knows that a finished call's decision needs, read at once."""

    conversation_owner: str | None = None  # the owner of the caller's conversation on the number
    turn: int = 0  # how many conversations the number has had: the round-robin turn
    recent: RecentTexts = RecentTexts()  # the fraud guard's counts
    contact_class: str | None = None  # set in the inbox's contact panel; wins over the config's
    opted_out: bool = False


@dataclass(frozen=True)
class CallJudgement:
    call: CallFinished  # as the business number's policy counts it
    decision: Decision
    owner_reason: str  # why `decision.owner_id` owns the conversation
    fraud_report: str | None = None  # the sentence logged and mailed when a fraud guard tripped


def callback_number(config: Config, call: CallFinished) -> str:
    """The caller's canonical number, as the store's facts are keyed ("" when there is none)."""
    dialled = match_number(config, call.did)
    return to_e164(call.caller_id, dialled.region if dialled else "US") or ""


def judge_call(config: Config, call: CallFinished, facts: CallFacts, local_now: datetime,
               may_text: bool = True, withheld: str = TOO_OLD_TO_TEXT) -> CallJudgement:
    """Decide a finished call at `local_now` (the business's time zone) from its stored `facts`;
    `may_text` False withholds its text, giving `withheld` as the decision (too old, by default).

    The owner is the one of the caller's conversation on the number when that owner is still
    configured, else the one a new conversation gets now; a fraud guard's trip, the withheld
    text and an opt-out come in that order, as each overrides what precedes it.
    """
    call = apply_policy(config, call)
    dialled = match_number(config, call.did)
    caller = callback_number(config, call)
    owner_id, owner_reason = None, "fixed owner"
    if dialled is not None:
        if caller and facts.conversation_owner in {o.id for o in config.owners}:
            owner_id, owner_reason = facts.conversation_owner, "existing conversation"
        else:
            owner_id, owner_reason = choose_owner(dialled, local_now, facts.turn)
    if caller and facts.contact_class is not None:
        config = config.with_contact_class(caller, facts.contact_class)
    decision = decide(config, call, facts.recent, owner_id)
    fraud_report = None
    if decision.reason.startswith("fraud_"):
        recent = facts.recent
        fraud_report = (f"fraud guard ({decision.reason}): no text to {decision.caller}; "
                        f"{recent.last_hour} texts in the last hour, {recent.last_day} today, "
                        f"{recent.same_prefix_last_hour} to {prefix_of(caller)}… in the last hour")
    if decision.send and not may_text:
        decision = decision.withheld(withheld)
    if decision.send and facts.opted_out:
        decision = decision.withheld(OPTED_OUT)
    return CallJudgement(call, decision, owner_reason, fraud_report)
