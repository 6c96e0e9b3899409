"""Server-side time of the web inbox's pages with 10,000 conversations and 100,000 messages.

Builds a store in the schema before the inbox summary columns (as an upgraded install has it),
opens it with the current migrations (which fill the summaries and the search index), serves
the inbox from a real WebServer and measures each request inside the server (a middleware
around the handler), p50 and p95 over N requests per page:

* the inbox (view All, Mine, Waiting on us, and a search),
* a thread (a random conversation each time),
* the scorecard of the busiest month.

Prints the figures and the query plans. Usage: python bench/web_pages.py [-n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from lab.configs import base_config, write_config  # noqa: E402
from textback.store import migrations as store_module  # noqa: E402
from textback.config import load  # noqa: E402
from textback.daemon import Daemon  # noqa: E402
from textback.store import Store  # noqa: E402
from textback.web.inbox import SESSION_COOKIE, inbox_routes  # noqa: E402
from textback.web.server import WebServer  # noqa: E402
from textback.signin import digest  # noqa: E402

CONVERSATIONS = 10_000
MESSAGES_EACH = 10
DAYS = 365
NUMBERS = ["+12125550100", "+12125550101"]
OWNERS = [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com", "role": "admin"},
          {"id": "sam", "name": "Sam Ortiz", "email": "sam@example.com"}]
AUTO_TEXT = "Hi, this is Acme Remodeling. Sorry we missed your call! How can we help? Reply STOP to opt out."
WORDS = ("kitchen bathroom deck roof quote tuesday budget tile cabinets window estimate please "
         "call back morning thanks leak basement").split()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def fill(path: Path, now: float) -> None:
    """The history, written in the schema before the inbox summaries, in one transaction."""
    ours = next(i for i, s in enumerate(store_module.MIGRATIONS) if "CREATE TABLE web_sessions" in s)
    every = store_module.MIGRATIONS
    store_module.MIGRATIONS = every[:ours]
    try:
        store = await Store.open(path)
    finally:
        store_module.MIGRATIONS = every
    rng = random.Random(7)
    conversations, calls, messages, outcomes = [], [], [], []
    for n in range(1, CONVERSATIONS + 1):
        start = now - rng.random() * DAYS * 86400
        caller = f"+1646{n:07d}"
        number = NUMBERS[n % len(NUMBERS)]
        owner = OWNERS[n % len(OWNERS)]["id"]
        at = start
        for m in range(MESSAGES_EACH):
            direction = "out" if m % 2 == 0 else "in"
            kind = "auto" if m == 0 else ("owner" if direction == "out" else "auto")
            body = AUTO_TEXT if m == 0 else " ".join(rng.choice(WORDS) for _ in range(12))
            messages.append((n, direction, kind, body, "delivered" if direction == "out" else "received", at))
            at += rng.random() * 3600
        status = "closed" if n % 7 == 0 else "open"
        conversations.append((n, caller, number, owner, status, start, at))
        calls.append((f"{n}.1", number, caller, caller, "", start - 60, start - 30, "missed",
                      "no_answer", "missed_call_text", n))
        if n % 20 == 0:
            outcomes.append((n, "won", 5000 + n, at, "bench"))
    async with store._transaction() as db:
        await db.executemany("INSERT INTO conversations (id, caller, business_number, owner_id, status,"
                             " created_at, updated_at) VALUES (?,?,?,?,?,?,?)", conversations)
        await db.executemany("INSERT INTO calls (linkedid, business_number, caller_raw, caller,"
                             " caller_name, started_at, ended_at, outcome, reason, decision,"
                             " conversation_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)", calls)
        await db.executemany("INSERT INTO messages (conversation_id, direction, kind, body, status,"
                             " created_at) VALUES (?,?,?,?,?,?)", messages)
        await db.executemany("INSERT INTO outcomes (conversation_id, stage, value, at, source)"
                             " VALUES (?,?,?,?,?)", outcomes)
    await store.close()


def busiest_month(now: float) -> str:
    return time.strftime("%Y-%m", time.localtime(now - 15 * 86400))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="requests per page")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="textback-bench-web-"))
    config = base_config(work, owners=OWNERS, web={"port": 18089, "public_url": "http://127.0.0.1:18089"})
    daemon = Daemon(load(write_config(work, config)))
    now = time.time()
    started = time.perf_counter()
    await fill(Path(daemon.config.storage.path), now)
    filled = time.perf_counter() - started
    started = time.perf_counter()
    daemon.store = await Store.open(daemon.config.storage.path)  # the migration fills the summaries
    migrated = time.perf_counter() - started
    counts = {t: (await daemon.store._one(f"SELECT COUNT(*) AS n FROM {t}"))["n"]
              for t in ("conversations", "messages", "calls")}
    print(f"store: {counts} (filled in {filled:.1f} s; migration with summaries and search "
          f"index {migrated:.1f} s)")

    timings: dict[str, list[float]] = {}

    @web.middleware
    async def timed(request, handler):
        began = time.perf_counter()
        try:
            return await handler(request)
        finally:
            timings.setdefault(request["bench"], []).append((time.perf_counter() - began) * 1000)

    @web.middleware
    async def label(request, handler):
        request["bench"] = request.headers.get("X-Bench", "other")
        return await handler(request)

    def measure(app: web.Application) -> None:
        app.middlewares.extend([label, timed])

    server = WebServer(daemon.config.web, [measure, inbox_routes(daemon)])
    await server.start()
    token = "bench-session-token"
    await daemon.store.start_session("dana", digest(token), "csrf", time.time(), 86400)
    month = busiest_month(now)
    rng = random.Random(3)
    pages = {
        "inbox (All)": lambda: "/?view=all",
        "inbox (Mine)": lambda: "/?view=mine",
        "inbox (Waiting on us)": lambda: "/?view=waiting",
        "inbox search (text)": lambda: f"/?q={rng.choice(WORDS)}+{rng.choice(WORDS)}",
        "thread": lambda: f"/c/{rng.randint(1, CONVERSATIONS)}",
        "scorecard (one month)": lambda: f"/scorecard?month={month}",
    }
    try:
        async with aiohttp.ClientSession(cookies={SESSION_COOKIE: token}) as client:
            for name, url in pages.items():
                for _ in range(args.n):
                    async with client.get(f"http://127.0.0.1:{server.port}{url()}",
                                          headers={"X-Bench": name}) as response:
                        assert response.status == 200, (name, response.status)
                        await response.read()
    finally:
        await server.stop()
    print(f"\nserver-side time per page, {args.n} requests each (ms):")
    print(f"  {'page':<24} {'p50':>7} {'p95':>7} {'max':>7}")
    for name in pages:
        values = timings[name]
        print(f"  {name:<24} {statistics.median(values):>7.1f} {percentile(values, 95):>7.1f} "
              f"{max(values):>7.1f}")
    print("\nquery plans:")
    plans = {
        "inbox, waiting part": "SELECT id FROM conversations c WHERE status = 'open' AND c.unanswered = 1"
                               " ORDER BY c.last_reply_at, c.id LIMIT 50",
        "inbox, recent part": "SELECT id FROM conversations c WHERE status = 'open' AND unanswered = 0"
                              " ORDER BY c.updated_at DESC, c.id DESC LIMIT 50",
        "search": "SELECT conversation_id FROM conversation_search WHERE conversation_search"
                  " MATCH '\"kitchen\"' ORDER BY rowid DESC LIMIT 1000",
        "thread messages": "SELECT * FROM messages WHERE conversation_id = 5 ORDER BY created_at, id",
        "thread calls": "SELECT * FROM calls WHERE conversation_id = 5 ORDER BY started_at",
        "scorecard messages": "SELECT m.id FROM messages m JOIN conversations c ON c.id ="
                              " m.conversation_id WHERE m.created_at >= 0 AND m.created_at < 1",
        "scorecard calls": "SELECT business_number FROM calls WHERE started_at >= 0 AND started_at < 1",
    }
    for name, sql in plans.items():
        rows = await daemon.store._all(f"EXPLAIN QUERY PLAN {sql}")
        print(f"  {name}: " + "; ".join(r[3] for r in rows))
    await daemon.store.close()


if __name__ == "__main__":
    asyncio.run(main())
