"""The pure pipeline's cost against bare panoramisk, on a stream of AMI bytes from the lab traces.

The stream is the recorded lab traces (tests/traces), each copy made another
call (new channels, uniqueids, linkedids, and a caller never seen before, so
nothing keyed by the caller can be remembered), in AMI's wire format, cut into
16 KiB reads. Per round, on the same bytes, in alternating order:

* bare: panoramisk's own AMIProtocol.data_received with a Manager that has no
  handler: decode, frame, parse each message into a panoramisk Message;
* textback: ami_listener's protocol and manager (the checks it adds, the
  event handed over as a dict), then what Daemon.on_event runs on the event
  loop: the inbound-text check, CallTracker.feed, the next deadline, and for
  each finished call rules.apply_policy, match_number and rules.decide.

Prints both medians and their ratio (target: at most 1.5).
Usage: python bench/pipeline.py [--events 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402
from panoramisk import Manager  # noqa: E402
from panoramisk.ami_protocol import AMIProtocol  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from ami_listener.connection import AmiConnection, _Protocol  # noqa: E402
from lab.configs import base_config  # noqa: E402
from lab.history import caller_number  # noqa: E402
from sms_gateway.asterisk import parse_user_event  # noqa: E402
from tests.replay import load_trace, renamed, trace_names  # noqa: E402
from textback.config import parse  # noqa: E402
from textback.rules import RecentTexts, apply_policy, decide, match_number  # noqa: E402
from textback.tracker import CallFinished, CallTracker  # noqa: E402

READ_SIZE = 16 * 1024
BANNER = "Asterisk Call Manager/9.0.0\r\n"


def wire(event: dict) -> str:
    """One event as Asterisk writes it (a repeated header once per value)."""
    lines = []
    for key, value in event.items():
        if key.startswith("_") or key == "content":
            continue
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key}: {item}")
    return "\r\n".join(lines) + "\r\n\r\n"


def stream(events_wanted: int) -> tuple[list[bytes], list[float]]:
    """The reads, and for each the time it arrives: copies of every trace, one after another."""
    traces = [load_trace(name) for name in trace_names()]
    reads, times, text, clock, copy, count = [], [], BANNER, 0.0, 0, 0
    while count < events_wanted:
        for trace in traces:
            caller = caller_number(copy)
            for event in renamed(trace, f"r{copy}", clock):
                if event.get("CallerIDNum", "").startswith("+"):
                    event["CallerIDNum"] = caller
                text += wire(event)
                count += 1
                if len(text) >= READ_SIZE:
                    reads.append(text.encode())
                    times.append(event["_t"])
                    text = ""
            clock += trace[-1]["_t"] + 1 if trace else 1
            copy += 1
    reads.append(text.encode())
    times.append(clock)
    return reads, times


class _Transport:
    """Where a protocol would write: nowhere, the benchmark only reads."""

    def write(self, data: bytes) -> None:
        pass

    def get_extra_info(self, name: str, default=None):
        return default


def bare(reads: list[bytes], times: list[float]) -> float:
    manager = Manager(loop=asyncio.get_event_loop())
    protocol = AMIProtocol()
    protocol.connection_made(_Transport())
    protocol.factory = manager
    began = time.perf_counter()
    for data in reads:
        protocol.data_received(data)
    return time.perf_counter() - began


def textback(reads: list[bytes], times: list[float], config) -> tuple[float, int]:
    tracker = CallTracker(config.inbound.trunks, config.inbound.contexts, config.inbound.grace_seconds)
    decided = 0
    now = 0.0

    def handle(happenings) -> None:
        nonlocal decided
        for happening in happenings:
            if isinstance(happening, CallFinished):
                call = apply_policy(config, happening)
                match_number(config, call.did)
                decide(config, call, RecentTexts())
                decided += 1
        tracker.next_deadline()

    def on_event(event: dict) -> None:
        if parse_user_event(event) is not None:
            return
        handle(tracker.feed(event, now))

    connection = AmiConnection("127.0.0.1", 5038, "bench", SecretStr("x"), on_event=on_event)
    protocol = _Protocol()
    protocol.connection_made(_Transport())
    protocol.factory = connection._manager
    began = time.perf_counter()
    for data, at in zip(reads, times):
        now = at
        protocol.data_received(data)
        deadline = tracker.next_deadline()
        if deadline is not None and deadline <= now:
            handle(tracker.expire(now))
    handle(tracker.expire(now + 10))
    return time.perf_counter() - began, decided


async def run(events: int, rounds: int) -> None:
    reads, times = stream(events)
    work = Path(tempfile.mkdtemp(prefix="textback-pipeline-"))
    raw = base_config(work)
    config = parse(yaml.safe_dump(raw), base=work).config
    bare_times, ours, calls = [], [], 0
    for round_number in range(rounds):
        if round_number % 2:
            ours_time, calls = textback(reads, times, config)
            bare_times.append(bare(reads, times))
        else:
            bare_times.append(bare(reads, times))
            ours_time, calls = textback(reads, times, config)
        ours.append(ours_time)
    b, t = statistics.median(bare_times), statistics.median(ours)
    print(f"{events:,} AMI events from {len(trace_names())} lab traces, {calls:,} calls decided, "
          f"{rounds} interleaved rounds")
    print(f"bare panoramisk: {b:.2f} s ({b / events * 1e6:.2f} us/event); "
          f"parse -> tracker -> rules: {t:.2f} s ({t / events * 1e6:.2f} us/event); "
          f"ratio {t / b:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.events, args.rounds))


if __name__ == "__main__":
    main()
