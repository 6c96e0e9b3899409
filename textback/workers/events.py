"""The delivery worker: committed events to each webhook endpoint and CRM adapter, until
delivered or too old.

It runs under the daemon's supervisor beside the outbox and mail workers and
shares nothing with them but the database, so a slow or dead receiver never
delays a text or an owner's email. Each try is a claimed row (pending ->
sending); a failed try is retried with backoff (or the receiver's
Retry-After) until the event is `max_age_hours` old, then it is expired, logged
and the admin emailed. Of one conversation's events an endpoint gets one at a
time, oldest first; different conversations go in parallel.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from textback.supervisor import cancel_and_wait
from textback.workers.common import SystemClock, log_failure, retry_delay

if TYPE_CHECKING:
    from textback.store import Store

log = logging.getLogger("textback.webhooks")

IDLE_POLL_SECONDS = 1.0  # events committed by another process (the CLI) go out within this
IN_FLIGHT_PER_ENDPOINT = 4
MAX_RETRY_SECONDS = 600.0  # a receiver that comes back gets its backlog within ten minutes
# Delivered and expired events stay in the delivery log this long past max_age.
LOG_KEPT_SECONDS = 7 * 24 * 3600.0
PRUNE_EVERY_SECONDS = 3600.0
GIVEN_UP_NOTICE_SECONDS = 3600.0  # at most one email per endpoint per hour about expired events

# (subject, text, unless_since): a notice to the person who looks after the installation.
Notify = Callable[[str, str, float], Awaitable[None]]


@dataclass(frozen=True)
class Destination:
    """Where events go: a webhook endpoint or a CRM adapter, by name, and the types it takes.
    `client.deliver(event_id, body)` tries one event and answers with an `Attempt`."""

    name: str
    events: tuple[str, ...]
    client: Any


class EventWorker:
    def __init__(self, destinations: list[Destination], max_age_hours: float, store: Store,
                 clock: SystemClock, notify: Notify):
        self.max_age_hours = max_age_hours
        self.store = store
        self.clock = clock
        self._notify = notify
        self._destinations = {d.name: d for d in destinations}
        self._in_flight: dict[str, set[asyncio.Task]] = {d.name: set() for d in destinations}
        self._wake = store.events_added  # a commit with events, or a try that ended

    @property
    def max_age(self) -> float:
        return self.max_age_hours * 3600

    async def run(self) -> None:
        # A gone daemon's rows, and this daemon's own (this worker, one per daemon, is
        # starting: any of its rows in flight were left by an earlier run of it).
        recovered = await self.store.recover_interrupted_deliveries(mine_too=True)
        if recovered:
            log.warning("%d webhook deliveries were under way when textback stopped; sending them "
                        "again under the same event ids (receivers dedupe on webhook-id)", recovered)
        pruned_at = float("-inf")
        try:
            while True:
                self._wake.clear()
                now = self.clock.now()
                await self.store.fan_out({d.name: d.events for d in self._destinations.values()},
                                         since=now - self.max_age)
                await self._expire(now)
                for name in self._destinations:
                    await self._start(name, now)
                if now - pruned_at >= PRUNE_EVERY_SECONDS:
                    await self.store.prune_events(now - self.max_age - LOG_KEPT_SECONDS)
                    pruned_at = now
                await self._idle()
        finally:
            # Each row in flight stays `sending`: sent again at the next start.
            await cancel_and_wait([t for flight in self._in_flight.values() for t in flight])
            for destination in self._destinations.values():
                await destination.client.close()

    async def _idle(self) -> None:
        next_retry = await self.store.next_delivery_retry()
        timeout = IDLE_POLL_SECONDS
        if next_retry is not None:
            timeout = min(timeout, max(0.0, next_retry - self.clock.now()))
        await self.clock.wait(self._wake, timeout)

    async def _start(self, name: str, now: float) -> None:
        flight = self._in_flight[name]
        room = IN_FLIGHT_PER_ENDPOINT - len(flight)
        if room <= 0:
            return
        for delivery in await self.store.due_deliveries(name, now, room):
            if not await self.store.claim_delivery(delivery["id"]):
                continue
            task = asyncio.create_task(self._deliver(name, delivery))
            flight.add(task)
            task.add_done_callback(flight.discard)
            task.add_done_callback(log_failure)
            task.add_done_callback(lambda _: self._wake.set())

    async def _deliver(self, name: str, delivery: dict) -> None:
        attempt = await self._destinations[name].client.deliver(delivery["event_id"], delivery["body"])
        tries = delivery["attempts"] + 1
        if attempt.delivered:
            await self.store.end_delivery(delivery["id"], attempt.status, "", None)
            log.info("webhook %s %s delivered to %s (try %d)", delivery["type"],
                     delivery["event_id"], name, tries)
            return
        delay = attempt.retry_after if attempt.retry_after is not None else retry_delay(
            tries, MAX_RETRY_SECONDS)
        await self.store.end_delivery(delivery["id"], attempt.status, attempt.error,
                                      self.clock.now() + delay)
        if tries == 1 or tries % 10 == 0:
            log.warning("webhook %s %s to %s failed (try %d: %s); retrying in %.0f s, for up to "
                        "%g h after the event", delivery["type"], delivery["event_id"], name, tries,
                        attempt.error, delay, self.max_age_hours)

    async def _expire(self, now: float) -> None:
        expired = await self.store.expire_deliveries(now - self.max_age)
        by_endpoint: dict[str, list[dict]] = {}
        for row in expired:
            log.error("webhook %s %s to %s given up after %d tries, %g h after the event "
                      "(last error: %s)", row["type"], row["event_id"], row["endpoint"],
                      row["attempts"], self.max_age_hours, row["last_error"] or "none")
            by_endpoint.setdefault(row["endpoint"], []).append(row)
        for name, rows in by_endpoint.items():
            lines = [f"  {r['type']:<22} {r['event_id']}  ({r['attempts']} tries; "
                     f"last error: {r['last_error'] or 'none'})" for r in rows[:50]]
            more = f"\n  ... and {len(rows) - 50} more" if len(rows) > 50 else ""
            await self._notify(
                f"Webhook events to {name} were given up",
                f"textback could not deliver these events to the webhook endpoint {name!r} within "
                f"{self.max_age_hours:g} hours, and stopped trying:\n\n" + "\n".join(lines)
                + more + "\n\nCheck the receiver, then see `textback webhooks log` for the rest. "
                "The leads themselves are in textback (`textback inbox`).",
                now - GIVEN_UP_NOTICE_SECONDS)
