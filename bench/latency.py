"""Latency from the caller's hangup to MessageSend being accepted, on the lab PBX.

Runs N missed calls (default 30) through the lab with text.delay_seconds = 0
and reads two timestamps per call from textback's own database:

* calls.ended_at: when the daemon received the Hangup of the trunk channel;
* messages.sent_at: when Asterisk answered the MessageSend with Success.

The difference covers the tracker's grace period, the rules, the SQLite
commit, the outbox wake-up and the AMI round trip. Prints p50, p90, p99 and
the maximum. Calls are placed one after another (each rings for the lab's
6 s timeout), so 30 calls take about four minutes. The callers share one
number prefix, so the benchmark's own config raises the SMS-pumping guards
(NO_FRAUD_LIMITS); a call that is not texted for any reason ends the run at
once with the decision textback stored for it.
Usage: python bench/latency.py [-n 30]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.bench import lab_daemon  # noqa: E402
from lab.configs import BUSINESS_NUMBER  # noqa: E402
from lab.harness import wait_until  # noqa: E402

# Far above any run, so the SMS-pumping guards never withhold a bench text.
NO_FRAUD_LIMITS = {"fraud.max_texts_per_hour": 100000, "fraud.max_texts_per_day": 100000,
                   "fraud.max_per_prefix_per_hour": 100000}
# Outbox states after which a text will never reach the carrier.
_TEXT_LOST = ("failed", "unknown", "expired", "blocked")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def require_texts(db_path: Path, callers: list[str], timeout: float = 30) -> None:
    """Wait until every caller's call is recorded and its text sent; fail at once, saying why,
    when one was not texted (its decision) or its text will never go (its outbox state)."""
    def all_sent() -> bool:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            marks = ",".join("?" * len(callers))
            rows = db.execute(
                "SELECT c.caller, c.decision, o.state, o.last_error FROM calls c"
                " LEFT JOIN outbox o ON o.message_id = c.message_id"
                f" WHERE c.caller IN ({marks})", callers).fetchall()
        finally:
            db.close()
        for caller, decision, state, error in rows:
            if state is None:
                raise SystemExit(f"bench: the call from {caller} was not texted (decision "
                                 f"{decision!r}), so the sample cannot be complete")
            if state in _TEXT_LOST:
                raise SystemExit(f"bench: the text to {caller} ended {state} ({error}), so the "
                                 "sample cannot be complete")
        return len(rows) == len(callers) and all(row[2] == "sent" for row in rows)

    wait_until(all_sent, timeout, f"{len(callers)} calls recorded and texted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="missed calls to place")
    args = parser.parse_args()

    with lab_daemon({"text.delay_seconds": 0, **NO_FRAUD_LIMITS}) as run:
        sink = run.lab.message_sink()
        run.lab.phone("office1", "noanswer")
        callers = [f"+1212555{1000 + i:04d}" for i in range(args.n)]
        for caller in callers:
            run.lab.call(caller, BUSINESS_NUMBER).wait(60)
            require_texts(run.db, [caller])
        wait_until(lambda: len(sink.messages()) >= args.n, 30, f"{args.n} texts at the carrier")
    db = sqlite3.connect(run.db)
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
