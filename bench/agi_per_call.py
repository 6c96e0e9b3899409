"""Per-call cost of the routing AGI on the lab PBX, as the caller pays it.

Places N calls (default 30) to the lab DID that the shipped [textback-inbound]
context routes with textback_route.py, run by the chroot's own Python. For
each call it reads two of Asterisk's own event timestamps (manager.conf
timestampevents) on the caller's channel:

* Newexten AGI: Asterisk is about to fork the script;
* Newexten Dial: the script has exited and the next priority starts.

The difference is everything the AGI adds before the phones ring: fork and
exec, interpreter start-up, imports, reading the routing table and four SET
VARIABLE round trips. The phone answers busy, so each call takes about a
second. Prints p50, p90, p99 and the maximum.
Usage: python bench/agi_per_call.py [-n 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency import percentile  # noqa: E402
from lab.ami import AmiClient  # noqa: E402
from lab.configs import AGI_ROUTED_NUMBER, write_agi_routing_table  # noqa: E402
from lab.pbx import PYTHON_IN_ROOT, LabPBX  # noqa: E402


async def measure(lab: LabPBX, calls: int) -> list[float]:
    ami = await AmiClient.connect(lab.ami_host, lab.ami_port, lab.admin_user, lab.admin_secret)
    try:
        for i in range(calls):
            phone = lab.phone("office2", "busy")
            await asyncio.to_thread(lab.call(f"+1212555{2000 + i:04d}", AGI_ROUTED_NUMBER).wait_success, 60)
            await asyncio.to_thread(phone.wait_success, 60)
        agi_started: dict[str, float] = {}
        per_call = []
        for event in ami.events:
            if event.event != "Newexten" or not event.get("Channel", "").startswith("PJSIP/carrier-"):
                continue
            if event["Application"] == "AGI":
                agi_started[event["Channel"]] = float(event["Timestamp"])
            elif event["Application"] == "Dial" and event["Channel"] in agi_started:
                per_call.append((float(event["Timestamp"]) - agi_started.pop(event["Channel"])) * 1000)
        if len(per_call) != calls:
            raise SystemExit(f"measured {len(per_call)} of {calls} calls; see {lab.asterisk_log}")
        return per_call
    finally:
        await ami.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="calls to place")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="textback-agi-bench-"))
    lab = LabPBX(work / "lab")
    lab.start()
    try:
        write_agi_routing_table(work, lab)
        times = asyncio.run(measure(lab, args.n))
        version = subprocess.run(["chroot", str(lab.root), PYTHON_IN_ROOT, "--version"],
                                 capture_output=True, text=True).stdout.strip()
    finally:
        lab.stop()
    print(f"{args.n} calls through textback_route.py on the lab PBX ({version} in the chroot, "
          f"{os.cpu_count()} cores)")
    print(f"AGI per call (ms): p50 {percentile(times, 50):.1f}  p90 {percentile(times, 90):.1f}  "
          f"p99 {percentile(times, 99):.1f}  max {max(times):.1f}")


if __name__ == "__main__":
    main()
