"""Replay AMI traces recorded from the lab PBX (tests/traces/*.jsonl) into the pure tracker."""

from __future__ import annotations

import json
from pathlib import Path

from textback.tracker import CallFinished, CallTracker

TRACES = Path(__file__).parent / "traces"


def load_trace(name: str) -> list[dict]:
    with open(TRACES / f"{name}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def replay(events: list[dict], tracker: CallTracker | None = None,
           offset: float = 0.0) -> list[CallFinished]:
    tracker = tracker or CallTracker(trunks=["carrier"], contexts=[], grace=0.5)
    finished = []
    for event in events:
        finished += [h for h in tracker.feed(event, offset + event["_t"]) if isinstance(h, CallFinished)]
    last = offset + (events[-1]["_t"] if events else 0)
    finished += tracker.expire(last + 10)
    return finished
