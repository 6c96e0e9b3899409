"""Per-call cost of the routing AGI: start the script N times as Asterisk would, time each run.

The AGI runs before the phones ring, so its whole-process time is added to
every inbound call. Each run gets the AGI environment and answers to its
four SET VARIABLE commands on stdin. Usage: python bench/agi_startup.py [-n 50]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from lab.configs import BUSINESS_NUMBER, base_config  # noqa: E402
from textback.config import parse  # noqa: E402
from textback.routing import write_routing_table  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "agi_scripts" / "textback_route.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="textback-agi-bench-"))
    raw = base_config(work, **{
        "hours": {"windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00",
                               "end": "17:00"}], "holiday_calendar": "US"},
        "agi": {"routing_file": str(work / "routing.json")}})
    raw["numbers"][0]["ring"] = {"targets": "PJSIP/office1", "timeout_seconds": 6}
    table = write_routing_table(parse(yaml.safe_dump(raw), base=work).config, date.today())
    feed = f"agi_extension: {BUSINESS_NUMBER}\n\n" + "200 result=1\n" * 4
    times = []
    for _ in range(args.n + 1):
        start = time.perf_counter()
        subprocess.run([sys.executable, str(SCRIPT), str(table), "PJSIP/office1", "20"],
                       input=feed, text=True, capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000)
    times = sorted(times[1:])  # the first run warms the file cache
    print(f"{args.n} runs of {SCRIPT.name} with {sys.executable}")
    print(f"per call (ms): p50 {statistics.median(times):.1f}  "
          f"p99 {times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]:.1f}  max {times[-1]:.1f}")


if __name__ == "__main__":
    main()
