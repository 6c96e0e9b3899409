"""An owner's own phone: the alert texted to it, and what a text back from it means. No I/O.

A homeowner's reply is texted to the owner's mobile (`alert_text`) with the
conversation's code (`#12`); the owner answers from the phone's Messages app.
`parse_answer` reads that answer: a leading code picks the conversation, a
bookkeeping command (`#booked`, `#won 82000`, `#assign sam`) is parsed by the
same parser as an email reply's (textback.core.replies.parse_command), and
anything else is the words to relay. The owner's quiet hours say when an
alert text waits (`held_until`); the homeowner's texts are never held by them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time as clock, timedelta
from zoneinfo import ZoneInfo

from textback.core.alerts import one_line
from textback.core.gateway_errors import explain
from textback.core.intake import beside_the_number
from textback.core.numbers import national
from textback.core.replies import parse_command
from textback.core.segments import count_segments

# The kinds (messages.kind) of the texts to an owner's own phone: never a lead's text, never
# on the scorecard, never an event for webhooks or a CRM.
OWNER_ALERT = "owner_alert"  # a homeowner's reply, texted to the owner
OWNER_NOTICE = "owner_notice"  # why an answer was not sent; the help reply; alerts on again
OWNER_STOP_CONFIRMATION = "owner_stop_confirmation"  # alerts off (sent though the number is)
OWNER_ANSWER = "owner_answer"  # a text from the owner's mobile, as received
OWNER_KINDS = frozenset({OWNER_ALERT, OWNER_NOTICE, OWNER_STOP_CONFIRMATION})

# An alert text fits in this many SMS segments: the caller's words are cut to fit.
ALERT_MAX_SEGMENTS = 2
ALERT_NAME_CHARS = 24
# The intake labels that lead an alert text ("Kitchen · ~$75k · 11215 (in area)") are cut here,
# so the homeowner's own words always keep most of the two segments.
ALERT_LABELS_CHARS = 48
# The decision of a call from an owner's own mobile: recorded, never texted, never counted.
OWNER_MOBILE = "owner_mobile"
# An owner's text that matches no conversation gets the help reply at most this often, so an
# auto-reply on the owner's phone and the help reply never answer each other for ever.
HELP_INTERVAL_SECONDS = 600.0

_CODE = re.compile(r"^\s*#(\d{1,12})\b[\s:,.-]*", re.ASCII)
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def alert_text(caller: str, name: str, words: str, code: int, labels: str = "") -> str:
    """`Kitchen, ~$75k, 11215 (in area). (212) 555-0123 Bob: "We need a kitchen…" Reply to
    answer. #12`.

    `labels` are the conversation's intake facts as the inbox shows them (less the caller's
    bare area code, which the number says); they lead, so the owner sees what the job is
    before the words. `words` is the homeowner's text (or what it
    carried: "2 photos"), reduced to one printable line and cut so the alert fits in
    ALERT_MAX_SEGMENTS; `name` is the contact name, shortened. Both are the caller's own: no
    control character gets through.
    """
    who = national(caller)
    short_name = one_line(name, ALERT_NAME_CHARS)
    if short_name:
        who = f"{who} {short_name}"
    # The inbox's " · " is not in the GSM 7-bit alphabet: a text with it is sent as UCS-2, and
    # its two segments hold 134 characters rather than 306. Commas keep the labels in GSM-7.
    lead = one_line(beside_the_number(labels).replace(" · ", ", "), ALERT_LABELS_CHARS)
    if lead:
        who = f"{lead}. {who}"
    tail = f" Reply to answer. #{code}"
    quoted = one_line(words, 10_000) or "(empty text)"
    text = f'{who}: "{quoted}"{tail}'
    if count_segments(text).segments <= ALERT_MAX_SEGMENTS:
        return text
    low, high = 0, len(quoted)  # the longest cut that fits
    while low < high:
        middle = (low + high + 1) // 2
        if count_segments(f'{who}: "{quoted[:middle].rstrip()}…"{tail}').segments <= ALERT_MAX_SEGMENTS:
            low = middle
        else:
            high = middle - 1
    return f'{who}: "{quoted[:low].rstrip()}…"{tail}'


@dataclass(frozen=True)
class Answer:
    """What an owner texted back: the conversation code it names (None: the last alerted),
    a command and its argument, or the words to relay."""

    code: int | None
    command: str = ""
    argument: str = ""
    text: str = ""


def parse_answer(body: str) -> Answer:
    """`#12 Sure, Tuesday at 10` -> code 12 and the words; `#won 82000` -> the command."""
    code = None
    rest = body.strip()
    match = _CODE.match(rest)
    if match:
        code = int(match.group(1))
        rest = rest[match.end():].strip()
    lines = rest.splitlines()
    command = parse_command(lines[0]) if lines else None
    if command is not None:
        return Answer(code, command=command[0], argument=command[1])
    return Answer(code, text=rest)


HELP_TEXT = ("textback: reply to an alert to answer it, or start with its code: #12 Sure. "
             "#booked #won 82000 #lost #assign sam record the job. STOP ends alert texts.")
STOP_TEXT = "textback: alert texts to this phone are off. Text START to turn them back on."
START_TEXT = "textback: alert texts to this phone are on again."


def failure_reason(state: str, gateway: str, error: str) -> str:
    """Why an answer the outbox took did not reach the homeowner, in a few words for a text."""
    plain = explain(gateway, error) if state in ("failed", "undelivered") else None
    if plain is not None:
        return f"{plain.sentence}."
    return {"expired": "it could not be sent in time. Call them instead.",
            "failed": "the SMS gateway refused it. Call them instead.",
            "unknown": "the SMS gateway did not answer, so it may or may not have reached them.",
            "blocked": "they texted STOP, so nothing more is texted to them. Call them instead.",
            "undelivered": "their carrier reported it undeliverable. Call them instead."}[state]


def not_sent(caller: str, why: str) -> str:
    """The owner's notice, by text, that an answer did not go (and nothing else went)."""
    return f"textback: your answer to {national(caller)} was not sent: {why}"


@dataclass(frozen=True)
class QuietWindow:
    """Local times (the business time zone) between which no alert text goes to the owner;
    `start` after `end` spans midnight (21:00-07:00)."""

    start: clock
    end: clock

    def held_until(self, at: float, timezone: str) -> float | None:
        """When an alert text due at `at` may go: None now, else the moment the window ends."""
        zone = ZoneInfo(timezone)
        local = datetime.fromtimestamp(at, zone)
        now = local.time()
        if self.start <= self.end:
            inside = self.start <= now < self.end
        else:
            inside = now >= self.start or now < self.end
        if not inside:
            return None
        day = local.date() if now < self.end else local.date() + timedelta(days=1)
        # A wall-clock time on that day; one that a DST change skips is read forward (fold 0).
        until = datetime.combine(day, self.end, zone)
        return max(until.timestamp(), at)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_window(value: str) -> QuietWindow:
    """"21:00-07:00" -> a QuietWindow; ValueError for anything else (or an empty window)."""
    match = _WINDOW.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a window HH:MM-HH:MM (e.g. 21:00-07:00)")
    start = clock(int(match.group(1)), int(match.group(2)))
    end = clock(int(match.group(3)), int(match.group(4)))
    if start == end:
        raise ValueError(f"{value!r} starts and ends at the same time")
    return QuietWindow(start, end)
