"""A store with years of history, built through the store's own API, for plan tests and benchmarks.

Each step runs at the moment it happened in the story (time-machine moves the
wall clock the store reads), so every row is what the daemon would have
written then: calls, automatic texts sent, homeowners' replies and their
alerts mailed, owners' answers, outcomes, opt-outs and each day's digest. Only durability is
relaxed while building (synchronous=OFF): the rows are the same.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import time_machine

from datetime import datetime, timezone

from textback.core.intake import extract
from textback.core.numbers import to_e164
from textback.store import CallRow, Notice, PlannedText, Store

BUSINESS_NUMBERS = ("+12125550100", "+12125550101")
OWNERS = ("dana", "eli")
# Area codes the caller numbers are drawn from (valid for mobiles in phonenumbers' metadata).
_AREA_CODES = ("212", "646", "917", "718", "347", "929", "516", "631", "914", "315")


@dataclass(frozen=True)
class Shape:
    """How a business's calls go: the rates each step of the story happens at."""

    calls_per_day: float = 100.0
    answered: float = 0.25       # calls a person picked up
    returning: float = 0.35      # calls from a caller seen before
    replies: float = 0.3         # texted callers who text back
    owner_answers: float = 0.5   # replies an owner answers
    outcomes: float = 0.1        # conversations marked booked or won
    opt_outs: float = 0.01       # replies that are STOP
    escalated: float = 0.0       # unanswered replies escalated to the backup owner


def caller_number(index: int) -> str:
    """The `index`-th distinct caller: a valid US mobile-capable number."""
    area = _AREA_CODES[index % len(_AREA_CODES)]
    rest = index // len(_AREA_CODES)
    exchange, line = 200 + rest // 10000 % 700, rest % 10000
    if exchange % 100 == 11 or exchange == 555:  # N11 and 555 exchanges hold no mobiles
        exchange += 1
    number = f"+1{area}{exchange:03d}{line:04d}"
    if to_e164(number, None) != number:
        raise ValueError(f"generated caller {number} is not a valid number")
    return number


REPLY = "Hi, can you call me back about the kitchen?"
# What textback reads from that reply (a project, kept with each reply as the daemon does).
REPLY_INTAKE = extract(REPLY, datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc))


async def build_history(store: Store, calls: int, end: float, shape: Shape = Shape(),
                        seed: int = 1) -> dict[str, int]:
    """Add `calls` calls, at `shape.calls_per_day`, ending at `end`; returns what was added."""
    rng = random.Random(seed)
    if isinstance(store, Store):  # SQLite's file; a PostgreSQL test server runs without fsync
        await store._db.execute("PRAGMA synchronous=OFF")
    spacing = 86400 / shape.calls_per_day
    start = end - calls * spacing
    counts = {"calls": 0, "texts": 0, "replies": 0, "answers": 0, "outcomes": 0, "opt_outs": 0,
              "notices": 0, "escalations": 0}
    callers = 0
    with time_machine.travel(start, tick=False) as clock:
        for i in range(calls):
            at = start + i * spacing
            if i and int(at // 86400) != int((at - spacing) // 86400):
                clock.move_to(at)
                await _mail_notice(store, OWNERS[int(at // 86400) % len(OWNERS)])
                counts["notices"] += 1
            if callers and rng.random() < shape.returning:
                caller = caller_number(rng.randrange(max(0, callers - 2000), callers))
            else:
                caller, callers = caller_number(callers), callers + 1
            number = BUSINESS_NUMBERS[i % len(BUSINESS_NUMBERS)]
            owner = OWNERS[i % len(OWNERS)]
            answered = rng.random() < shape.answered
            ended = at + rng.uniform(5, 40)
            clock.move_to(ended)
            row = CallRow(
                linkedid=f"history-{seed}-{i}", business_number=number, caller_raw=caller,
                caller=caller, caller_name="", started_at=at,
                answered_at=at + 4 if answered else None, ended_at=ended,
                outcome="answered" if answered else "missed",
                reason="answered" if answered else "no_answer",
                decision="answered" if answered else "missed_call_text")
            text = None if answered else PlannedText(
                owner, "Sorry we missed your call to Acme. Reply STOP to opt out.", ended,
                "missed_call")
            outbox_id = await store.record_call(row, text, owner_id=owner,
                                                dedupe_since=ended - 24 * 3600)
            counts["calls"] += 1
            if outbox_id is None:
                continue
            await _send_due(store, ended)
            counts["texts"] += 1
            if rng.random() >= shape.replies:
                continue
            clock.move_to(ended + rng.uniform(60, 3600))
            stop = rng.random() < shape.opt_outs
            inbound = await store.record_inbound(
                caller, number, "STOP" if stop else REPLY, "log", f"in-{seed}-{i}", owner,
                intake=None if stop else REPLY_INTAKE)
            await _mail_alert(store, inbound.alert_id)
            counts["replies"] += 1
            if stop:
                await store.suppress(caller, "sms")
                counts["opt_outs"] += 1
                continue
            answers = rng.random() < shape.owner_answers
            if not answers and shape.escalated and rng.random() < shape.escalated:
                clock.move_to(ended + 3600 + 1800)
                notice_id = await store.record_escalation(inbound.message_id, 1, "boss", Notice(
                    "Boss", "boss@example.com", "Unanswered", "Nobody has answered yet."))
                await _mail(store, notice_id)
                counts["escalations"] += 1
            if answers:
                clock.move_to(ended + rng.uniform(3600, 7200))
                await store.queue_reply(inbound.conversation_id, number, caller,
                                        "Sure, calling you in 10 minutes.", "owner")
                await _send_due(store, ended + 7200)
                counts["answers"] += 1
            if rng.random() < shape.outcomes:
                await store.record_outcome(inbound.conversation_id,
                                           rng.choice(("booked", "won")), None, "history")
                counts["outcomes"] += 1
    return counts


async def _send_due(store: Store, now: float) -> None:
    """What the outbox worker does with due texts when the gateway accepts them all."""
    taken = await store.claim_all(await store.due(now))
    if taken:
        await store.mark_all_sent([(item, f"gw-{item.id}") for item in taken], "log")


async def _mail_notice(store: Store, owner: str) -> None:
    """The daily digest: a notice queued, claimed and mailed."""
    await _mail(store, await store.queue_notice(owner, f"{owner}@example.com", "2 texts waiting",
                                                "Two homeowners wait for an answer."))


async def _mail(store: Store, notice_id: int) -> None:
    """What the notice worker does with a queued notice when the relay takes it."""
    if await store.claim_mail("notices", notice_id, float("inf")) is not None:
        await store.mark_notice(notice_id, "sent")


async def _mail_alert(store: Store, alert_id: int) -> None:
    """What the alert worker does with a new alert when the relay takes it."""
    if await store.claim_mail("alerts", alert_id, float("inf")) is not None:
        await store.mark_alert(alert_id, "sent", "owner@example.com", "New reply")
