"""The pure pipeline's cost against bare panoramisk, on a stream of AMI bytes from the lab traces.

The stream is the recorded lab traces (tests/traces), each copy made another
call (new channels, uniqueids, linkedids, and a caller never seen before, so
nothing keyed by the caller can be remembered), in AMI's wire format, cut into
16 KiB reads. Per round, on the same bytes, taking turns every 16 reads:

* bare: panoramisk's own AMIProtocol.data_received with a Manager that has no
  handler: decode, frame, parse each message into a panoramisk Message;
* textback: ami_listener's protocol and manager (the checks it adds, the
  event handed over as a dict), then what Daemon.on_event runs on the event
  loop: the inbound-text check, CallTracker.feed, the next deadline, and for
  each finished call rules.apply_policy, match_number and rules.decide.

Prints both medians and the median of the rounds' ratios (target: at most 1.5).
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
from textback.core.rules import RecentTexts, apply_policy, decide, match_number  # noqa: E402
from textback.core.tracker import CallFinished, CallTracker  # noqa: E402

READ_SIZE = 16 * 1024
SLICE = 16  # reads per turn of each pipeline
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


class Bare:
    """panoramisk alone: its protocol and a Manager with no handler."""

    def __init__(self, config) -> None:
        self.protocol = AMIProtocol()
        self.protocol.connection_made(_Transport())
        self.protocol.factory = Manager(loop=asyncio.get_event_loop())

    def feed(self, data: bytes, at: float) -> None:
        self.protocol.data_received(data)

    def finish(self, at: float) -> None:
        pass


class Textback:
    """ami_listener's protocol and manager, then what Daemon.on_event and the tracker's expiry
    timer run on the event loop, up to the rules' decision (the store is not included)."""

    def __init__(self, config) -> None:
        self.config = config
        inbound = config.inbound
        self.tracker = CallTracker(inbound.trunks, inbound.contexts, inbound.grace_seconds)
        self.decided = 0
        self.now = 0.0
        connection = AmiConnection("127.0.0.1", 5038, "bench", SecretStr("x"), on_event=self.on_event)
        self.protocol = _Protocol()
        self.protocol.connection_made(_Transport())
        self.protocol.factory = connection._manager

    def on_event(self, event: dict) -> None:
        if parse_user_event(event) is None:
            self.handle(self.tracker.feed(event, self.now))

    def handle(self, happenings) -> None:
        for happening in happenings:
            if isinstance(happening, CallFinished):
                call = apply_policy(self.config, happening)
                match_number(self.config, call.did)
                decide(self.config, call, RecentTexts())
                self.decided += 1
        self.tracker.next_deadline()

    def feed(self, data: bytes, at: float) -> None:
        self.now = at
        self.protocol.data_received(data)
        deadline = self.tracker.next_deadline()
        if deadline is not None and deadline <= at:
            self.handle(self.tracker.expire(at))

    def finish(self, at: float) -> None:
        self.handle(self.tracker.expire(at + 10))


def one_round(reads: list[bytes], times: list[float], config, first: int) -> tuple[float, float, int]:
    """Seconds of each pipeline on the whole stream, alternating every SLICE reads (which goes
    first alternates too), so a busy moment of the machine falls on both alike."""
    runners = [Bare(config), Textback(config)]
    spent = [0.0, 0.0]
    for start in range(0, len(reads), SLICE):
        order = (0, 1) if (start // SLICE + first) % 2 == 0 else (1, 0)
        for which in order:
            runner = runners[which]
            began = time.perf_counter()
            for data, at in zip(reads[start:start + SLICE], times[start:start + SLICE]):
                runner.feed(data, at)
            spent[which] += time.perf_counter() - began
    began = time.perf_counter()
    runners[1].finish(times[-1])
    spent[1] += time.perf_counter() - began
    return spent[0], spent[1], runners[1].decided


async def run(events: int, rounds: int) -> None:
    reads, times = stream(events)
    work = Path(tempfile.mkdtemp(prefix="textback-pipeline-"))
    config = parse(yaml.safe_dump(base_config(work)), base=work).config
    results = [one_round(reads, times, config, r) for r in range(rounds)]
    ratio = statistics.median(t / b for b, t, _ in results)
    b = statistics.median(r[0] for r in results)
    t = statistics.median(r[1] for r in results)
    print(f"{events:,} AMI events from {len(trace_names())} lab traces, {results[0][2]:,} calls "
          f"decided, {rounds} rounds interleaved every {SLICE} reads of {READ_SIZE // 1024} KiB")
    print(f"bare panoramisk: {b:.2f} s ({b / events * 1e6:.2f} us/event); "
          f"parse -> tracker -> rules: {t:.2f} s ({t / events * 1e6:.2f} us/event); "
          f"ratio {ratio:.2f} (median of the rounds' ratios)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.events, args.rounds))


if __name__ == "__main__":
    main()
