"""A homeowner's text's whole decision, made once from values: who owns a new conversation,
which keyword it carries, and what that keyword changes and answers. No I/O.

The daemon reads the sender's stored facts in one store call (`Store.sender_facts` →
`SenderFacts`) and commits the text, its alert and the `KeywordAnswer` in one store call
(`Store.record_inbound`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from textback.core.delivery import OPTOUT_CONFIRMATION
from textback.core.optout import Keyword, classify, keyword_name
from textback.core.ownership import choose_owner
from textback.core.rules import render_for

if TYPE_CHECKING:  # the core reads config values; it never builds them
    from textback.config import Config, NumberConfig

OPTIN_CONFIRMATION = "optin_confirmation"
HELP = "help"


@dataclass(frozen=True)
class SenderFacts:
    """What the store knows that an inbound text's decision needs, read at once."""

    turn: int = 0  # how many conversations the number has had: the round-robin turn
    opted_out: bool = False


@dataclass(frozen=True)
class KeywordAnswer:
    """What a keyword text changes, and the text that answers it (queued in the same commit).

    `opt` is "out" (STOP), "in" (START) or "" (HELP, which changes nothing). The store applies
    an opt-out or opt-in only if the list still needs it, and queues the answer only then, so a
    STOP that another STOP beat by a moment gets no second confirmation.
    """

    opt: str
    body: str
    kind: str


@dataclass(frozen=True)
class TextPlan:
    owner_id: str  # the owner a new conversation gets
    owner_reason: str
    keyword: str  # the keyword for the consent ledger ("" for an ordinary reply)
    answer: KeywordAnswer | None


def plan_text(config: Config, number: NumberConfig, sender: str, body: str, facts: SenderFacts,
              local_now: datetime) -> TextPlan:
    """Decide a text from `sender` (E.164) to `number` at `local_now` (the business's zone).

    STOP opts the number out with one confirmation (the store applies it, and confirms, only
    if the list does not have it yet: a STOP from a number already out is kept but alerts
    nobody and waits for nobody); START from one opted out lifts it; HELP gets the help text;
    anything else (and "yes" from someone never opted out) is an ordinary reply.
    """
    owner_id, owner_reason = choose_owner(number, local_now, facts.turn)
    keyword = classify(body)
    compliance = config.compliance
    answer = None
    if keyword is Keyword.STOP:
        answer = KeywordAnswer("out", render_for(config, compliance.stop_confirmation, number,
                                                 sender), OPTOUT_CONFIRMATION)
    elif keyword is Keyword.START and facts.opted_out:
        answer = KeywordAnswer("in", render_for(config, compliance.start_confirmation, number,
                                                sender), OPTIN_CONFIRMATION)
    elif keyword is Keyword.HELP:
        answer = KeywordAnswer("", render_for(config, compliance.help_text, number, sender), HELP)
    return TextPlan(owner_id, owner_reason, keyword_name(keyword, body), answer)
