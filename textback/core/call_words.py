"""A call in the plain words of the people who read about it: why it was missed and what
textback did. One wording for the inbox, the calls page, the owner's alert email and the
notice of a text that did not go. No I/O."""

from __future__ import annotations

CALL_REASONS = {
    "no_answer": "nobody picked up", "busy": "the line was busy",
    "unavailable": "no phone could ring", "voicemail": "it went to voicemail",
    "queue_abandoned": "they hung up while waiting in the queue",
    "queue_timeout": "nobody in the queue answered in time",
    "caller_hung_up": "they hung up while it rang", "ivr_abandoned": "they hung up in the menu",
    "not_dialled": "it never rang a phone", "too_short": "they hung up at once",
}
CALL_DECISIONS = {
    "missed_call_text": "We texted them.", "after_hours_text": "We texted them (after hours).",
    "client_text": "We texted them (a client).",
    "opted_out": "Not texted: they opted out (STOP).",
    "open_conversation": "Not texted: you are already talking with them.",
    "not_textable": "Not texted: the number cannot get texts.",
    "country_not_allowed": "Not texted: a country we do not text.",
    "no_callback_number": "Not texted: no number to text back.",
    "too_short": "Not texted: the call was too short.",
    "fraud_rate_cap": "Not texted: too many texts lately (fraud guard).",
    "fraud_prefix_burst": "Not texted: many calls from one number range (fraud guard).",
    "recovered_too_old": "Not texted: found in the call records too late.",
    "caller_is_vendor": "Not texted: a vendor.", "caller_is_staff": "Not texted: staff.",
    "caller_is_blocked": "Not texted: blocked.",
    "owner_mobile": "Not texted: an owner's own mobile.",
    "deduplicated": "Not texted: the same call was already counted.",
    "no_hangup_seen": "Not texted: we never saw the call end, and the call records did not say.",
}


def missed_because(reason: str) -> str:
    """'nobody picked up' for no_answer (an unknown code is shown as it is)."""
    return CALL_REASONS.get(reason, reason.replace("_", " "))


def call_headline(outcome: str, reason: str, decision: str) -> tuple[str, str]:
    """('Missed call', 'nobody picked up. We texted them.'), or ('Answered call', '')."""
    if outcome == "answered":
        return "Answered call", ""
    why = missed_because(reason) or "no reason recorded"
    return "Missed call", f"{why}. " + CALL_DECISIONS.get(
        decision, f"Not texted: {decision.replace('_', ' ')}." if decision else "Not texted.")


def call_title(outcome: str, reason: str, decision: str) -> str:
    """'Missed call: nobody picked up. We texted them.', or 'Answered call.'."""
    headline, detail = call_headline(outcome, reason, decision)
    return f"{headline}: {detail}" if detail else f"{headline}."
