"""How many missed calls a second textback keeps up with, on the lab PBX.

For each offered rate (default 25, 50, 100, 150, 200 and 250 calls a second,
each for 15 s) one SIPp places calls from distinct callers to the lab's offline
phone (+12125550105): Dial fails at once and Asterisk rejects the INVITE, so
each call costs Asterisk little and textback a whole missed call (AMI events,
tracker, rules, the SQLite commit of call, message and outbox row). Texts wait
an hour (text.delay_seconds = 3600), so only the call path is measured.

Per rate it prints: calls offered and the rate SIPp achieved; calls textback
recorded and how many a second (from the first call offered to the last row
seen committed); textback's CPU (% of one core, and ms per recorded call),
Asterisk's and SIPp's, from /proc/PID/stat between the first call and the
last row; the lag from Asterisk's own Hangup timestamp (read by a second AMI
session, filtered to Hangup events) to the moment this script first sees the
call's row committed (it reads the database every 50 ms), p50 and p99; and
the p99 from the Hangup as textback received it (calls.ended_at), which tells
AMI backlog from decision and commit backlog. The ceiling is where
recorded/s stops following offered/s and the lag grows past the grace period,
or textback's CPU nears 100% of a core.

Three figures say how textback degrades above the ceiling (issue 22, part 4):
- "in order": how many pairs of the rate's recorded calls textback committed in
  the opposite order of their Hangups. Rows are inserted when a call is decided,
  call, message and outbox row in one transaction, so a call's id is its place in
  the commit order; a pair is an inversion when the call with the larger id has
  the earlier Hangup by Asterisk's own Timestamp (microseconds; equal stamps are
  no inversion). 0 means every call was recorded in the order it ended; else the
  count and the largest gap between two inverted Hangups are printed. Calls whose
  Hangup the clock's session did not see are left out (and counted in "offered").
  The same count by calls.ended_at (when textback read the Hangup from its own
  AMI session) follows: Asterisk raises Hangups from each channel's thread, so two
  calls ending within milliseconds can reach AMI in the opposite order of their
  Timestamps; inversions there too would be textback's own reordering.
- "incident": whether an `ami_behind` incident (textback/core/incidents.py) was
  open in the store's incidents table for this rate: opened from the first call
  offered until the rate is done, or still open from an earlier rate. The daemon
  raises it when an AMI Ping's answer waited more than ami.ping_timeout (5 s here)
  behind unread events, or a call was committed more than LATE_COMMIT_SECONDS
  after the tracker finished it (a commit backlog), and its incident check runs
  every 10 s, so once the rate is drained this script waits up to
  INCIDENT_WAIT_SECONDS for it when the daemon logged such a late Ping or a call's
  row came that late after its Hangup. It closes 5 minutes after the last sign, so
  within a run of 8 to 15 s rates it is normally still open: its close time is
  printed when it closed. "late Pings" counts the daemon's log lines saying so.
- "backlog cleared": seconds from the last Hangup of the rate's calls (by
  Asterisk's Timestamp: the end of the last call SIPp offered) to the moment this
  script first saw the last of their rows committed (to within POLL_SECONDS).

With --backend postgresql the store is a PostgreSQL started here (lab/postgres.py, with
its durable defaults: fsync and synchronous commit on, as SQLite's synchronous=FULL), and
--daemons N runs N daemons on it: one holds the PBX's AMI lease and records the calls, the
others stand by and share the other workers; textback's CPU is all of theirs.

With --textback TREE, the daemon runs the textback package of another checkout
(e.g. an older commit in a git worktree); the lab, SIPp and this script stay
this checkout's. The load average is printed before and after each rate.
Usage: python bench/throughput.py [--rates 25,50,100,150,200,250] [--seconds 15] [--textback TREE]
                                  [--backend sqlite|postgresql] [--daemons N]
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.concurrent_latency import cpu_seconds  # noqa: E402
from bench.latency import NO_FRAUD_LIMITS, percentile  # noqa: E402
from lab.bench import lab_and_sink  # noqa: E402
from lab.configs import BUSINESS_NUMBER, lab_config  # noqa: E402
from lab.flows import OFFLINE_PHONE  # noqa: E402
from lab.harness import DaemonProcess  # noqa: E402
from lab.postgres import PostgresServer  # noqa: E402
from lab.pbx import ASTERISK_IN_ROOT, LabPBX  # noqa: E402
from textback.core.incidents import LATE_COMMIT_SECONDS  # noqa: E402

# Another full lab test run may hold the lab for a while: wait for it rather than fail.
LOCK_TIMEOUT_SECONDS = 3600.0
# A rate is done when every call is recorded, or when no row came for this long.
DRAIN_IDLE_SECONDS = 20.0
# How often the database is read for newly committed calls: the resolution of the lag.
POLL_SECONDS = 0.05
# Logged at each AMI login: more than one means the daemon lost AMI (e.g. a Ping unanswered in time).
AMI_LOGIN = "AMI logged in"
# The product's defaults, not the lab's quick 2 s: under load a Ping waits behind the events.
AMI_PING = {"ami.ping_interval": 10, "ami.ping_timeout": 5}
# Logged each time a Ping's answer waited past ami.ping_timeout behind unread events.
AMI_LATE_PING = "answer is still queued behind them"
# The incident check runs every 10 s (textback/workers/ops.py): wait one check and a margin.
INCIDENT_WAIT_SECONDS = 15.0


class HangupClock:
    """Asterisk's own Timestamp of each Hangup, by Linkedid, from an AMI session of its own.

    The filter keeps every other event off this session, so it adds little to Asterisk's work.
    """

    def __init__(self, lab: LabPBX):
        self.stamps: dict[str, float] = {}
        self._sock = socket.create_connection((lab.ami_host, lab.ami_port), timeout=10)
        self._file = self._sock.makefile("rb")
        self._file.readline()  # banner
        self._send({"Action": "Login", "Username": lab.admin_user, "Secret": lab.admin_secret,
                    "Events": "call"})
        self._send({"Action": "Filter", "Operation": "Add", "Filter": "Event: Hangup"})
        self._sock.settimeout(None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _send(self, headers: dict[str, str]) -> None:
        self._sock.sendall("".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n")

    def _read(self) -> None:
        frame: dict[str, str] = {}
        for raw in self._file:
            line = raw.decode(errors="replace").rstrip("\r\n")
            if line:
                name, _, value = line.partition(":")
                frame.setdefault(name.strip(), value.strip())
                continue
            if frame.get("Event") == "Hangup" and "Timestamp" in frame:
                self.stamps.setdefault(frame.get("Linkedid", ""), float(frame["Timestamp"]))
            frame = {}

    def close(self) -> None:
        self._sock.close()


def asterisk_pids(lab: LabPBX) -> list[int]:
    """The lab's Asterisk process (inside its chroot), found by its command line: binary and config path."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[0] == ASTERISK_IN_ROOT and any(lab.instance_id in arg for arg in argv):
            pids.append(int(entry))
    return pids


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


COMMITTED = ("SELECT c.id, c.linkedid, c.ended_at FROM calls c WHERE c.id > {p} AND c.caller "
             "BETWEEN {p} AND {p} AND c.message_id IS NOT NULL")


def committed_since(store: str, callers: list[str], after_id: int) -> list[tuple[int, str, float]]:
    """(id, linkedid, ended_at) of each call from these callers committed with an id above after_id
    (the callers are consecutive numbers of one length, so a range of the calls_caller index);
    `store` is SQLite's file or a postgresql:// URL."""
    arguments = (after_id, callers[0], callers[-1])
    if store.startswith("postgresql:"):
        import psycopg
        with psycopg.connect(store) as db:
            return db.execute(COMMITTED.format(p="%s"), arguments).fetchall()
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return db.execute(COMMITTED.format(p="?"), arguments).fetchall()
    finally:
        db.close()


AMI_BEHIND = ("SELECT id, opened_at, closed_at FROM incidents WHERE kind = 'ami_behind'"
              " AND (closed_at IS NULL OR closed_at >= {p}) ORDER BY id")


def ami_behind_incidents(store: str, since: float) -> list[tuple[int, float, float | None]]:
    """(id, opened_at, closed_at) of each ami_behind incident open at or after `since`."""
    if store.startswith("postgresql:"):
        import psycopg
        with psycopg.connect(store) as db:
            return db.execute(AMI_BEHIND.format(p="%s"), (since,)).fetchall()
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return db.execute(AMI_BEHIND.format(p="?"), (since,)).fetchall()
    finally:
        db.close()


def inversions(hangups: list[float]) -> tuple[int, float]:
    """Pairs i < j with hangups[i] > hangups[j] (a merge sort's count), and the largest
    hangups[i] - hangups[j] among them (the largest earlier value minus each later one)."""
    largest, running_max = 0.0, float("-inf")
    for stamp in hangups:
        largest = max(largest, running_max - stamp)
        running_max = max(running_max, stamp)

    def count(values: list[float]) -> tuple[list[float], int]:
        if len(values) < 2:
            return values, 0
        left, left_count = count(values[:len(values) // 2])
        right, right_count = count(values[len(values) // 2:])
        merged, found, i = [], left_count + right_count, 0
        for value in right:
            while i < len(left) and left[i] <= value:
                merged.append(left[i])
                i += 1
            found += len(left) - i  # every left value still unmerged is larger than this one
            merged.append(value)
        return merged + left[i:], found

    return count(hangups)[1], largest


def one_rate(lab: LabPBX, clock: HangupClock, store: str, daemons: list[DaemonProcess], rate: float,
             seconds: float, first_caller: int) -> dict:
    """Offer `rate` calls a second for `seconds`; wait until they are recorded (or stop coming).

    A row's commit time is when this process first sees it (polled every POLL_SECONDS): the
    time textback takes for its rows is when the transaction began, not when it committed.
    """
    callers = [f"+1212{first_caller + i:07d}" for i in range(round(rate * seconds))]
    star, daemon_pids = asterisk_pids(lab), [daemon.process.pid for daemon in daemons]
    logins_before = sum(daemon.log_since_start().count(AMI_LOGIN) for daemon in daemons)
    late_before = sum(daemon.log_since_start().count(AMI_LATE_PING) for daemon in daemons)
    load_before = os.getloadavg()[0]
    began, began_wall = time.monotonic(), time.time()
    textback_before, asterisk_before = cpu_of(daemon_pids), cpu_of(star)
    sipp = lab.rejected_calls(callers, OFFLINE_PHONE, rate)
    sipp_cpu = offered_seconds = 0.0
    # CPU is read with each new row, so the wait for rows that never come is not counted.
    seen: list[tuple[str, float, float]] = []  # linkedid, ended_at, first seen committed (by id)
    last_id, last_change = 0, time.monotonic()
    textback_cpu = asterisk_cpu = 0.0
    while len(seen) < len(callers) and (sipp.returncode is None
                                         or time.monotonic() - last_change < DRAIN_IDLE_SECONDS):
        if sipp.returncode is None:
            sipp_cpu = max(sipp_cpu, cpu_of([sipp.pid]))  # read while it runs: once reaped it is gone
            offered_seconds = time.monotonic() - began
        time.sleep(POLL_SECONDS)
        new = committed_since(store, callers, last_id)
        if new:
            now = time.time()
            seen += [(linkedid, ended_at, now) for _, linkedid, ended_at in sorted(new)]
            last_id, last_change = max(row[0] for row in new), time.monotonic()
            textback_cpu = cpu_of(daemon_pids) - textback_before
            asterisk_cpu = cpu_of(star) - asterisk_before
    sipp.wait(30)
    busy = last_change - began
    lags = [(at - clock.stamps[linkedid]) * 1000 for linkedid, _, at in seen if linkedid in clock.stamps]
    hangups = [clock.stamps[linkedid] for linkedid, _, _ in seen if linkedid in clock.stamps]
    late_pings = sum(daemon.log_since_start().count(AMI_LATE_PING) for daemon in daemons) - late_before
    behind = ami_behind_incidents(store, began_wall)
    waited_until = time.monotonic() + INCIDENT_WAIT_SECONDS
    # Or a call committed LATE_COMMIT_SECONDS after textback read its Hangup: a commit backlog.
    committed_late = any(at - ended_at > LATE_COMMIT_SECONDS for _, ended_at, at in seen)
    while (late_pings or committed_late) and not behind and time.monotonic() < waited_until:
        time.sleep(1)
        behind = ami_behind_incidents(store, began_wall)
    return {
        "rate": rate, "offered": len(callers), "offered_per_s": len(callers) / max(offered_seconds, 1e-9),
        "sipp_exit": sipp.returncode, "recorded": len(seen),
        "recorded_per_s": len(seen) / (seen[-1][2] - began_wall) if seen else 0.0,
        "textback_cpu": textback_cpu / busy * 100, "ms_per_call": textback_cpu * 1000 / max(1, len(seen)),
        "asterisk_cpu": asterisk_cpu / busy * 100, "sipp_cpu": sipp_cpu / max(offered_seconds, 1e-9) * 100,
        "lags": lags, "ended_lags": [(at - ended_at) * 1000 for _, ended_at, at in seen],
        "relogins": sum(daemon.log_since_start().count(AMI_LOGIN) for daemon in daemons) - logins_before,
        "inversions": inversions(hangups), "read_inversions": inversions([e for _, e, _ in seen]), "late_pings": late_pings, "began_wall": began_wall,
        "incidents": behind,
        "backlog_cleared": seen[-1][2] - max(hangups) if hangups else None,
        "load": f"{load_before:.2f} -> {os.getloadavg()[0]:.2f}",
    }


def use_textback_tree(tree: Path) -> str:
    """Make the daemon (`python -m textback`, run from the current directory) import tree's package."""
    os.chdir(tree)
    os.environ["PYTHONPATH"] = str(tree)
    return subprocess.run([sys.executable, "-c", "import textback; print(textback.__file__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="25,50,100,150,200,250",
                        help="offered calls a second, comma-separated")
    parser.add_argument("--seconds", type=float, default=15, help="how long each rate is offered")
    parser.add_argument("--textback", type=Path, help="a checkout whose textback package the daemon runs")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--daemons", type=int, default=1, help="daemons on the store (postgresql)")
    args = parser.parse_args()
    if args.daemons != 1 and args.backend != "postgresql":
        parser.error("several daemons share a PostgreSQL store: give --backend postgresql")
    rates = [float(rate) for rate in args.rates.split(",")]

    package = use_textback_tree(args.textback.resolve()) if args.textback else None
    postgres = None
    daemons: list[DaemonProcess] = []
    results = []
    with lab_and_sink(LOCK_TIMEOUT_SECONDS) as (work, lab):
        try:
            store, backend = str(work / "textback.db"), "SQLite"
            if args.backend == "postgresql":
                postgres = PostgresServer()
                postgres.start(durable=True)
                store = postgres.new_database()
                backend = f"PostgreSQL {postgres.version()}"
            numbers = [{"number": BUSINESS_NUMBER, "owner": "dana"},
                       {"number": OFFLINE_PHONE, "owner": "dana"}]
            for index in range(args.daemons):
                home = work / f"daemon-{index + 1}"
                home.mkdir()
                where = ({"storage": {"url": store, "path": str(home / "textback.db")}}
                         if postgres else {"storage.path": store})
                config = lab_config(home, lab, **{"text.delay_seconds": 3600, "numbers": numbers,
                                                   **AMI_PING, **NO_FRAUD_LIMITS, **where})
                daemon = DaemonProcess(config, home / "textback.log")
                daemons.append(daemon)
                daemon.start(30, AMI_LOGIN if index == 0 else "standing by")
            clock = HangupClock(lab)
            try:
                pids = [daemon.process.pid for daemon in daemons]
                idle_before, idle_began = cpu_of(pids), time.monotonic()
                time.sleep(3)
                idle = (cpu_of(pids) - idle_before) / (time.monotonic() - idle_began) * 100
                first_caller = 2000000
                for rate in rates:
                    results.append(one_rate(lab, clock, store, daemons, rate, args.seconds,
                                            first_caller))
                    first_caller += 100000
            finally:
                clock.close()
        finally:
            for daemon in daemons:
                daemon.stop()
            if postgres is not None:
                postgres.stop()
    print(f"textback {package or 'of this checkout'}; {backend} store, {args.daemons} daemon(s); "
          f"{os.cpu_count()} CPUs; calls rejected at once "
          f"(offline phone), {args.seconds:g} s per rate, text.delay_seconds=3600, grace_seconds=0.5; "
          f"textback idle CPU {idle:.1f}%; work dir {work}")
    print("| offered/s | offered | SIPp achieved/s | recorded | recorded/s | textback CPU | CPU per call | "
          "Asterisk CPU | SIPp CPU | lag p50 | lag p99 | lag p99 from textback's Hangup | in order | "
          "late Pings | incident | backlog cleared | AMI re-logins | load average |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    def ms(values: list[float], p: float) -> str:
        return f"{percentile(values, p):.0f} ms" if values else "-"

    def in_order(r: dict) -> str:
        count, largest = r["inversions"]
        read_count, read_largest = r["read_inversions"]
        by_stamp = "yes" if count == 0 else f"no: {count} pairs, up to {largest * 1000:.0f} ms apart"
        by_read = ("0" if read_count == 0
                   else f"{read_count}, up to {read_largest * 1000:.0f} ms apart")
        return f"{by_stamp} (by textback's Hangup: {by_read})"

    def incident(r: dict) -> str:
        if not r["incidents"]:
            return "none"
        told = []
        for _, opened_at, closed_at in r["incidents"]:
            when = (f"opened {opened_at - r['began_wall']:+.0f} s" if opened_at >= r["began_wall"]
                    else "open from an earlier rate")
            told.append(when + (f", closed {closed_at - r['began_wall']:+.0f} s" if closed_at
                                else ", still open"))
        return "; ".join(told) + " (from the first call)"

    def cleared(r: dict) -> str:
        return "-" if r["backlog_cleared"] is None else f"{r['backlog_cleared']:.1f} s"

    for r in results:
        note = "" if r["sipp_exit"] == 0 else f" (SIPp exit {r['sipp_exit']})"
        if len(r["lags"]) < r["recorded"]:
            note += f" ({r['recorded'] - len(r['lags'])} Hangups unseen)"
        print(f"| {r['rate']:g} | {r['offered']}{note} | {r['offered_per_s']:.0f} | {r['recorded']} | "
              f"{r['recorded_per_s']:.0f} | {r['textback_cpu']:.0f}% | {r['ms_per_call']:.1f} ms | "
              f"{r['asterisk_cpu']:.0f}% | {r['sipp_cpu']:.0f}% | {ms(r['lags'], 50)} | {ms(r['lags'], 99)} | "
              f"{ms(r['ended_lags'], 99)} | {in_order(r)} | {r['late_pings']} | {incident(r)} | "
              f"{cleared(r)} | {r['relogins']} | {r['load']} |")


if __name__ == "__main__":
    main()
