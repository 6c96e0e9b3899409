"""Calls that ended while textback was not logged in to AMI, rebuilt from Asterisk's CDR. No I/O.

Asterisk writes a CDR row per leg of a call: the caller's channel to each
phone it dialled, each Local channel half to the phone behind it, the
caller's channel in voicemail or an IVR. Rows of one call share its linkedid
(the caller's uniqueid); without linkedid (cdr_csv without newcdrcolumns) the
rows are grouped by uniqueid, which keeps together only the legs the
caller's own channel dialled.

A group becomes the same CallFinished the tracker makes live, with the same
call id, so a call seen both ways is recorded once. It is inbound by the
tracker's rules: its first channel is a trunk endpoint, or a row of it ran in
an inbound context (the CDR keeps the last context of each row, not the first). It is answered only when the caller's channel was answered
and a leg to a device (neither the caller's channel nor a Local half) was
answered: voicemail, an IVR, a Local channel or a forwarded cell phone's
voicemail that confirm-calls turned away answer a leg, but no device leg with
the caller. A missed call gets the furthest place it reached, in the
tracker's order, read from the last application and disposition of each leg.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping
from zoneinfo import ZoneInfo

from textback.core.tracker import (ANSWERED, BUSY, CALLER_HUNG_UP, IVR_ABANDONED, MISSED, NO_ANSWER,
                                   NOT_DIALLED, QUEUE_ABANDONED, QUEUE_TIMEOUT, UNAVAILABLE, VOICEMAIL,
                                   CallFinished, channel_endpoint, is_local)

# cdr_csv's columns (cdr/cdr_csv.c, Asterisk 22): always these 16, then uniqueid with
# loguniqueid, userfield with loguserfield, and peeraccount, linkedid, sequence with newcdrcolumns.
CSV_COLUMNS = ("accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel",
               "lastapp", "lastdata", "start", "answer", "end", "duration", "billsec",
               "disposition", "amaflags")
CSV_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_DISPOSITION_REASON = {"BUSY": BUSY, "FAILED": UNAVAILABLE, "CONGESTION": UNAVAILABLE}
_REASON_ORDER = [VOICEMAIL, QUEUE_TIMEOUT, QUEUE_ABANDONED, NO_ANSWER, BUSY, UNAVAILABLE,
                 CALLER_HUNG_UP, IVR_ABANDONED, NOT_DIALLED]
_IVR_APPS = {"background", "waitexten", "read"}


@dataclass(frozen=True)
class CsvLayout:
    """Which optional columns cdr_csv writes: the [csv] options of the PBX's cdr.conf."""

    loguniqueid: bool = True
    loguserfield: bool = True
    newcdrcolumns: bool = True

    def columns(self) -> tuple[str, ...]:
        return (CSV_COLUMNS + ("uniqueid",) * self.loguniqueid + ("userfield",) * self.loguserfield
                + ("peeraccount", "linkedid", "sequence") * self.newcdrcolumns)


@dataclass(frozen=True)
class CdrRecord:
    """One CDR row, times in seconds since the epoch."""

    uniqueid: str
    linkedid: str  # "" when the source does not log it
    src: str
    dst: str
    did: str  # FreePBX's `did` column: the DID the call came in on; "" for cdr_csv
    dcontext: str
    clid: str
    channel: str
    dstchannel: str
    lastapp: str
    lastdata: str
    start: float
    answer: float | None
    end: float
    disposition: str
    sequence: int = 0


def parse_local_time(text: str, zone: ZoneInfo | None) -> float | None:
    """A CDR time ('2026-12-01 22:09:04', the PBX's local time or GMT) in epoch seconds; None if empty."""
    if not text.strip():
        return None
    moment = datetime.strptime(text.strip(), CSV_TIME_FORMAT)
    return (moment.replace(tzinfo=zone) if zone else moment).timestamp()


def from_csv_fields(fields: list[str], layout: CsvLayout, zone: ZoneInfo | None) -> CdrRecord:
    """One parsed line of Master.csv; ValueError if it does not have the layout's columns."""
    columns = layout.columns()
    if len(fields) != len(columns):
        raise ValueError(f"{len(fields)} columns where cdr.conf's [csv] options give {len(columns)}")
    row = dict(zip(columns, fields))
    start = parse_local_time(row["start"], zone)
    end = parse_local_time(row["end"], zone)
    if start is None or end is None:
        raise ValueError("no start or end time")
    return CdrRecord(
        uniqueid=row.get("uniqueid", ""), linkedid=row.get("linkedid", ""), src=row["src"],
        dst=row["dst"], did="", dcontext=row["dcontext"], clid=row["clid"], channel=row["channel"],
        dstchannel=row["dstchannel"], lastapp=row["lastapp"], lastdata=row["lastdata"], start=start,
        answer=parse_local_time(row["answer"], zone), end=end, disposition=row["disposition"],
        sequence=int(row.get("sequence") or 0))


def from_freepbx_row(row: Mapping[str, object], zone: ZoneInfo | None) -> CdrRecord:
    """A row of FreePBX's asteriskcdrdb.cdr: calldate is the start; the end is calldate + duration."""
    calldate = row["calldate"]
    if not isinstance(calldate, datetime):
        raise ValueError(f"calldate {calldate!r} is not a date and time")
    start = (calldate.replace(tzinfo=zone) if zone else calldate).timestamp()
    end = start + int(row["duration"] or 0)
    billsec = int(row["billsec"] or 0)
    answered = str(row["disposition"]) == "ANSWERED"
    text = {key: "" if row.get(key) is None else str(row[key])
            for key in ("uniqueid", "linkedid", "src", "dst", "did", "dcontext", "clid", "channel",
                        "dstchannel", "lastapp", "lastdata", "disposition")}
    return CdrRecord(**text, start=start, answer=end - billsec if answered else None, end=end,
                     sequence=int(row.get("sequence") or 0))


def recover_calls(records: Iterable[CdrRecord], trunks: list[str], contexts: list[str],
                  ended_after: float) -> list[CallFinished]:
    """The inbound calls among `records` that ended after `ended_after`, oldest first."""
    trunk_endpoints = {t.split("/", 1)[-1] for t in trunks}
    groups: dict[str, list[CdrRecord]] = {}
    for record in records:
        groups.setdefault(record.linkedid or record.uniqueid, []).append(record)
    calls = []
    for call_id, rows in groups.items():
        if not call_id:
            continue
        rows.sort(key=lambda r: (r.start, r.sequence))
        first = next((r for r in rows if r.uniqueid == call_id), rows[0])
        if not _is_inbound(first, [r for r in rows if r.channel == first.channel], trunk_endpoints,
                           set(contexts)):
            continue
        call = _call_of(call_id, first, rows)
        if call.ended_at > ended_after:
            calls.append(call)
    return sorted(calls, key=lambda c: c.ended_at)


def _is_inbound(first: CdrRecord, caller_rows: list[CdrRecord], trunks: set[str],
                contexts: set[str]) -> bool:
    """The tracker's rule: the caller's channel is a trunk endpoint's, or ran in an inbound context."""
    if is_local(first.channel):
        return False
    return (channel_endpoint(first.channel)[1] in trunks
            or any(r.dcontext in contexts for r in caller_rows))


def _call_of(call_id: str, first: CdrRecord, rows: list[CdrRecord]) -> CallFinished:
    caller_rows = [r for r in rows if r.channel == first.channel]
    name, number = _split_clid(first.clid)
    answered_at, answered_by = _answered(first.channel, caller_rows, rows)
    if answered_by is not None:
        outcome, reason = ANSWERED, ANSWERED
    else:
        outcome, reason = MISSED, _missed_reason(caller_rows, rows)
    return CallFinished(
        call_id=call_id, did=first.did or first.dst, caller_id=first.src or number,
        caller_name=name, trunk_channel=first.channel, started_at=first.start,
        ended_at=max(r.end for r in caller_rows), outcome=outcome, reason=reason,
        answered_at=answered_at, answered_by=answered_by)


def _split_clid(clid: str) -> tuple[str, str]:
    """'"Jane Doe" <+12125550123>' -> ('Jane Doe', '+12125550123').

    Asterisk writes the clid with ast_callerid_merge (main/callerid.c), which
    quotes the name with ast_escape_quoted: a backslash before each `"`, `\\`
    and control character. That is undone once here, so `"Pat O\\"B\\" Sons"`
    is the name the caller sent, as the AMI edge gives it.
    """
    name, _, rest = clid.rpartition("<")
    if not rest.endswith(">"):
        return "", clid.strip()
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = _QUOTED_PAIR.sub(r"\1", name[1:-1])
    return name.strip(), rest[:-1]


_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def _answered(caller_channel: str, caller_rows: list[CdrRecord],
              rows: list[CdrRecord]) -> tuple[float | None, str | None]:
    """When and by which device the caller was answered, or (None, None).

    A device answered the caller when answered legs connect it to the
    caller's channel, through Local channel pairs: a phone answering the
    far half of a Local channel the caller's Dial never answered (a
    confirm-calls prompt turned it away) did not reach the caller.
    """
    if not any(r.answer is not None for r in caller_rows):
        return None, None
    joined = {caller_channel}
    answered = [r for r in rows if r.disposition == "ANSWERED" and r.answer is not None and r.dstchannel]
    grew = True
    while grew:
        grew = False
        for row in answered:
            ends = {row.channel, row.dstchannel}
            if ends & joined or {_local_pair(c) for c in ends} & {_local_pair(c) for c in joined} - {""}:
                grew |= not ends <= joined
                joined |= ends
    legs = [(r.answer, device) for r in answered for device in (r.dstchannel, r.channel)
            if device in joined and device != caller_channel and not is_local(device)]
    return min(legs, default=(None, None))


def _local_pair(channel: str) -> str:
    """'Local/201@from-queue-00000000' for either half (';1', ';2') of that Local channel; '' otherwise."""
    return channel.rsplit(";", 1)[0] if channel.lower().startswith("local/") else ""


def _missed_reason(caller_rows: list[CdrRecord], rows: list[CdrRecord]) -> str:
    reasons = {_leg_reason(row) for row in rows}
    if any(r.lastapp.lower() in _IVR_APPS for r in caller_rows):
        reasons.add(IVR_ABANDONED)
    return next(r for r in _REASON_ORDER if r in reasons | {NOT_DIALLED})


def _leg_reason(row: CdrRecord) -> str:
    """How far one leg got: voicemail, a queue, or how its Dial ended."""
    application = row.lastapp.lower()
    if application == "voicemail":
        return VOICEMAIL
    if application == "queue":
        timeout = _argument_seconds(row.lastdata, 4)
        waited = row.end - row.start
        return QUEUE_TIMEOUT if timeout is not None and waited >= timeout else QUEUE_ABANDONED
    if application != "dial":
        return NOT_DIALLED
    if row.disposition in _DISPOSITION_REASON:
        return _DISPOSITION_REASON[row.disposition]
    timeout = _argument_seconds(row.lastdata, 1)
    rang = row.end - row.start
    return NO_ANSWER if timeout is not None and rang >= timeout else CALLER_HUNG_UP


def _argument_seconds(data: str, index: int) -> float | None:
    """The `index`th comma-separated argument of an application as seconds (Dial's or Queue's timeout)."""
    arguments = data.split(",")
    try:
        return float(arguments[index])
    except (IndexError, ValueError):
        return None
