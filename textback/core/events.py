"""Webhook events as values: what happened, in a versioned JSON body. No I/O.

The store builds an `Event` with the change that caused it and commits both
in one transaction; the body is rendered once, then, so every retry of a
delivery sends the same bytes under the same id. Numbers are E.164, times
RFC 3339 with their offset; bodies carry what a CRM needs about a lead and
nothing of textback's own secrets or tokens.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from textback.core.selftest import Report

# The body's layout; a change that removes or renames a field is a new version.
PAYLOAD_VERSION = 1

CALL_MISSED = "call.missed"
CALL_ANSWERED = "call.answered"
TEXT_SENT = "text.sent"
TEXT_DELIVERED = "text.delivered"
TEXT_FAILED = "text.failed"
REPLY_RECEIVED = "reply.received"
CONVERSATION_ASSIGNED = "conversation.assigned"
OUTCOME_CHANGED = "outcome.changed"
OPTOUT_CHANGED = "optout.changed"
SELFTEST_FINISHED = "selftest.finished"
WEBHOOK_TEST = "webhook.test"  # sent by `textback webhooks test`, never queued

EVENT_TYPES = (CALL_MISSED, CALL_ANSWERED, TEXT_SENT, TEXT_DELIVERED, TEXT_FAILED,
               REPLY_RECEIVED, CONVERSATION_ASSIGNED, OUTCOME_CHANGED, OPTOUT_CHANGED,
               SELFTEST_FINISHED)
# An endpoint that names no events gets these: answered calls and self-tests (for a
# monitoring receiver, not a CRM) only when asked for.
DEFAULT_EVENT_TYPES = tuple(t for t in EVENT_TYPES if t not in (CALL_ANSWERED, SELFTEST_FINISHED))


@dataclass(frozen=True)
class Event:
    """One event, ready to commit: its id (the `webhook-id` of every delivery), its type,
    the key its deliveries are ordered by (one conversation, or one number), and its body."""

    id: str
    type: str
    order_key: str
    body: str
    at: float


def rfc3339(at: float | None) -> str | None:
    """A moment as RFC 3339 in UTC with an explicit offset, to the millisecond."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")


def new_event(kind: str, order_key: str, data: dict[str, Any], at: float) -> Event:
    """The event and its body: {"type", "version", "id", "timestamp", "data"}."""
    event_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps({"type": kind, "version": PAYLOAD_VERSION, "id": event_id,
                       "timestamp": rfc3339(at), "data": data},
                      ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return Event(event_id, kind, order_key, body, at)


def conversation_key(conversation_id: int | None, fallback: str) -> str:
    """Deliveries of one conversation keep their order; events outside one are keyed by `fallback`."""
    return f"conversation:{conversation_id}" if conversation_id is not None else fallback


def call_finished(*, linkedid: str, conversation_id: int | None, business_number: str,
                  caller: str | None, caller_name: str, started_at: float,
                  answered_at: float | None, ended_at: float, outcome: str, reason: str,
                  decision: str, recovered: bool, owner_id: str | None, text_queued: bool,
                  at: float) -> Event:
    kind = CALL_ANSWERED if outcome == "answered" else CALL_MISSED
    return new_event(kind, conversation_key(conversation_id, f"call:{linkedid}"), {
        "call_id": linkedid, "conversation_id": conversation_id,
        "business_number": business_number, "caller": caller, "caller_name": caller_name,
        "started_at": rfc3339(started_at), "answered_at": rfc3339(answered_at),
        "ended_at": rfc3339(ended_at), "reason": reason, "decision": decision,
        "recovered": recovered, "owner_id": owner_id, "text_queued": text_queued,
    }, at)


def text_event(kind: str, *, message_id: int, conversation_id: int, sender: str,
               recipient: str, body: str, text_kind: str, status: str, error: str,
               at: float) -> Event:
    """text.sent, text.delivered or text.failed for one outgoing text."""
    return new_event(kind, conversation_key(conversation_id, ""), {
        "message_id": message_id, "conversation_id": conversation_id,
        "from": sender, "to": recipient, "body": body, "kind": text_kind,
        "status": status, "error": error, "at": rfc3339(at),
    }, at)


def reply_received(*, message_id: int, conversation_id: int, caller: str,
                   business_number: str, body: str, contact_name: str, owner_id: str,
                   at: float, media: list[dict[str, Any]] | None = None,
                   intake: dict[str, dict[str, str]] | None = None) -> Event:
    """`media`: each item's id, declared content_type and size, and its signed link (None
    without a `web:` listener); the link serves the file once textback has fetched it.
    `intake`: the conversation's facts after this text (project, budget, timing, location,
    service_area; each value, label, evidence, why and source), a person's value winning."""
    return new_event(REPLY_RECEIVED, conversation_key(conversation_id, ""), {
        "message_id": message_id, "conversation_id": conversation_id,
        "from": caller, "to": business_number, "body": body,
        "contact_name": contact_name, "owner_id": owner_id, "received_at": rfc3339(at),
        "media": media or [], "intake": intake or {},
    }, at)


def conversation_assigned(*, conversation_id: int, caller: str, business_number: str,
                          owner_id: str, previous_owner_id: str | None, reason: str,
                          at: float) -> Event:
    return new_event(CONVERSATION_ASSIGNED, conversation_key(conversation_id, ""), {
        "conversation_id": conversation_id, "caller": caller,
        "business_number": business_number, "owner_id": owner_id,
        "previous_owner_id": previous_owner_id, "reason": reason, "at": rfc3339(at),
    }, at)


def outcome_changed(*, conversation_id: int, caller: str, business_number: str, stage: str,
                    value: float | None, source: str, external_ref: str | None,
                    at: float) -> Event:
    return new_event(OUTCOME_CHANGED, conversation_key(conversation_id, ""), {
        "conversation_id": conversation_id, "caller": caller,
        "business_number": business_number, "stage": stage, "value": value,
        "source": source, "external_ref": external_ref, "at": rfc3339(at),
    }, at)


def optout_changed(*, number: str, opted_out: bool, source: str, at: float) -> Event:
    return new_event(OPTOUT_CHANGED, f"number:{number}", {
        "number": number, "opted_out": opted_out, "source": source, "at": rfc3339(at),
    }, at)


def selftest_finished(*, run_id: int, trigger: str, report: Report, at: float) -> Event:
    """A self-test run ended: passed, or the step it failed at, and each step's result."""
    failed = report.failed_step
    return new_event(SELFTEST_FINISHED, "selftest", {
        "run_id": run_id, "trigger": trigger, "passed": report.passed,
        "failed_step": failed.name if failed else None,
        "started_at": rfc3339(report.started_at), "finished_at": rfc3339(report.finished_at),
        "steps": [{"name": step.name, "status": step.status, "seconds": step.seconds,
                   "detail": step.detail} for step in report.steps],
    }, at)


def probe_event(endpoint: str, at: float) -> Event:
    return new_event(WEBHOOK_TEST, f"test:{uuid.uuid4().hex}", {
        "endpoint": endpoint, "message": "A test event from textback: the signature checks out.",
        "at": rfc3339(at),
    }, at)
