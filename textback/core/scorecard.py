"""The scorecard: missed -> texted -> replied -> booked -> qualified -> won. No I/O.

Computed from plain rows the store hands over, per business number, so the
figures can be checked by hand on seeded data.

The funnel counts conversations, each stage a subset of the one before:

* missed: conversations with a missed call in the period (a missed call with
  no conversation, a withheld number say, counts on its own);
* texted: of those, the ones whose automatic text for such a call the gateway
  accepted;
* replied: of those, the ones where the homeowner answered afterwards: by
  text, or with an outcome recorded (a homeowner who calls back and books has
  answered, so a booking implies a reply);
* booked, qualified, won: of the texted ones, those that reached the stage
  after the missed call, whenever they reached it; a later stage implies the
  earlier ones (won counts as qualified and booked), and a deal lost after it
  was booked stays booked.

Texts and segments sent are the period's cost, every text the gateway took
(automatic texts, owners' answers, help replies), on their own line.
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
# The funnel, in order: each stage's key in a scorecard, and its name.
FUNNEL = (("missed", "missed"), ("texted", "texted"), ("replies", "replied"),
          ("booked", "booked"), ("qualified", "qualified"), ("won", "won"))
OUTCOME_RANK = {"booked": 1, "qualified": 2, "won": 3}
# A text the gateway took: a delivery report that came afterwards does not undo that.
ACCEPTED = ("sent", "delivered", "undelivered")


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
    missed: int = 0
    texted: int = 0
    replied: int = 0
    booked: int = 0
    qualified: int = 0
    won: int = 0
    won_value: float = 0.0
    lost: int = 0
    first_answer_minutes: list[float] = field(default_factory=list)
    opt_outs: int = 0
    replies_by_template: Counter = field(default_factory=Counter)
    texts_by_template: Counter = field(default_factory=Counter)

    @property
    def reply_rate(self) -> float | None:
        return self.replied / self.texted if self.texted else None

    @property
    def median_minutes_to_human_answer(self) -> float | None:
        return statistics.median(self.first_answer_minutes) if self.first_answer_minutes else None

    def as_dict(self) -> dict[str, Any]:
        card = {
            "business_number": self.business_number,
            "missed_calls": self.missed_calls,
            "missed_by_reason": dict(sorted(self.missed_by_reason.items())),
            "texts_sent": self.texts_sent,
            "segments_sent": self.segments_sent,
            "missed": self.missed,
            "texted": self.texted,
            "replies": self.replied,
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
        card["conversions"] = {stage: rate for stage, _, _, rate in funnel(card)[1:]}
        return card


def funnel(card: dict[str, Any]) -> list[tuple[str, str, int | None, float | None]]:
    """The funnel of a scorecard: (key, name, conversations, conversion from the stage before).

    A scorecard kept by retention before the funnel was counted lacks its first stages:
    those are None, and so is any conversion into or out of them.
    """
    stages: list[tuple[str, str, int | None, float | None]] = []
    before: int | None = None
    for key, name in FUNNEL:
        count = card.get(key)
        rate = count / before if count is not None and before else None
        stages.append((key, name, count, rate))
        before = count
    return stages


def build(calls: Iterable[dict], messages: Iterable[dict], outcomes: Iterable[dict],
          opt_outs: Iterable[dict], replies: Iterable[dict]) -> list[Scorecard]:
    """One scorecard per business number.

    calls: the period's calls: business_number, outcome, reason, conversation_id, started_at,
           and its automatic text's text_status, text_at and text_template (None without one)
    messages: the period's messages: conversation_id, business_number, direction, kind, status,
              created_at, template, segments (what the text costs, as textback.core.segments counts it)
    outcomes: the outcomes of the conversations with a missed call in the period, recorded since
              the period began: conversation_id, stage, value, at
    opt_outs: business_number (one row per opted-out conversation)
    replies: the homeowner's texts in those conversations since the period began:
             conversation_id, created_at
    """
    cards: dict[str, Scorecard] = {}

    def card(number: str) -> Scorecard:
        return cards.setdefault(number, Scorecard(number))

    entered: dict[int, float] = {}  # conversation -> its first missed call in the period
    texted_at: dict[int, tuple[float, str]] = {}  # conversation -> its first accepted text, template
    number_of: dict[int, str] = {}
    for call in sorted(calls, key=lambda c: c.get("started_at", 0)):
        if call["outcome"] != "missed":
            continue
        c = card(call["business_number"])
        c.missed_calls += 1
        c.missed_by_reason[call["reason"]] += 1
        conversation = call["conversation_id"]
        if conversation is None:
            c.missed += 1  # nobody to text back: a lead of its own
            continue
        entered.setdefault(conversation, call["started_at"])
        number_of[conversation] = call["business_number"]
        if call.get("text_status") in ACCEPTED and conversation not in texted_at:
            texted_at[conversation] = (call["text_at"], call.get("text_template") or "default")

    answered_at: dict[int, float] = {}
    for reply in replies:
        texted = texted_at.get(reply["conversation_id"])
        if texted is not None and reply["created_at"] >= texted[0]:
            answered_at.setdefault(reply["conversation_id"], reply["created_at"])
    reached: dict[int, int] = {}
    latest: dict[int, dict] = {}
    won_value: dict[int, float] = {}
    for outcome in sorted(outcomes, key=lambda o: o.get("at", 0)):
        conversation = outcome["conversation_id"]
        if conversation not in entered or outcome.get("at", 0) < entered[conversation]:
            continue
        latest[conversation] = outcome
        rank = OUTCOME_RANK.get(outcome["stage"], 0)
        reached[conversation] = max(reached.get(conversation, 0), rank)
        if outcome["stage"] == "won":
            won_value[conversation] = outcome.get("value") or 0.0  # the latest #won counts

    for conversation in entered:
        c = card(number_of[conversation])
        c.missed += 1
        if conversation not in texted_at:
            continue
        c.texted += 1
        template = texted_at[conversation][1]
        c.texts_by_template[template] += 1
        rank = reached.get(conversation, 0)
        if conversation in answered_at or rank:
            c.replied += 1
            c.replies_by_template[template] += 1
        c.booked += rank >= 1
        c.qualified += rank >= 2
        c.won += rank >= 3
        c.won_value += won_value.get(conversation, 0.0) if rank >= 3 else 0.0
        c.lost += latest.get(conversation, {}).get("stage") == "lost"

    threads: dict[int, list[dict]] = {}
    for message in sorted(messages, key=lambda m: (m["created_at"], m.get("id", 0))):
        threads.setdefault(message["conversation_id"], []).append(message)
    for thread in threads.values():
        c = card(thread[0]["business_number"])
        sent = [m for m in thread if m["direction"] == "out" and m["status"] in ACCEPTED]
        c.texts_sent += len(sent)
        c.segments_sent += sum(m["segments"] for m in sent)
        first_in = next((m for m in thread if m["direction"] == "in"), None)
        if first_in is not None:
            answer = next((m for m in thread if m["direction"] == "out" and m["kind"] == "owner"
                           and m["created_at"] >= first_in["created_at"]), None)
            if answer is not None:
                c.first_answer_minutes.append((answer["created_at"] - first_in["created_at"]) / 60)
    for row in opt_outs:
        card(row["business_number"]).opt_outs += 1
    return [cards[n] for n in sorted(cards)]


CSV_COLUMNS = ["business_number", "missed", "texted", "replies", "booked", "qualified", "won",
               "won_value", "lost", "reply_rate", "median_minutes_reply_to_human_answer",
               "missed_calls", "texts_sent", "segments_sent", "opt_outs"]


def csv_table(cards: list[dict[str, Any]], label: str) -> list[list[Any]]:
    """The scorecard as CSV rows, header first: `textback report --format csv` and the web page.

    The funnel's conversions follow its counts, one column each (`texted_of_missed`, ...).
    """
    stages = funnel({})
    conversions = [f"{key if key != 'replies' else 'replied'}_of_{before}"
                   for (key, _, _, _), (_, before, _, _) in zip(stages[1:], stages)]
    rows: list[list[Any]] = [["period", *CSV_COLUMNS, *conversions, "missed_by_reason"]]
    for card in cards:
        reasons = " ".join(f"{k}={v}" for k, v in card["missed_by_reason"].items())
        rates = [rate for _, _, _, rate in funnel(card)[1:]]
        rows.append([label, *(card.get(c) for c in CSV_COLUMNS), *rates, reasons])
    return rows


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def render_text(cards: list[dict[str, Any]], label: str, timezone: str) -> str:
    """The scorecard as plain text, for the terminal and the monthly email."""
    lines = [f"Scorecard for {label} ({timezone})"]
    if not cards:
        lines.append("No calls or texts in this period.")
    for card in cards:
        median = card["median_minutes_reply_to_human_answer"]
        lines += ["", card["business_number"], "  conversations    count   of the stage before"]
        stages = funnel(card)
        for (key, name, count, rate), (_, before, _, _) in zip(stages, [stages[0], *stages]):
            shown = "-" if count is None else count
            after = "" if key == "missed" else f"{_percent(rate):>4} of {before}"
            lines.append(f"  {name:<16} {shown:>6}   {after}".rstrip())
        lines[-1] += f"   value {card['won_value']:,.0f}"
        lines += [
            f"  lost             {card['lost']:>6}",
            f"  missed calls     {card['missed_calls']:>6}   "
            + ", ".join(f"{k} {v}" for k, v in card["missed_by_reason"].items()),
            f"  reply -> human   {'-' if median is None else f'{median:.0f} min':>6}   (median)",
            f"  opt-outs         {card['opt_outs']:>6}",
            f"  cost             {card['texts_sent']:>6}   texts sent, "
            f"{card['segments_sent']} segments",
        ]
        lines += [f"  template {template!r}: reply rate {r:.0%}"
                  for template, r in card["reply_rate_by_template"].items()]
    return "\n".join(lines)


# The scorecard's two intake views (textback/core/intake.py): the funnel by project type, and
# in the service area against out of it. A conversation naming two projects counts in both.
NOT_KNOWN = "(not known)"
GROUP_COLUMNS = ("missed", "texted", "replies", "booked", "qualified", "won", "won_value")


def by_intake(rows: dict[str, list[dict]],
              intake: dict[int, tuple[str | None, str | None]]) -> dict[str, list[dict[str, Any]]]:
    """The funnel of `rows` (Store.report_rows) per project type and per service area.

    `intake`: each conversation's merged project (types joined by commas) and area (in, out),
    None when not known. Each group's figures are `build`'s, summed over the business numbers,
    so a group's funnel reads like the whole one; groups come largest first.
    """
    conversations = {r["conversation_id"] for r in rows["calls"]} - {None}

    def groups(pick) -> dict[str, set[int | None]]:
        found: dict[str, set[int | None]] = {}
        for conversation in conversations:
            for name in pick(*intake.get(conversation, (None, None))):
                found.setdefault(name, set()).add(conversation)
        if any(r["conversation_id"] is None and r["outcome"] == "missed" for r in rows["calls"]):
            found.setdefault(NOT_KNOWN, set()).add(None)  # a withheld number said nothing
        return found

    def summed(members: set[int | None], name: str) -> dict[str, Any]:
        kept = {key: [r for r in rows[key] if r["conversation_id"] in members]
                for key in ("calls", "messages", "outcomes", "replies")}
        cards = [card.as_dict() for card in build(**kept, opt_outs=[])]
        total: dict[str, Any] = {"group": name}
        for column in GROUP_COLUMNS:
            total[column] = sum(card[column] for card in cards)
        total["reply_rate"] = total["replies"] / total["texted"] if total["texted"] else None
        return total

    views = {
        "project": groups(lambda project, _: (project or NOT_KNOWN).split(",")),
        "area": groups(lambda _, area: ({"in": "in area", "out": "out of area"}.get(area or "",
                                                                                   NOT_KNOWN),)),
    }
    return {view: sorted((summed(members, name) for name, members in found.items()),
                         key=lambda g: (-g["missed"], g["group"]))
            for view, found in views.items()}


def intake_csv_table(views: dict[str, list[dict[str, Any]]], label: str) -> list[list[Any]]:
    """The two intake views (by_intake) as CSV rows, header first: one row per group, `view`
    saying which (project, area)."""
    rows: list[list[Any]] = [["period", "view", "group", *GROUP_COLUMNS, "reply_rate"]]
    for view in ("project", "area"):
        for group in views.get(view, []):
            rows.append([label, view, group["group"], *(group[c] for c in GROUP_COLUMNS),
                         group["reply_rate"]])
    return rows


def report_csv(cards: list[dict[str, Any]], views: dict[str, list[dict[str, Any]]],
               label: str) -> list[list[Any]]:
    """`textback report --format csv` and the scorecard page's download: the scorecard's table,
    a blank row, then the intake views' table (a spreadsheet shows them one under the other)."""
    return [*csv_table(cards, label), [], *intake_csv_table(views, label)]


def render_intake_views(views: dict[str, list[dict[str, Any]]]) -> str:
    """The two intake views as plain text, below the scorecard."""
    lines = []
    for view, title in (("project", "By project type"), ("area", "In and out of the area")):
        lines += ["", f"{title} (conversations with a missed call)",
                  f"  {'':<16} {'missed':>6} {'texted':>6} {'replied':>7} {'booked':>6} "
                  f"{'won':>4}  value"]
        for group in views.get(view, []):
            lines.append(f"  {group['group']:<16} {group['missed']:>6} {group['texted']:>6} "
                         f"{group['replies']:>7} {group['booked']:>6} {group['won']:>4}  "
                         f"{group['won_value']:,.0f}")
        if not views.get(view):
            lines.append("  none")
    return "\n".join(lines)
