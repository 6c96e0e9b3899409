"""Hangup -> MessageSend accepted with many missed calls in flight at once, on the lab PBX.

For each level (default 2, 10, 40 and 100 calls in flight) it starts that many
calls to the business number at the same moment; office1 rings for each of
them until the lab's 6 s ring timeout, so all of them are up together and end
within the time it took to start them. Rounds repeat until a level has at
least --samples texts. The two timestamps per call are the ones
bench/latency.py reads from textback's database (the Hangup of the trunk
channel, and Asterisk accepting the MessageSend), with text.delay_seconds = 0.

The machine may be busy with other work: each level also prints the load
average before and after it and the CPU textback used meanwhile, so a slow
figure can be told from a busy machine.
Usage: python bench/concurrent_latency.py [--levels 2,10,40,100] [--samples 30]
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency import NO_FRAUD_LIMITS, percentile, require_texts  # noqa: E402
from lab.bench import lab_daemon  # noqa: E402
from lab.configs import BUSINESS_NUMBER  # noqa: E402
from lab.harness import wait_until  # noqa: E402
from lab.pbx import LabPBX  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_level(lab: LabPBX, sink, db_path: Path, daemon_pid: int, in_flight: int, samples: int,
              first_caller: int) -> tuple[list[float], str]:
    """Latencies (ms) of at least `samples` texts, `in_flight` calls at a time; and the load line."""
    rounds = max(1, math.ceil(samples / in_flight))
    load_before, cpu_before, began = os.getloadavg()[0], cpu_seconds(daemon_pid), time.monotonic()
    callers: list[str] = []
    for round_number in range(rounds):
        batch = [f"+1212{first_caller + len(callers) + i:07d}" for i in range(in_flight)]
        expected = len(sink.messages()) + in_flight
        phone = lab.phone("office1", "noanswer", calls=in_flight)
        calls = [lab.call(caller, BUSINESS_NUMBER) for caller in batch]
        for call in calls:
            call.wait(90)
        phone.wait(30)
        require_texts(db_path, batch, 60)
        wait_until(lambda: len(sink.messages()) >= expected, 60, f"{expected} texts at the carrier")
        callers += batch
    busy = time.monotonic() - began
    cpu = (cpu_seconds(daemon_pid) - cpu_before) / busy * 100
    db = sqlite3.connect(db_path)
    marks = ",".join("?" * len(callers))
    rows = db.execute(
        "SELECT (m.sent_at - c.ended_at) * 1000 FROM calls c JOIN messages m ON m.id = c.message_id"
        f" WHERE m.status = 'sent' AND c.caller IN ({marks})", callers).fetchall()
    db.close()
    load = (f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f} (2 cores), "
            f"textback CPU {cpu:.0f}% over {busy:.0f} s, {rounds} round(s)")
    return [r[0] for r in rows], load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="2,10,40,100", help="calls in flight, comma-separated")
    parser.add_argument("--samples", type=int, default=30, help="texts measured per level, at least")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    results = []
    with lab_daemon({"text.delay_seconds": 0, **NO_FRAUD_LIMITS}) as run:
        sink = run.lab.message_sink()
        first_caller = 5550000
        for level in levels:
            latencies, load = one_level(run.lab, sink, run.db, run.daemon.process.pid, level,
                                        args.samples, first_caller)
            first_caller += 10000
            results.append((level, latencies, load))
    print(f"hangup -> MessageSend accepted, delay_seconds=0, grace_seconds=0.5; {os.cpu_count()} CPUs")
    print("| calls in flight | texts | p50 | p99 | max | machine |")
    print("|---|---|---|---|---|---|")
    for level, latencies, load in results:
        print(f"| {level} | {len(latencies)} | {percentile(latencies, 50):.0f} ms | "
              f"{percentile(latencies, 99):.0f} ms | {max(latencies):.0f} ms | {load} |")


if __name__ == "__main__":
    main()
