"""What to do with a finished call: text the caller, or record why not. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo
from typing import TYPE_CHECKING

import phonenumbers

from textback.core.hours import WEEKDAYS, Hours, Window
from textback.core.numbers import is_textable, national, to_e164
from textback.core.relay import OWNER_MOBILE
from textback.core.templates import render
from textback.core.tracker import (ANSWERED, CALLER_HUNG_UP, IVR_ABANDONED, MISSED, QUEUE_ABANDONED,
                                   VOICEMAIL, CallFinished)

if TYPE_CHECKING:  # the core reads config values; it never builds them
    from textback.config import Config, NumberConfig, OwnerConfig

TOO_SHORT = "too_short"
# Reasons where the caller gave up; min_ring_seconds applies to these.
_CALLER_GAVE_UP = {CALLER_HUNG_UP, IVR_ABANDONED, QUEUE_ABANDONED}


@dataclass(frozen=True)
class Decision:
    business_number: str  # E.164 when the DID is ours, else the raw DID
    caller: str | None  # E.164, or None when there is no number to call back
    owner_id: str | None
    send: bool
    reason: str  # why a text is or is not sent
    body: str = ""
    due_at: float = 0.0
    template: str = ""

    def withheld(self, reason: str) -> "Decision":
        """The same decision, but no text, for `reason` (e.g. the caller opted out)."""
        return Decision(self.business_number, self.caller, self.owner_id, False, reason)


def match_number(config: Config, did: str) -> NumberConfig | None:
    """The configured business number a dialled DID refers to (any common format)."""
    return config.dialled(did)


def apply_policy(config: Config, call: CallFinished) -> CallFinished:
    """The call as its business number's policy counts it; the tracker only reports what happened.

    Voicemail and an IVR abandon may count as answered (the reason stays, so
    `textback calls` still shows where the call went), and a caller who gave
    up within min_ring_seconds becomes `too_short`.
    """
    if call.outcome != MISSED:
        return call
    number = match_number(config, call.did)
    policy = config.policy_of(number)
    if call.reason == VOICEMAIL and policy.voicemail_counts_as_answered:
        return replace(call, outcome=ANSWERED)
    if call.reason == IVR_ABANDONED and not policy.ivr_abandon_counts_as_missed:
        return replace(call, outcome=ANSWERED)
    if call.reason in _CALLER_GAVE_UP and call.ended_at - call.started_at < policy.min_ring_seconds:
        return replace(call, reason=TOO_SHORT)
    return call


@dataclass(frozen=True)
class RecentTexts:
    """How many automatic texts went out lately: the input of the SMS-pumping guard."""

    last_hour: int = 0
    last_day: int = 0
    same_prefix_last_hour: int = 0


def prefix_of(e164: str) -> str:
    """The block a pumping attack walks through: country code and the first six digits."""
    return e164[:8]


def hours_of(config: Config, number: NumberConfig | None = None) -> Hours:
    """The opening hours of a business number: its own, or the business's."""
    h = number.hours if number is not None and number.hours is not None else config.hours
    return Hours(config.business.timezone,
                 tuple(Window(tuple(w.days), w.start, w.end, w.template) for w in h.windows),
                 frozenset(h.holidays), h.holiday_calendar)


def decide(config: Config, call: CallFinished, recent: RecentTexts = RecentTexts(),
           owner_id: str | None = None) -> Decision:
    """owner_id: who owns (or will own) the caller's conversation; default the number's owner."""
    number = match_number(config, call.did)
    if number is None:
        return Decision(call.did, None, None, False, "not_a_business_number")
    caller = to_e164(call.caller_id, number.region)
    owner = config.owner(owner_id or number.owner)
    if config.owner_by_mobile(caller) is not None:  # an owner's own phone: never a lead
        return Decision(number.number, caller, None, False, OWNER_MOBILE)
    if call.outcome == ANSWERED:
        return Decision(number.number, caller, owner.id, False, "answered")
    if call.reason == TOO_SHORT:
        return Decision(number.number, caller, owner.id, False, TOO_SHORT)
    if caller is None:
        return Decision(number.number, None, owner.id, False, "no_callback_number")
    no_text = Decision(number.number, caller, owner.id, False, "")
    contact = config.contact(caller)
    if contact is not None and contact.kind != "client":
        return no_text.withheld(f"caller_is_{contact.kind}")
    if phonenumbers.region_code_for_number(phonenumbers.parse(caller)) not in config.allowed_countries():
        return no_text.withheld("country_not_allowed")
    if not is_textable(caller, config.text.allow_landlines):
        return no_text.withheld("not_textable")
    fraud = config.fraud
    if recent.last_hour >= fraud.max_texts_per_hour or recent.last_day >= fraud.max_texts_per_day:
        return no_text.withheld("fraud_rate_cap")
    if recent.same_prefix_last_hour >= fraud.max_per_prefix_per_hour:
        return no_text.withheld("fraud_prefix_burst")
    reason, name, template = choose_template(config, number, call, is_client=contact is not None)
    body = render_for(config, template, number, caller, call.ended_at, owner)
    if config.text.reply_stop_footer:
        body += " Reply STOP to opt out."
    due = allowed_time(config, call.ended_at + config.text.delay_seconds)
    return Decision(number.number, caller, owner.id, True, reason, body, due, template=name)


def choose_template(config: Config, number: NumberConfig, call: CallFinished,
                    is_client: bool) -> tuple[str, str, str]:
    """(reason, template name, template) for a missed call's first text.

    A client gets the client text; after hours, the number's after-hours
    template or the business's; in hours, the most specific of: a window of
    the number's own hours, the number's template, a window of the
    business's hours, text.template. Names are entries of text.templates, or
    after_hours, client and missed_call for the text section's own three.
    """
    text = config.text
    if is_client and text.client_template:
        return "client_text", "client", text.client_template
    hours = hours_of(config, number)
    if is_after_hours(hours, call):
        if number.after_hours_template:
            return "after_hours_text", number.after_hours_template, text.templates[number.after_hours_template]
        if text.after_hours_template:
            return "after_hours_text", "after_hours", text.after_hours_template
    window = hours.window_at(call.ended_at)
    window_name = window.template if window is not None else None
    if number.hours is not None:
        name = window_name or number.template
    else:
        name = number.template or window_name
    if name:
        return "missed_call_text", name, text.templates[name]
    return "missed_call_text", "missed_call", text.template


def is_after_hours(hours: Hours, call: CallFinished) -> bool:
    """Closed when the call came in: the routing AGI's answer when it gave one, so the caller
    whose call rang the after-hours targets also gets the after-hours text; else the hours at hangup."""
    if call.dialplan_hours:
        return call.dialplan_hours == "closed"
    return not hours.in_hours(call.ended_at)


def allowed_time(config: Config, due: float) -> float:
    """`due`, or the next opening of the quiet-hours window when that is on and `due` is outside."""
    quiet = config.quiet_hours
    if not quiet.enabled:
        return due
    window = Hours(config.business.timezone,
                   (Window(tuple(WEEKDAYS), quiet.allowed_from, quiet.allowed_until),))
    return window.next_opening(due) or due


def render_for(config: Config, template: str, number: NumberConfig, caller: str,
               at: float | None = None, owner: OwnerConfig | None = None) -> str:
    """Fill a template with the values of one business number, caller and owner (default: the number's)."""
    owner = owner or config.owner(number.owner)
    contact = config.contact(caller)
    opening = hours_of(config, number).next_opening(at) if at is not None else None
    return render(template, {
        "business_name": config.business.name,
        "business_number": national(number.number),
        "owner_name": owner.name,
        "owner_first_name": owner.name.split()[0],
        "caller_number": national(caller),
        "caller_name": contact.name if contact else "",
        "next_opening": _when(opening, config.business.timezone) if opening else "",
    })


def _when(at: float, timezone: str) -> str:
    local = datetime.fromtimestamp(at, ZoneInfo(timezone))
    return local.strftime("%A %-I:%M %p")
