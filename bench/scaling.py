"""What a missed call and each listing cost on stores of 1k, 10k and 100k calls of history.

Each store is built through the store's own API (lab/history.py: calls,
texts sent, replies and their alerts, owners' answers, outcomes, opt-outs,
digests; 100 calls a day, so a bigger store is a longer history, not a
busier day): its first `--template` calls (10,000 by default: 100 days), and beyond
them that stretch's rows copied forward in time with their ids, callers and times
moved on (lab/long_history.py), so a 1M-call history is built in minutes, not hours.
Then, on the store as the daemon opens it:

* the daemon path per missed call (Daemon.finish_call: its facts in one read,
  the decision, the commit of call, message and outbox row), from new
  callers, as the median of 5 windows of 200 calls;
* each listing and report query (median of 5 runs): the inbox, waiting
  replies (for the digest: those of the reported window, textback/core/waiting.py; for
  escalation: the texts it may still escalate), calls --since 1d, one caller's thread, one conversation's history
  (the alert email), the last 31 days' report with its scorecard, one call's
  facts (owner, turn, fraud counts, class, opt-out);
* the database's size on disk.

With `--backends sqlite,postgresql` (the default) each size is measured on both stores in
the same run, and a last table gives PostgreSQL's cost as a multiple of SQLite's. The
PostgreSQL is Debian's server started here (lab/postgres.py) with its durable defaults
(fsync and synchronous commit on, as SQLite's synchronous=FULL), on a Unix socket on this
machine: a fleet's database across a network adds a round trip to each statement.

Usage: python bench/scaling.py [--sizes 1000,10000,100000] [--windows 5] [--calls 200]
                               [--backends sqlite,postgresql] [--template 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.configs import base_config, write_config  # noqa: E402
from lab.history import BUSINESS_NUMBERS, caller_number  # noqa: E402
from lab.long_history import TEMPLATE_CALLS, build_long_history  # noqa: E402
from lab.postgres import PostgresServer  # noqa: E402
from textback.config import load  # noqa: E402
from textback.daemon import Daemon  # noqa: E402
from textback.core.scorecard import build as scorecard  # noqa: E402
from textback.store import Store, open_store  # noqa: E402
from textback.core.tracker import CallFinished  # noqa: E402

# The bench's own callers, far from the history's, and guards that never withhold its texts.
FIRST_BENCH_CALLER = 5_000_000
NO_FRAUD_LIMITS = {"fraud.max_texts_per_hour": 10**9, "fraud.max_texts_per_day": 10**9,
                   "fraud.max_per_prefix_per_hour": 10**9}


async def build(storage, calls: int, template: int) -> float:
    """Seconds to build the history: SQLite's file, or PostgreSQL's database as its superuser
    (the bench's store connects as one)."""
    began = time.perf_counter()
    await build_long_history(lambda: open_store(storage), storage.url or storage.path, calls,
                             time.time() - 3600, template_calls=template)
    return time.perf_counter() - began


async def per_call(daemon: Daemon, windows: int, calls: int, first: int) -> list[float]:
    """Seconds per call of each window of `calls` missed calls through the daemon's path."""
    results = []
    for window in range(windows):
        began = time.perf_counter()
        for i in range(calls):
            index = first + window * calls + i
            now = time.time()
            await daemon.finish_call(CallFinished(
                call_id=f"bench-{index}", did=BUSINESS_NUMBERS[index % 2],
                caller_id=caller_number(index), caller_name="", trunk_channel="PJSIP/carrier-1",
                started_at=now - 20, ended_at=now, outcome="missed", reason="no_answer"))
        results.append((time.perf_counter() - began) / calls)
    return results


async def report(store: Store, start: float, end: float) -> list:
    """What `textback report` computes: the period's rows, then the scorecard."""
    return scorecard(**await store.report_rows(start, end))


async def timed(query, runs: int = 5) -> list[float]:
    """Milliseconds of each of `runs` runs of `query`."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        await query()
        times.append((time.perf_counter() - began) * 1000)
    return times


# The waiting replies are measured more often than the rest, with their spread (issue 22).
WAITING = ("waiting_replies (the digest)", "waiting_replies (escalation)")
WAITING_RUNS = 21


async def size_on_disk(store, path: Path) -> float:
    """Megabytes: SQLite's file with its WAL, or PostgreSQL's database."""
    if isinstance(store, Store):
        return sum(f.stat().st_size for f in path.parent.glob(path.name + "*")) / 1e6
    return (await store._one("SELECT pg_database_size(current_database()) AS n"))["n"] / 1e6


async def measure(work: Path, size: int, windows: int, calls: int,
                  postgres: PostgresServer | None, template: int) -> dict[str, float]:
    path = work / f"history-{size}.db"
    where = {"storage.path": str(path)}
    if postgres is not None:  # the run lock still lives at storage.path
        where["storage.url"] = postgres.new_database()
        database = urllib.parse.urlsplit(where["storage.url"]).path.lstrip("/")
        # The history is built without waiting for each commit's flush, as SQLite's is
        # (lab/history.py); what is measured after runs on the server's durable default.
        postgres.admin(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
    config = base_config(work, **{
        **where,
        "owners": [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com"},
                   {"id": "eli", "name": "Eli Park", "email": "eli@example.com"}],
        **NO_FRAUD_LIMITS})
    loaded = load(write_config(work, config, f"config-{size}-{'pg' if postgres else 'sqlite'}.yaml"))
    built = await build(loaded.config.storage, size, template)
    if postgres is not None:
        postgres.admin(f'ALTER DATABASE "{database}" RESET synchronous_commit')
    daemon = Daemon(loaded)
    store = await open_store(loaded.config.storage)
    daemon.attach(store)
    try:
        [waiting, *_] = await store.waiting_replies(time.time()) or [None]
        caller = waiting["caller"] if waiting else caller_number(0)
        conversation = waiting["conversation_id"] if waiting else 1
        now = time.time()
        month = (now - 31 * 86400, now)
        queries = {
            "inbox (first 50)": lambda: store.inbox(50),
            "waiting_replies (the digest)": lambda: store.waiting_replies(now),
            "waiting_replies (escalation)": lambda: store.waiting_replies(now, now - 900, 2),
            "calls --since 1d": lambda: store.calls(now - 86400),
            "thread (one caller)": lambda: store.timeline(caller),
            "conversation history": lambda: store.conversation_history(conversation),
            "report (last 31 days, with the scorecard)": lambda: report(store, *month),
            "call facts (owner, turn, fraud counts, class, opt-out)":
                lambda: store.call_facts(caller, BUSINESS_NUMBERS[0], now),
        }
        result = {"build": built}
        spreads = {}
        for name, query in queries.items():
            times = await timed(query, WAITING_RUNS if name in WAITING else 5)
            result[name] = statistics.median(times)
            if name in WAITING:
                spreads[name] = times
        window_times = await per_call(daemon, windows, calls, FIRST_BENCH_CALLER + size)
        result["daemon path per call"] = statistics.median(window_times) * 1000
        result["size on disk"] = await size_on_disk(store, path)
    finally:
        await store.close()
    for name, times in spreads.items():
        quartiles = statistics.quantiles(times, n=4)
        print(f"  {name}: p50 {statistics.median(times):.2f} ms, quartiles {quartiles[0]:.2f}"
              f"–{quartiles[2]:.2f} ms, min {min(times):.2f}, max {max(times):.2f} "
              f"({len(times)} runs)", file=sys.stderr, flush=True)
    return result


async def run(sizes: list[int], windows: int, calls: int, backends: list[str],
              template: int) -> None:
    """Each size on each backend in turn (sizes outermost), so that both backends of a size
    are measured minutes apart, under the same load."""
    work = Path(tempfile.mkdtemp(prefix="textback-scaling-"))
    postgres = None
    by_backend: dict[str, dict[int, dict[str, float]]] = {backend: {} for backend in backends}
    try:
        if "postgresql" in backends:
            postgres = PostgresServer()
            postgres.start(durable=True)
        for size in sizes:
            for backend in backends:
                server = postgres if backend == "postgresql" else None
                by_backend[backend][size] = result = await measure(work, size, windows, calls, server,
                                                                 template)
                print(f"{backend}, {size:,} calls: {result}", file=sys.stderr, flush=True)
        for backend, results in by_backend.items():
            print(f"\n{backend}" + (f" {postgres.version()}" if backend == "postgresql" else ""))
            table(results, sizes, windows, calls)
    finally:
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(work, ignore_errors=True)  # gigabytes at 1M calls
    if len(by_backend) == 2:
        sqlite, pg = by_backend["sqlite"], by_backend["postgresql"]
        print("\nPostgreSQL's cost as a multiple of SQLite's (same run, same history)")
        print(f"\n| measure | {' | '.join(f'{s:,} calls' for s in sizes)} |")
        print(f"|---|{'---|' * len(sizes)}")
        for name in sqlite[sizes[0]]:
            if name in ("build", "size on disk"):
                continue
            print(f"| {name} | " + " | ".join(f"{pg[s][name] / sqlite[s][name]:.2f}x" for s in sizes)
                  + " |")


def table(results: dict[int, dict[str, float]], sizes: list[int], windows: int, calls: int) -> None:
    names = list(next(iter(results.values())))
    print(f"\n| measure | {' | '.join(f'{s:,} calls' for s in sizes)} |")
    print(f"|---|{'---|' * len(sizes)}")
    units = {"build": " s", "size on disk": " MB"}
    for name in names:
        unit = units.get(name, " ms")
        cells = " | ".join(f"{results[s][name]:,.1f}{unit}" if results[s][name] >= 10 else
                           f"{results[s][name]:.2f}{unit}" for s in sizes)
        print(f"| {name} | {cells} |")
    first, last = results[sizes[0]], results[sizes[-1]]
    print(f"\ndaemon path per call: {last['daemon path per call'] / first['daemon path per call']:.2f}x "
          f"at {sizes[-1]:,} calls of its cost at {sizes[0]:,} (median of {windows} windows of "
          f"{calls} calls); build rate {sizes[-1] / last['build']:,.0f} calls/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="stores to measure, comma-separated: sqlite, postgresql")
    parser.add_argument("--template", type=int, default=TEMPLATE_CALLS,
                        help="calls built through the store before the copies (a whole "
                             "number of days, dividing each size above it)")
    args = parser.parse_args()
    backends = args.backends.split(",")
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backend {', '.join(sorted(unknown))}: sqlite or postgresql")
    asyncio.run(run([int(s) for s in args.sizes.split(",")], args.windows, args.calls, backends,
                    args.template))


if __name__ == "__main__":
    main()
