"""Opt-out, opt-in and help keywords in inbound texts. No I/O.

CTIA practice and FCC 24-18 (47 CFR 64.1200(a)(10)): consent can be revoked
"by any reasonable means", so besides the standard keywords, clear free-text
requests ("stop texting me", "remove me") count too. When in doubt between
an opt-out and an ordinary reply, the message is treated as an opt-out: a
wrongly suppressed lead can text START; a wrongly texted opt-out is a
violation.
"""

from __future__ import annotations

import re
import unicodedata
from enum import Enum


class Keyword(Enum):
    STOP = "stop"
    START = "start"
    HELP = "help"


STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout",
              "opt out", "stop all", "opt-out", "unsub"}
START_WORDS = {"start", "unstop", "yes"}
HELP_WORDS = {"help", "info"}

_FREE_TEXT_STOP = [
    r"\bstop (?:texting|messaging|sending|contacting)\b",
    r"\b(?:do not|don'?t|dont|never) (?:text|message|sms|contact)(?: me| us)?\b",
    r"\bno more (?:texts|messages|sms)\b",
    r"\bremove (?:me|my number|us)\b",
    r"\btake me off\b",
    r"\bunsubscribe\b",
    r"\bopt(?:ing)?[- ]?out\b",
    r"\bleave me alone\b",
    r"\bwrong number\b.*\bstop\b",
]
_FREE_TEXT_STOP_RE = re.compile("|".join(_FREE_TEXT_STOP))


def _normalise(body: str) -> str:
    """Lower-case, accents and punctuation folded, so 'S.T.O.P!!', '  Stop. ' and 'STOP' compare equal."""
    text = unicodedata.normalize("NFKD", body).encode("ascii", "ignore").decode("ascii").lower()
    text = text.replace("’", "'")
    words = re.sub(r"[^a-z0-9' -]+", " ", text)
    return " ".join(words.split())


def _is_stop_word(text: str) -> bool:
    """A normalised text that is one of the opt-out keywords, whatever its dots and spaces."""
    squeezed = text.replace(".", "").replace("'", "")
    return text in STOP_WORDS or squeezed in STOP_WORDS or squeezed.replace(" ", "") in STOP_WORDS


def classify(body: str) -> Keyword | None:
    """The keyword an inbound text carries, or None for an ordinary reply."""
    text = _normalise(body)
    if _is_stop_word(text):
        return Keyword.STOP
    if text in START_WORDS:
        return Keyword.START
    if text in HELP_WORDS:
        return Keyword.HELP
    if _FREE_TEXT_STOP_RE.search(text):
        return Keyword.STOP
    return None


def keyword_name(keyword: Keyword | None, body: str) -> str:
    """How the consent ledger names what a text carried: STOP, START, HELP, or "STOP (free
    text)" for a request in the homeowner's own words; "" for an ordinary reply."""
    if keyword is None:
        return ""
    if keyword is Keyword.STOP and not _is_stop_word(_normalise(body)):
        return "STOP (free text)"
    return keyword.name
