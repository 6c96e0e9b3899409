"""Latency from the caller's hangup to MessageSend being accepted, on the lab PBX.

Runs N missed calls (default 30) through the lab with text.delay_seconds = 0
and reads two timestamps per call from textback's own database:

* calls.ended_at: when the daemon received the Hangup of the trunk channel;
* messages.sent_at: when Asterisk answered the MessageSend with Success.

The difference covers the tracker's grace period, the rules, the SQLite
commit, the outbox wake-up and the AMI round trip. Prints p50, p90, p99 and
the maximum. Calls are placed one after another (each rings for the lab's
6 s timeout), so 30 calls take about four minutes.
Usage: python bench/latency.py [-n 30]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.pbx import LabPBX  # noqa: E402
from lab.configs import BUSINESS_NUMBER, lab_config  # noqa: E402
from lab.harness import DaemonProcess, start_smtp_sink, wait_until  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="missed calls to place")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="textback-bench-"))
    lab = LabPBX(work / "lab")
    lab.start()
    _, smtp = start_smtp_sink()
    daemon = None
    try:
        config = lab_config(work, lab, **{"text.delay_seconds": 0})
        daemon = DaemonProcess(config, work / "textback.log").start()
        sink = lab.message_sink()
        lab.phone("office1", "noanswer")
        callers = [f"+1212555{1000 + i:04d}" for i in range(args.n)]
        for caller in callers:
            lab.call(caller, BUSINESS_NUMBER).wait(60)
        wait_until(lambda: len(sink.messages()) >= args.n, 30, f"{args.n} texts at the carrier")
    finally:
        if daemon is not None:
            daemon.stop()
        smtp.stop()
        lab.stop()  # also ends the SIPp phone and carrier
    db = sqlite3.connect(work / "textback.db")
    rows = db.execute(
        "SELECT m.sent_at - c.ended_at FROM calls c JOIN messages m ON m.id = c.message_id"
        " WHERE m.status = 'sent'").fetchall()
    latencies = [r[0] * 1000 for r in rows]
    print(f"{len(latencies)} missed calls, delay_seconds=0, grace_seconds=0.5")
    print(f"hangup -> MessageSend accepted (ms): p50 {percentile(latencies, 50):.1f}  "
          f"p90 {percentile(latencies, 90):.1f}  p99 {percentile(latencies, 99):.1f}  "
          f"max {max(latencies):.1f}  mean {statistics.mean(latencies):.1f}")
    print(f"without the 500 ms grace period: p50 {percentile(latencies, 50) - 500:.1f}  "
          f"p99 {percentile(latencies, 99) - 500:.1f}")


if __name__ == "__main__":
    main()
