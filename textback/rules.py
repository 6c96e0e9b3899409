"""What to do with a finished call: text the caller, or record why not. No I/O."""

from __future__ import annotations

from dataclasses import dataclass

from textback.config import Config, NumberConfig
from textback.numbers import is_textable, national, to_e164
from textback.templates import render
from textback.tracker import ANSWERED, CallFinished


@dataclass(frozen=True)
class Decision:
    business_number: str  # E.164 when the DID is ours, else the raw DID
    caller: str | None  # E.164, or None when there is no number to call back
    owner_id: str | None
    send: bool
    reason: str  # why a text is or is not sent
    body: str = ""
    due_at: float = 0.0

    def withheld(self, reason: str) -> "Decision":
        """The same decision, but no text, for `reason` (e.g. the caller opted out)."""
        return Decision(self.business_number, self.caller, self.owner_id, False, reason)


def match_number(config: Config, did: str) -> NumberConfig | None:
    """The configured business number a dialled DID refers to (any common format)."""
    for number in config.numbers:
        if to_e164(did, number.region) == number.number:
            return number
    return None


def decide(config: Config, call: CallFinished) -> Decision:
    number = match_number(config, call.did)
    if number is None:
        return Decision(call.did, None, None, False, "not_a_business_number")
    caller = to_e164(call.caller_id, number.region)
    owner = config.owner(number.owner)
    if call.outcome == ANSWERED:
        return Decision(number.number, caller, owner.id, False, "answered")
    if caller is None:
        return Decision(number.number, None, owner.id, False, "no_callback_number")
    if not is_textable(caller):
        return Decision(number.number, caller, owner.id, False, "not_textable")
    body = render_for(config, config.text.template, number, caller)
    return Decision(number.number, caller, owner.id, True, "missed_call_text", body,
                    call.ended_at + config.text.delay_seconds)


def render_for(config: Config, template: str, number: NumberConfig, caller: str) -> str:
    """Fill a template with the values of one business number and caller."""
    owner = config.owner(number.owner)
    return render(template, {
        "business_name": config.business.name,
        "business_number": national(number.number),
        "owner_name": owner.name,
        "owner_first_name": owner.name.split()[0],
        "caller_number": national(caller),
    })
