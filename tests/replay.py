"""Replay AMI traces recorded from the lab PBX (tests/traces/*.jsonl) into the pure tracker.

The traces are written by lab/record_traces.py; never edit them by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ami_listener.connection import unescaped_names
from textback.core.tracker import CallFinished, CallTracker

TRACES = Path(__file__).parent / "traces"


def frame(fields: dict) -> bytes:
    """One AMI message as Asterisk writes it, from a recorded event (its `_t` and `content`
    left out); a list is one line per value (ChanVariable)."""
    lines = []
    for name, value in fields.items():
        if name in ("_t", "content"):
            continue
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{name}: {item}\r\n")
    return "".join(lines).encode() + b"\r\n"


def trace_names() -> list[str]:
    return sorted(path.stem for path in TRACES.glob("*.jsonl"))


def load_trace(name: str) -> list[dict]:
    """A trace's events as the AMI edge hands them on: a trace keeps what Asterisk wrote, so
    its escaped names are unescaped here, as event_fields() does live."""
    with open(TRACES / f"{name}.jsonl", encoding="utf-8") as handle:
        return [unescaped_names(json.loads(line)) for line in handle]


def replay(events: list[dict], tracker: CallTracker | None = None,
           offset: float = 0.0) -> list[CallFinished]:
    """Feed a trace as the daemon would: a CoreShowChannels listing goes to reconcile, in one piece."""
    tracker = tracker or CallTracker(trunks=["carrier"], contexts=[], grace=0.5)
    finished = []
    listing: list[dict] = []
    for event in events:
        if event.get("Event") == "CoreShowChannel":
            listing.append(event)
            continue
        if listing:
            finished += _finished(tracker.reconcile(listing, offset + listing[-1]["_t"]))
            listing = []
        finished += _finished(tracker.feed(event, offset + event["_t"]))
    if listing:
        finished += _finished(tracker.reconcile(listing, offset + listing[-1]["_t"]))
    last = offset + (events[-1]["_t"] if events else 0)
    finished += tracker.expire(last + 10)
    return finished


def _finished(happenings: list) -> list[CallFinished]:
    return [h for h in happenings if isinstance(h, CallFinished)]


_ID_KEYS = re.compile(r"(Uniqueid|Linkedid|BridgeUniqueid|BridgeId)$")
_CHANNEL_KEYS = re.compile(r"Channel$")
_CHANNEL_COUNTER = re.compile(r"-([0-9a-f]{8})(?=;|$)")


def renamed(events: list[dict], tag: str, offset: float = 0.0) -> list[dict]:
    """The same trace as another call: every channel, uniqueid, linkedid and bridge id made
    unique with `tag`, and its times moved by `offset`."""
    copies = []
    for event in events:
        copy = dict(event, _t=event["_t"] + offset)
        for key, value in event.items():
            if not isinstance(value, str) or not value:
                continue
            if _ID_KEYS.search(key):
                copy[key] = f"{value}-{tag}"
            elif _CHANNEL_KEYS.search(key):
                copy[key] = _CHANNEL_COUNTER.sub(lambda m: f"-{m.group(1)}{tag}", value)
        copies.append(copy)
    return copies
