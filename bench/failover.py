"""How long a PBX goes untexted when the daemon listening to it dies: two daemons on one
PostgreSQL and the lab PBX, the holder of the PBX's AMI lease killed (SIGKILL) while missed
calls arrive, `--kills` times.

Missed calls flow the whole time (SIPp, `--rate` a second, to the lab's offline phone: each
ends at once, unanswered) and texts go out at once (text.delay_seconds = 0) through the PBX
(the asterisk gateway). For each kill it measures, from the moment of the kill:
- takeover: until the other daemon logs that it holds the lease (it then logs in to AMI and
  recovers the gap from the lab's CSV CDR);
- first text: until the new holder logs its first "text sent" (its log's own timestamp).
The killed daemon is started again (it stands by) before the next kill, so the PBX goes
back and forth between the two. Prints each kill, then p50 and max of both.

Usage: python bench/failover.py [--kills 10] [--rate 4]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency import NO_FRAUD_LIMITS  # noqa: E402
from lab.configs import FLOW_NUMBERS, lab_config  # noqa: E402
from lab.flows import OFFLINE_PHONE  # noqa: E402
from lab.harness import DaemonProcess, start_smtp_sink, wait_until  # noqa: E402
from lab.pbx import LabPBX  # noqa: E402
from lab.postgres import PostgresServer  # noqa: E402

LOCK_TIMEOUT_SECONDS = 3600.0  # another lab run may hold the lab for a while: wait for it
HOLDING = "holding the AMI lease"
SENT = "text sent to"
SETTLE_SECONDS = 3.0  # at least this long, calls flow and the holder texts before each kill


def logged_at(line: str) -> float:
    """The moment a log line was written (its local-time stamp, to the millisecond)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def first_after(log: str, marker: str, since: float) -> float | None:
    for line in log.splitlines():
        if marker in line and line[:4].isdigit() and logged_at(line) >= since:
            return logged_at(line)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--rate", type=float, default=4.0, help="missed calls a second")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="textback-bench-failover-"))
    lab = LabPBX(work / "lab")
    lab.lock_timeout = LOCK_TIMEOUT_SECONDS
    lab.start()
    server = PostgresServer()
    server.start()
    url = server.new_database()
    _, smtp = start_smtp_sink()
    sink = lab.message_sink()
    daemons: dict[str, DaemonProcess] = {}
    takeovers, first_texts = [], []
    stop_calls = threading.Event()

    def calls() -> None:
        caller = 1000
        while not stop_calls.is_set():
            batch = [f"+1332555{caller + i:04d}" for i in range(int(args.rate * 5))]
            caller += len(batch)
            lab.rejected_calls(batch, OFFLINE_PHONE, args.rate).wait(60)

    try:
        for name in ("a", "b"):
            (work / name).mkdir()
            config = lab_config(work / name, lab, **{
                "storage": {"url": url, "path": str(work / name / "textback.db")},
                "numbers": FLOW_NUMBERS, "text.delay_seconds": 0, **NO_FRAUD_LIMITS,
                "recovery": {"max_age_minutes": 30,
                             "cdr": {"type": "csv", "csv": {"path": str(lab.cdr_csv)}}}})
            daemons[name] = DaemonProcess(config, work / name / "textback.log")
        daemons["a"].start(30, "AMI logged in")
        daemons["b"].start(30, "standing by")
        holder, standby = "a", "b"
        flowing = threading.Thread(target=calls, daemon=True)
        flowing.start()
        for kill in range(1, args.kills + 1):
            # A random part, so that the kill falls anywhere in the standby's retry second
            # (right after the standby's first try, the wait would always be the longest).
            time.sleep(SETTLE_SECONDS + random.random())
            killed_at = time.time()
            daemons[holder].kill()
            successor = daemons[standby]
            wait_until(lambda: first_after(successor.log(), SENT, killed_at), 30,
                       f"{standby}'s first text after kill {kill}")
            took = first_after(successor.log(), HOLDING, killed_at) - killed_at
            texted = first_after(successor.log(), SENT, killed_at) - killed_at
            takeovers.append(took)
            first_texts.append(texted)
            print(f"kill {kill}: {holder} killed; {standby} held the PBX after {took * 1000:.0f} ms, "
                  f"sent its first text after {texted * 1000:.0f} ms", flush=True)
            daemons[holder].start(30, "standing by")
            holder, standby = standby, holder
    finally:
        stop_calls.set()
        for daemon in daemons.values():
            daemon.stop()
        sink.kill()
        smtp.stop()
        server.stop()
        lab.stop()
    print(f"\n{len(takeovers)} kills, {os.cpu_count()} CPUs, {args.rate:g} missed calls/s, "
          f"lease checked every 1 s (0.8 s to answer), standby retry every 1 s; work dir {work}")
    print("| from kill -9 | p50 | max |\n|---|---|---|")
    for what, values in (("to the new holder's lease", takeovers),
                         ("to its first text sent", first_texts)):
        print(f"| {what} | {statistics.median(values) * 1000:.0f} ms | "
              f"{max(values) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
