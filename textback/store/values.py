"""What the store takes and gives: rows, planned texts, outbox items, notices; the
names of kinds and tables several aggregates share."""

from __future__ import annotations

import time
from dataclasses import dataclass

from textback.core.segments import count_segments
from textback.core import events
from textback.core.events import Event
from textback.core.numbers import to_e164


# An inbound text without a gateway id that repeats the caller's latest one within this many
# seconds is that text delivered again (see Store.record_inbound).
REPEAT_WITHOUT_ID_SECONDS = 300

# The kind of a self-test's text (messages.kind).
SELFTEST_KIND = "selftest"
# What `textback inbox --json` shows of a conversation, in its order.
CLI_INBOX_COLUMNS = ("id", "caller", "business_number", "owner_id", "status", "created_at",
                     "updated_at", "contact_name", "last_reply", "last_reply_at", "last_answer_at",
                     "missed_calls", "held_until", "intake_labels", "intake_project",
                     "intake_area")
# A message retention may delete: before the cutoff, and neither its text nor its alert in flight.
_PRUNABLE_MESSAGE = (
    "m.created_at < ? AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id"
    " AND o.state IN ('pending', 'sending')) AND NOT EXISTS (SELECT 1 FROM alerts a"
    " WHERE a.message_id = m.id AND a.state IN ('pending', 'sending'))")

# The path a text of each kind takes when its writer names none (owner replies always name one).
_QUEUED_BY = {"auto": "automatic", SELFTEST_KIND: "selftest", "help": "sms",
              "optout_confirmation": "sms", "optin_confirmation": "sms"}

# Emails the daemon sends, each a row claimed before it is mailed (see Store.claim_mail).
MAIL_TABLES = ("alerts", "notices")




class NotANumber(ValueError):
    """An address reached the store that is not a canonical E.164 number: a bug upstream."""


def _canonical(number: str) -> str:
    """Refuse anything but canonical E.164, so no text or opt-out is ever keyed by a raw string."""
    if not number or to_e164(number, None) != number:
        raise NotANumber(f"not a canonical E.164 number: {number!r}")
    return number


@dataclass(frozen=True)
class CallRow:
    linkedid: str
    business_number: str
    caller_raw: str
    caller: str | None
    caller_name: str
    started_at: float
    answered_at: float | None
    ended_at: float
    outcome: str
    reason: str
    decision: str
    route: str = ""
    recovered: bool = False  # rebuilt from the CDR: it ended while AMI was not logged in
    selftest: bool = False  # placed by the self-test: never counted, never owned


@dataclass(frozen=True)
class PlannedText:
    """An automatic text to queue with the call, in the same transaction."""

    owner_id: str
    body: str
    due_at: float
    template: str = "default"


@dataclass(frozen=True)
class OutboxItem:
    id: int
    message_id: int
    conversation_id: int
    sender: str
    recipient: str
    body: str
    due_at: float
    attempts: int
    kind: str
    idempotency_key: str
    first_due_at: float
    last_error: str


@dataclass(frozen=True)
class Notice:
    """A short email to an owner or the admin, queued in `notices` before it is mailed."""

    name: str
    address: str
    subject: str
    body: str


@dataclass(frozen=True)
class InboundRecord:
    conversation_id: int
    message_id: int
    alert_id: int | None  # None: no alert (an opt-out repeated by a number already out)
    duplicate: bool
    answered: int | None = None  # the outbox id of a keyword's answer (a confirmation, help)
    # An opt-out keyword from a number already opted out: kept in the thread and the consent
    # ledger, but nobody is alerted and the conversation does not wait (textback/core/waiting.py).
    repeated_optout: bool = False




def _segments(body: str) -> int:
    return count_segments(body).segments


def _text_event(kind: str, item: OutboxItem, status: str, error: str,
                at: float | None = None) -> Event:
    return events.text_event(kind, message_id=item.message_id,
                             conversation_id=item.conversation_id, sender=item.sender,
                             recipient=item.recipient, body=item.body, text_kind=item.kind,
                             status=status, error=error, at=at or time.time())


def _mail_table(table: str) -> str:
    """`table` if it is one of MAIL_TABLES: table names cannot be SQL parameters."""
    if table not in MAIL_TABLES:
        raise ValueError(f"not a mail table: {table!r}")
    return table
