"""When a queued text is still worth sending, and how fast a gateway may be called.

Pure: values in, decisions out; the outbox worker (textback/workers/outbox.py) owns
the clock and the sockets.

* A text is retried until its deadline, not a number of times: a "sorry we
  missed your call" hours late is worse than none, so the owner is told
  instead and calls back.
* A provider's rate limit spaces sends out; its Retry-After holds every send
  on that gateway, not just the one that was refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

from textback.core.alerts import one_line
from textback.core.call_words import missed_because
from textback.core.gateway_errors import explain
from textback.core.numbers import national
from textback.core.relay import OWNER_KINDS, OWNER_STOP_CONFIRMATION

# 47 CFR 64.1200(a)(12): the one confirmation of an opt-out is allowed within five minutes
# of the request; later it is itself a text the person asked not to get.
CONFIRMATION_WINDOW_SECONDS = 300.0
OPTOUT_CONFIRMATION = "optout_confirmation"
OWNER_REPLY = "owner"
MAX_RETRY_AFTER_SECONDS = 3600.0
# A text waiting out a failure is tried at least this often, so a provider that comes back
# is noticed (and everything due sent) within about this long.
MAX_RETRY_SECONDS = 60.0


def deadline(kind: str, first_due_at: float, max_age_seconds: float) -> float:
    """The moment after which a queued text of `kind`, first due at `first_due_at`, is not sent."""
    if kind in (OPTOUT_CONFIRMATION, OWNER_STOP_CONFIRMATION):
        return first_due_at + min(CONFIRMATION_WINDOW_SECONDS, max_age_seconds)
    return first_due_at + max_age_seconds


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 10.2.3), capped; None if absent or garbage.

    Either delta-seconds (ASCII digits only) or an HTTP-date (IMF-fixdate, or the
    obsolete RFC 850 and asctime forms, all in GMT); a date in the past means now.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # asctime carries no zone; HTTP dates are always GMT
        when = when.replace(tzinfo=timezone.utc)
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER_SECONDS)


@dataclass
class Pacer:
    """Spaces a gateway's sends to `per_second` (None: no limit) and holds them all for a Retry-After."""

    per_second: float | None = None
    _next_slot: float = 0.0
    held_until: float = 0.0

    def reserve(self, now: float) -> float:
        """Book the next send; returns when it may start (now, or later)."""
        start = max(now, self._next_slot, self.held_until)
        if self.per_second is not None:
            self._next_slot = start + 1.0 / self.per_second
        return start

    def hold(self, until: float) -> None:
        """The provider asked for no requests before `until`."""
        self.held_until = max(self.held_until, until)


@dataclass(frozen=True)
class Undelivered:
    """What the owner needs to hear about a text that was not (or maybe not) sent."""

    kind: str
    state: str  # expired, failed or unknown
    caller: str
    caller_name: str
    business_number: str
    body: str
    error: str
    first_due_at: float
    call_at: float | None  # the missed call the text answered, if any
    call_reason: str
    gateway: str = ""  # whose error codes `error` holds


def undelivered_notice(text: Undelivered, zone: str) -> tuple[str, str]:
    """Subject and body of the owner's email about a text that did not reach the caller."""
    tz = ZoneInfo(zone)

    def when(at: float) -> str:
        return datetime.fromtimestamp(at, tz).strftime("%a %d %b %H:%M %Z")

    who = one_line(text.caller)
    named = f"{who} ({one_line(text.caller_name, 80)})" if text.caller_name else who
    fate = {"expired": f"could not be sent in time (due {when(text.first_due_at)})",
            "failed": "was refused by the SMS gateway",
            "unknown": "may or may not have reached them: the gateway did not answer",
            "blocked": "was not sent: they texted STOP, so nothing more is texted to them",
            "undelivered": "was not delivered: their carrier reported it undeliverable"}[text.state]
    plain = explain(text.gateway, text.error) if text.state in ("failed", "undelivered") else None
    lines = []
    if text.kind in OWNER_KINDS:
        subject = f"A text to your phone {who} was not sent"
        lines += [f"textback's text to your phone {who} {fate}.",
                  "Email alerts go on as before; the inbox has every conversation."]
    elif text.kind == OPTOUT_CONFIRMATION:
        subject = f"{who} opted out; no confirmation was texted"
        lines += [f"{named} asked not to be texted (STOP). The confirmation text {fate}.",
                  "A confirmation more than five minutes late is not allowed, so none will be sent.",
                  "They are on the suppression list: nothing else will be texted to them."]
    elif text.kind == OWNER_REPLY:
        subject = f"Not sent to {who}: your reply"
        lines.append(f"Your reply to {named} {fate}.")
        if plain is not None:
            lines.append(f"Why: {plain.sentence}.")
        lines.append("Call them, or reply again later.")
    else:
        subject = (f"Call back {who}: the text to them may not have been sent"
                   if text.state == "unknown" else f"Call back {who}: the text to them was not sent")
        if text.call_at is not None:
            lines.append(f"{named} called {text.business_number} on {when(text.call_at)}: "
                         f"{missed_because(text.call_reason)}.")
        if plain is not None:
            lines.append(f"We could not text {national(text.caller)}: {plain.sentence}. "
                         f"Call them back.")
        else:
            lines += [f"The text to them {fate}.", "Please call them back."]
    lines += ["", f"The text: {one_line(text.body, 500)}",
              f"Last error: {one_line(text.error, 300) or 'none'}"]
    return subject, "\n".join(lines)
