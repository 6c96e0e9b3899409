"""Latency from a homeowner's text reaching textback to the owner's alert text being accepted by
the gateway, on the lab PBX.

The SIPp carrier sends N texts (default 50) from N homeowners, one after another, each to the
business number; the owner takes alert texts on their own mobile (owners[].alerts). Two
timestamps per text come from textback's own database:

* messages.created_at of the homeowner's text: when it was committed (received from Asterisk's
  UserEvent, threaded, its email alert queued);
* messages.sent_at of the alert text: when Asterisk answered its MessageSend with Success.

The difference covers the commit of the text, the alert text's formatting and commit, the
outbox's wake-up and the AMI round trip. A second figure starts earlier, when the bench started
the SIPp process that sends the MESSAGE (so it includes SIPp's own start-up and the SIP
transaction). Prints p50, p90, p99 and the maximum of each.
Usage: python bench/owner_alert.py [-n 50]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency import NO_FRAUD_LIMITS, percentile  # noqa: E402
from lab.bench import lab_daemon  # noqa: E402
from lab.configs import BUSINESS_NUMBER  # noqa: E402
from lab.harness import wait_until  # noqa: E402

MOBILE = "+19175550188"
OWNERS = [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com",
           "alerts": {"channels": ["email", "sms"], "sms": MOBILE}}]


def alert_sent_at(db_path: Path, caller: str) -> float | None:
    """When the alert text of `caller`'s text was accepted; None while it is not; the bench
    ends at once, saying why, when it will never be."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT m.status, m.sent_at, m.error FROM owner_alert_texts a"
            " JOIN conversations c ON c.id = a.conversation_id"
            " JOIN messages m ON m.id = a.message_id WHERE c.caller = ?", (caller,)).fetchone()
    finally:
        db.close()
    if row is None or row[0] in ("queued", "held"):
        return None
    if row[0] != "sent":
        raise SystemExit(f"bench: the alert text for {caller} ended {row[0]} ({row[2]})")
    return row[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="homeowners' texts to send")
    args = parser.parse_args()

    started: dict[str, float] = {}
    with lab_daemon({"owners": OWNERS, **NO_FRAUD_LIMITS}, ready_timeout=60) as run:
        sink = run.lab.message_sink()
        callers = [f"+1212555{3000 + i:04d}" for i in range(args.n)]
        for i, caller in enumerate(callers):
            started[caller] = time.time()
            status = run.lab.send_sms(caller, BUSINESS_NUMBER, f"Quote for job {i}, please call back")
            if status >= 300:
                raise SystemExit(f"bench: the lab refused the text from {caller} ({status})")
            wait_until(lambda: alert_sent_at(run.db, caller), 30, f"the alert text for {caller}")
        wait_until(lambda: sum(MOBILE in m["to"] for m in sink.messages()) >= args.n, 30,
                   f"{args.n} alert texts at the carrier")
    db = sqlite3.connect(run.db)
    rows = db.execute(
        "SELECT c.caller, h.created_at, m.sent_at FROM owner_alert_texts a"
        " JOIN conversations c ON c.id = a.conversation_id"
        " JOIN messages m ON m.id = a.message_id"
        " JOIN messages h ON h.conversation_id = c.id AND h.direction = 'in'"
        " WHERE m.status = 'sent'").fetchall()
    inside = [(sent - received) * 1000 for _, received, sent in rows]
    from_carrier = [(sent - started[caller]) * 1000 for caller, _, sent in rows]
    print(f"{len(rows)} homeowners' texts, one after another")
    for label, values in (("text committed -> alert text accepted (ms)", inside),
                          ("SIPp started -> alert text accepted (ms)", from_carrier)):
        print(f"{label}: p50 {percentile(values, 50):.1f}  p90 {percentile(values, 90):.1f}  "
              f"p99 {percentile(values, 99):.1f}  max {max(values):.1f}  "
              f"mean {statistics.mean(values):.1f}")


if __name__ == "__main__":
    main()
