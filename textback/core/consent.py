"""The consent ledger's facts: what each row says, and one number's record as a table, CSV or JSON.

A homeowner's lawyer, a carrier's vetting team or the business itself may ask
what was texted to a number, why, and when a request to stop was honoured.
The store appends one fact per change, in the transaction of that change
(`Store._ledger`), to a table that refuses UPDATE and DELETE (triggers), so
the record cannot disagree with what happened. The TCPA's limitation period
is four years (28 U.S.C. 1658); retention never prunes the ledger.

Pure: rows in, text out; no I/O and no clock.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable
from zoneinfo import ZoneInfo

# The facts, in the words the record prints.
CALL = "call"                    # the call that started contact (or came later)
TEXT_QUEUED = "text_queued"      # a text written and queued: its kind, template or path, words
TEXT_SENT = "text_sent"          # the gateway took it (its id kept)
TEXT_REFUSED = "text_refused"    # not sent for a compliance reason (opted out)
TEXT_HELD = "text_held"          # held for the homeowner's quiet hours, with the time it is due
KEYWORD = "keyword"              # STOP, START, HELP or a free-text opt-out received
OPTED_OUT = "opted_out"          # the number suppressed: when, and through which channel
OPTED_IN = "opted_in"            # the suppression lifted: when, and through which channel

FACTS = (CALL, TEXT_QUEUED, TEXT_SENT, TEXT_REFUSED, TEXT_HELD, KEYWORD, OPTED_OUT, OPTED_IN)

# How long the ledger is kept at the least: the TCPA's four-year limitation period.
KEEP_YEARS = 4

COLUMNS = ("at", "fact", "number", "business_number", "channel", "kind", "body", "detail")


@dataclass(frozen=True)
class Fact:
    """One row of the ledger. `channel` is how it came or went: sms, email:OWNER, web:USER,
    api:TOKEN, cli, ami, cdr; `kind` the text's kind (auto, owner, test, help...) or the
    keyword; `body` the exact words; `detail` what else identifies it (linkedid, template,
    outbox id, gateway id, rule)."""

    fact: str
    number: str
    at: float
    business_number: str = ""
    channel: str = ""
    kind: str = ""
    body: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fact not in FACTS:
            raise ValueError(f"not a consent fact: {self.fact!r}")

    def row(self) -> tuple:
        """The values of the ledger's columns, in `COLUMNS` order (detail as sorted JSON)."""
        return (self.at, self.fact, self.number, self.business_number, self.channel, self.kind,
                self.body, json.dumps(self.detail, sort_keys=True))


def describe(row: dict[str, Any]) -> str:
    """One line in plain words for a ledger row (as the store returns it)."""
    detail = row["detail"] if isinstance(row["detail"], dict) else json.loads(row["detail"] or "{}")
    fact, kind, channel = row["fact"], row["kind"], row["channel"]
    if fact == CALL:
        return (f"call {detail.get('outcome', '')} from {detail.get('caller_raw', '')!s} to "
                f"{row['business_number']} (linkedid {detail.get('linkedid', '')}); "
                f"decision: {detail.get('decision', '')}")
    if fact == TEXT_QUEUED:
        how = f"template {detail['template']}" if detail.get("template") else f"via {channel}"
        return f"{kind} text queued ({how}): {row['body']}"
    if fact == TEXT_SENT:
        return f"{kind} text sent through {channel} (id {detail.get('gateway_id') or '-'})"
    if fact == TEXT_REFUSED:
        return f"{kind} text not sent: {detail.get('why', '')}"
    if fact == TEXT_HELD:
        return f"{kind} text held: {detail.get('why', '')}"
    if fact == KEYWORD:
        return f"{kind} received by {channel}: {row['body']}"
    if fact == OPTED_OUT:
        return f"opted out through {channel}: every text of the business stops"
    return f"opted back in through {channel}"


def as_dicts(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ledger rows with their detail decoded, in time order (the id breaks ties)."""
    out = [{**row, "detail": json.loads(row["detail"]) if isinstance(row["detail"], str)
            else row["detail"]} for row in rows]
    return sorted(out, key=lambda r: (r["at"], r.get("id", 0)))


def _local(at: float, timezone: str) -> str:
    return datetime.fromtimestamp(at, ZoneInfo(timezone)).isoformat(timespec="seconds")


def _cell(text: str) -> str:
    """A homeowner's words for a spreadsheet: one that starts like a formula (=, +, -, @) gets
    a leading apostrophe, so opening the export never runs it (the JSON keeps the words bare)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render(rows: Iterable[dict[str, Any]], form: str, timezone: str) -> str:
    """One number's record as `table` (for people), `csv` (for a spreadsheet or a lawyer) or
    `json` (for a program); times in the business's zone with their UTC offset."""
    facts = as_dicts(rows)
    if form == "json":
        return json.dumps([{**r, "time": _local(r["at"], timezone)} for r in facts], indent=2) + "\n"
    if form == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(("time", *COLUMNS))
        for r in facts:
            writer.writerow((_local(r["at"], timezone), r["at"], r["fact"], r["number"],
                             r["business_number"], r["channel"], r["kind"], _cell(r["body"]),
                             json.dumps(r["detail"], sort_keys=True)))
        return out.getvalue()
    if form != "table":
        raise ValueError(f"no such format {form!r}: table, csv or json")
    if not facts:
        return "No record for this number.\n"
    lines = [f"{_local(r['at'], timezone)}  {r['fact']:<12}  {describe(r)}" for r in facts]
    return "\n".join(lines) + f"\n{len(facts)} fact(s).\n"
