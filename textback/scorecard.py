"""The scorecard: missed calls -> texts -> replies -> booked -> qualified -> won. No I/O.

Computed from plain rows the store hands over, per business number, so the
figures can be checked by hand on seeded data.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable


# A job value past this is a typo, not a remodel.
MAX_JOB_VALUE = 1e9


def parse_amount(text: str) -> float | None:
    """'82000', '82,000', '$82k', '1.2m' -> a number; None if it is not a sane job value."""
    match = re.fullmatch(r"\$?\s*([0-9][0-9,]{0,15}(?:\.[0-9]{1,2})?)\s*([km]?)", text.strip().lower())
    if not match:
        return None
    value = float(match.group(1).replace(",", "")) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2)]
    return value if math.isfinite(value) and 0 < value <= MAX_JOB_VALUE else None


@dataclass
class Scorecard:
    business_number: str
    missed_calls: int = 0
    missed_by_reason: Counter = field(default_factory=Counter)
    texts_sent: int = 0
    segments_sent: int = 0  # what the carrier bills
    conversations_texted: int = 0
    conversations_replied: int = 0
    first_answer_minutes: list[float] = field(default_factory=list)
    booked: int = 0
    qualified: int = 0
    won: int = 0
    won_value: float = 0.0
    lost: int = 0
    opt_outs: int = 0
    replies_by_template: Counter = field(default_factory=Counter)
    texts_by_template: Counter = field(default_factory=Counter)

    @property
    def reply_rate(self) -> float | None:
        if not self.conversations_texted:
            return None
        return self.conversations_replied / self.conversations_texted

    @property
    def median_minutes_to_human_answer(self) -> float | None:
        return statistics.median(self.first_answer_minutes) if self.first_answer_minutes else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "business_number": self.business_number,
            "missed_calls": self.missed_calls,
            "missed_by_reason": dict(sorted(self.missed_by_reason.items())),
            "texts_sent": self.texts_sent,
            "segments_sent": self.segments_sent,
            "replies": self.conversations_replied,
            "reply_rate": self.reply_rate,
            "median_minutes_reply_to_human_answer": self.median_minutes_to_human_answer,
            "booked": self.booked,
            "qualified": self.qualified,
            "won": self.won,
            "won_value": self.won_value,
            "lost": self.lost,
            "opt_outs": self.opt_outs,
            "reply_rate_by_template": {
                t: self.replies_by_template[t] / n for t, n in sorted(self.texts_by_template.items())},
        }


def build(calls: Iterable[dict], messages: Iterable[dict], outcomes: Iterable[dict],
          opt_outs: Iterable[dict]) -> list[Scorecard]:
    """One scorecard per business number.

    calls: business_number, outcome, reason, conversation_id
    messages: conversation_id, business_number, direction, kind, status, created_at, template,
              segments (what the text costs, as sms_gateway.segments counts it)
    outcomes: conversation_id, business_number, stage, value (the latest per stage counts once)
    opt_outs: business_number (one row per opted-out conversation)
    """
    cards: dict[str, Scorecard] = {}

    def card(number: str) -> Scorecard:
        return cards.setdefault(number, Scorecard(number))

    for call in calls:
        if call["outcome"] == "missed":
            c = card(call["business_number"])
            c.missed_calls += 1
            c.missed_by_reason[call["reason"]] += 1

    threads: dict[int, list[dict]] = {}
    for message in sorted(messages, key=lambda m: (m["created_at"], m.get("id", 0))):
        threads.setdefault(message["conversation_id"], []).append(message)
    for thread in threads.values():
        c = card(thread[0]["business_number"])
        auto = [m for m in thread if m["direction"] == "out" and m["kind"] == "auto"
                and m["status"] in ("sent", "delivered")]
        sent = [m for m in thread if m["direction"] == "out" and m["status"] in ("sent", "delivered")]
        c.texts_sent += len(sent)
        c.segments_sent += sum(m["segments"] for m in sent)
        first_in = next((m for m in thread if m["direction"] == "in"), None)
        if auto:
            c.conversations_texted += 1
            c.texts_by_template[auto[0].get("template") or "default"] += 1
            if first_in is not None:
                c.replies_by_template[auto[0].get("template") or "default"] += 1
        if first_in is not None and auto:
            c.conversations_replied += 1
        if first_in is not None:
            answer = next((m for m in thread if m["direction"] == "out" and m["kind"] == "owner"
                           and m["created_at"] >= first_in["created_at"]), None)
            if answer is not None:
                c.first_answer_minutes.append((answer["created_at"] - first_in["created_at"]) / 60)

    seen: set[tuple[int, str]] = set()
    for outcome in sorted(outcomes, key=lambda o: -o.get("at", 0)):
        key = (outcome["conversation_id"], outcome["stage"])
        if key in seen:
            continue
        seen.add(key)
        c = card(outcome["business_number"])
        stage = outcome["stage"]
        if stage in ("booked", "qualified", "won", "lost"):
            setattr(c, stage, getattr(c, stage) + 1)
        if stage == "won":
            c.won_value += outcome.get("value") or 0.0
    for row in opt_outs:
        card(row["business_number"]).opt_outs += 1
    return [cards[n] for n in sorted(cards)]


CSV_COLUMNS = ["business_number", "missed_calls", "texts_sent", "segments_sent", "replies",
               "reply_rate", "median_minutes_reply_to_human_answer", "booked", "qualified", "won",
               "won_value", "lost", "opt_outs"]


def csv_table(cards: list[dict[str, Any]], label: str) -> list[list[Any]]:
    """The scorecard as CSV rows, header first: `textback report --format csv` and the web page."""
    rows: list[list[Any]] = [["period", *CSV_COLUMNS, "missed_by_reason"]]
    for card in cards:
        reasons = " ".join(f"{k}={v}" for k, v in card["missed_by_reason"].items())
        rows.append([label, *(card[c] for c in CSV_COLUMNS), reasons])
    return rows


def render_text(cards: list[dict[str, Any]], label: str, timezone: str) -> str:
    """The scorecard as plain text, for the terminal and the monthly email."""
    lines = [f"Scorecard for {label} ({timezone})"]
    if not cards:
        lines.append("No calls or texts in this period.")
    for card in cards:
        rate = "-" if card["reply_rate"] is None else f"{card['reply_rate']:.0%}"
        median = card["median_minutes_reply_to_human_answer"]
        lines += [
            "",
            card["business_number"],
            f"  missed calls     {card['missed_calls']:>6}   "
            + ", ".join(f"{k} {v}" for k, v in card["missed_by_reason"].items()),
            f"  texts sent       {card['texts_sent']:>6}   ({card['segments_sent']} segments)",
            f"  replies          {card['replies']:>6}   reply rate {rate}",
            f"  reply -> human   {'-' if median is None else f'{median:.0f} min':>6}   (median)",
            f"  booked           {card['booked']:>6}",
            f"  qualified        {card['qualified']:>6}",
            f"  won              {card['won']:>6}   value {card['won_value']:,.0f}",
            f"  lost             {card['lost']:>6}",
            f"  opt-outs         {card['opt_outs']:>6}",
        ]
        lines += [f"  template {template!r}: reply rate {r:.0%}"
                  for template, r in card["reply_rate_by_template"].items()]
    return "\n".join(lines)
