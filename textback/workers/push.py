"""The push worker: owner alerts to the owners' phones and browsers by Web Push (RFC 8030).

It reads committed changes from cursors (the reply and assignment events the store commits
with each change, and the escalations table), so no other path has to remember to push: the
store already records every change it tells of. For each change it asks `textback.core.push`
whom to tell and what to say, queues one push per device with the cursors' advance in one
commit, then sends each claimed push: the payload encrypted for the device (RFC 8291,
aes128gcm, by pywebpush), signed with the VAPID key (RFC 8292, by py-vapid), POSTed only to
a push-service host over HTTPS whose addresses are public (`GuardedResolver`).

A 404 or 410 removes the subscription; a 429, a 5xx or a network failure is retried with
backoff until `push.deadline_minutes` after the change; everything else fails the push for
good. Every end is counted in `textback_pushes_total{result}` and noted on the device, which
the owner's settings page shows. The owner's email alert goes whatever happens here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import aiohttp
from py_vapid import Vapid02
from pywebpush import WebPusher

from textback.core import events as hook_events
from textback.core import push
from textback.core.numbers import national
from textback.hooks.addresses import literal_host_refusal
from textback.hooks.sender import GuardedResolver
from textback.store.push import QueuedPush
from textback.supervisor import ItemFailures
from textback.workers.common import SystemClock, retry_delay, wait_event

if TYPE_CHECKING:
    from textback.config import Config
    from textback.ops.metrics import Metrics
    from textback.store import Store

log = logging.getLogger("textback.push")
timeline = logging.getLogger("textback.timeline")

IDLE_POLL_SECONDS = 1.0  # escalations (no event) and other processes' changes: pushed within this
MAX_RETRY_SECONDS = 300.0
JWT_SECONDS = 12 * 3600  # a VAPID token's life; RFC 8292 allows at most 24 hours
IN_FLIGHT = 8

# (owner id, conversation id) -> a link that signs the owner in once and opens the thread.
LinkMaker = Callable[[str, int], Awaitable[str | None]]


class PushWorker:
    def __init__(self, config: "Config", store: "Store", metrics: "Metrics", key: Vapid02,
                 links: LinkMaker, wake: asyncio.Event, clock: SystemClock | None = None):
        self.config = config
        self.store = store
        self.metrics = metrics
        self.key = key
        self._links = links
        self.clock = clock or SystemClock()
        self._failures = ItemFailures("push")
        self._session: aiohttp.ClientSession | None = None
        self._wake = wake  # a homeowner's text was committed: push now
        # Any commit with events (an assignment, say); the webhook worker clears it, so it may
        # be missed while this worker is busy: then the idle poll finds the change.
        self._events = store.events_added

    @property
    def _loopback(self) -> bool:
        return self.config.push.insecure_loopback_for_tests

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._loopback), limit=IN_FLIGHT)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.config.push.timeout_seconds))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        if self._loopback:
            log.warning("push.insecure_loopback_for_tests is set: pushes may go over plain HTTP "
                        "to loopback addresses. It is for the test suite only; remove it")
        # A gone daemon's rows, and this daemon's own (this worker, one per daemon, is
        # starting: any of its rows in flight were left by an earlier run of it).
        recovered = await self.store.recover_interrupted_pushes(mine_too=True)
        if recovered:
            log.warning("%d pushes were being sent when textback stopped; sending them again", recovered)
        await self.store.start_push_cursors()
        try:
            while True:
                self._wake.clear()
                await self.step()
                next_retry = await self.store.next_push_retry()
                wait = IDLE_POLL_SECONDS if next_retry is None else next_retry - self.clock.now()
                await self._woken(min(max(0.05, wait), IDLE_POLL_SECONDS))
        finally:
            await self.close()

    async def _woken(self, seconds: float) -> None:
        """Until this worker's wake is set, a commit with events, or `seconds` have passed."""
        if self._events.is_set():
            # Set since the webhook worker last cleared it: seen already; wait for ours alone
            # (never spin on an event another worker clears).
            await wait_event(self._wake, seconds)
            return
        waiters = [asyncio.ensure_future(event.wait()) for event in (self._wake, self._events)]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def step(self) -> None:
        """Queue the pushes of what changed, then send every due one."""
        await self.fan_out()
        due = await self.store.due_pushes(self.clock.now())
        if due:
            await asyncio.gather(*(self._deliver_safely(push_id) for push_id in due))

    async def _deliver_safely(self, push_id: int) -> None:
        try:
            await self.deliver(push_id)
        except Exception:  # noqa: BLE001 - one push must not stop the others
            self._failures.failed(push_id, f"push {push_id}")

    # -- what to push -------------------------------------------------------------------------

    async def fan_out(self) -> int:
        """Read the changes after the cursors and queue their pushes; how many were queued."""
        event_cursor, escalation_cursor = await self.store.push_cursors()
        if event_cursor is None or escalation_cursor is None:
            await self.store.start_push_cursors()
            event_cursor, escalation_cursor = await self.store.push_cursors()
        changes = await self.store.push_events_after(event_cursor)
        escalations = await self.store.push_escalations_after(escalation_cursor)
        if not changes and not escalations:
            return 0
        queued: list[QueuedPush] = []
        for change in changes:
            queued += await self._from_event(change)
            event_cursor = change["id"]
        for escalation in escalations:
            queued += await self._from_escalation(escalation)
            escalation_cursor = escalation["at"]
        return await self.store.queue_pushes(queued, event_cursor, escalation_cursor)

    async def _pushing_owners(self, owner_ids: list[str]) -> list[str]:
        """Of these owners, those whose alert channels (their choice, else the config's) have push."""
        chosen = []
        for owner_id in owner_ids:
            owner = self.config.owner(owner_id)
            channels = await self.store.alert_channels(owner_id)
            if "push" in owner.alerts.chosen(channels):
                chosen.append(owner_id)
        return chosen

    async def _from_event(self, change: dict[str, Any]) -> list[QueuedPush]:
        data = json.loads(change["body"])["data"]
        conversation = await self.store.push_conversation(data["conversation_id"])
        if conversation is None or conversation["selftest"]:
            return []  # a self-test's reply is the admin's business, told by email
        if change["type"] == hook_events.REPLY_RECEIVED:
            kind: push.PushKind = "reply"
            owner = conversation["owner_id"] if conversation["claimed"] else None
            owner_ids = push.reply_recipients(owner, self.config.owners)
            words = data["body"] or (f"sent {len(data['media'])} attachment(s)" if data["media"]
                                     else "")
        else:
            kind = "assigned"
            recipient = push.assignment_recipient(data["owner_id"], data["previous_owner_id"],
                                                  data["reason"], self.config.owners)
            owner_ids = [] if recipient is None else [recipient]
            words = conversation["last_reply"] or data["reason"]
        return await self._queue(kind, change["event_id"], owner_ids, conversation, words,
                                 change["created_at"])

    async def _from_escalation(self, escalation: dict[str, Any]) -> list[QueuedPush]:
        if escalation["selftest"]:
            return []
        minutes = (escalation["at"] - escalation["created_at"]) / 60
        conversation = {"id": escalation["conversation_id"], "caller": escalation["caller"],
                        "contact_name": escalation["contact_name"],
                        "intake_labels": escalation["intake_labels"]}
        ref = f"{escalation['message_id']}:{escalation['level']}"
        owner_ids = [escalation["owner_id"]] if any(
            o.id == escalation["owner_id"] for o in self.config.owners) else []
        return await self._queue("escalation", ref, owner_ids, conversation, escalation["body"],
                                 escalation["at"], minutes)

    async def _queue(self, kind: push.PushKind, ref: str, owner_ids: list[str],
                     conversation: dict[str, Any], words: str, happened_at: float,
                     minutes: float = 0.0) -> list[QueuedPush]:
        deadline = happened_at + self.config.push.deadline_minutes * 60
        if deadline <= self.clock.now():
            return []  # old news (textback was stopped): the email and the inbox have it
        owners = await self._pushing_owners(owner_ids)
        queued = []
        for device in await self.store.push_subscriptions_of(owners):
            # Each device its own single-use link: tapping on one phone does not spend another's.
            link = await self._links(device["owner_id"], conversation["id"])
            note = push.compose(kind, national(conversation["caller"]), conversation["contact_name"],
                                words, conversation["id"], link, minutes,
                                conversation["intake_labels"])
            queued.append(QueuedPush(device["id"], kind, ref, note.payload().decode(),
                                     happened_at, deadline))
        return queued

    # -- sending ------------------------------------------------------------------------------

    async def deliver(self, push_id: int) -> None:
        row = await self.store.claim_push(push_id, self.clock.now())
        if row is None:
            return  # another worker has it, or it waits for its retry time
        now = self.clock.now()
        if now >= row["deadline"]:
            await self._end(row, "expired", "not taken by the push service before its deadline")
            return
        if await self._held_for_quiet_hours(row, now):
            return
        problem = (push.endpoint_problem(row["endpoint"], self._loopback)
                   or literal_host_refusal(row["endpoint"], self._loopback))
        if problem:
            await self._end(row, "failed", f"endpoint refused: {problem}")
            return
        try:
            status, answer = await self._post(row, now)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            await self._retry(row, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return
        result = push.outcome(status)
        if result == "sent":
            await self._end(row, "sent")
            self.metrics.reply_to_push.observe(max(0.0, time.time() - row["happened_at"]))
            timeline.info("push %s sent to %s's device %d", row["kind"], row["owner_id"],
                          row["subscription_id"])
        elif result == "gone":
            await self.store.drop_push_subscription(row["subscription_id"])
            self.metrics.pushes.labels("gone").inc()
            log.info("the push service answered %d for %s's device %d: subscription removed",
                     status, row["owner_id"], row["subscription_id"])
        elif result == "retry":
            await self._retry(row, f"push service answered {status}: {answer}")
        else:
            await self._end(row, "failed", f"push service answered {status}: {answer}")

    async def _post(self, row: dict[str, Any], now: float) -> tuple[int, str]:
        """Encrypt the payload for the device and POST it; (status, the answer's first words)."""
        pusher = WebPusher({"endpoint": row["endpoint"],
                            "keys": {"p256dh": row["p256dh"], "auth": row["auth"]}})
        body = pusher.encode(row["payload"].encode(), "aes128gcm")["body"]
        claims = {"sub": self.config.push_contact(), "aud": push.origin(row["endpoint"]),
                  "exp": int(now) + JWT_SECONDS}
        headers = self.key.sign(claims) | {
            "Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream",
            "TTL": str(push.TTL_SECONDS), "Urgency": "high",
            # One conversation's pushes replace each other while a phone is off (RFC 8030 5.4).
            "Topic": json.loads(row["payload"])["tag"]}
        async with self._client().post(row["endpoint"], data=body, headers=headers,
                                       allow_redirects=False) as response:
            answer = push.plain((await response.content.read(300)).decode("utf-8", "replace"), 200)
            return response.status, answer

    async def _held_for_quiet_hours(self, row: dict[str, Any], now: float) -> bool:
        """Within the owner's quiet hours (owners[].alerts.quiet_hours) a push waits until they
        end, as an alert text does; one whose news will be past its deadline by then is
        dropped as expired, as a push the service did not take in time is."""
        owner = next((o for o in self.config.owners if o.id == row["owner_id"]), None)
        window = (owner.alerts.quiet_window(await self.store.alert_quiet_hours(owner.id))
                  if owner is not None else None)
        until = window.held_until(now, self.config.business.timezone) if window else None
        if until is None:
            return False
        why = f"{row['owner_id']}'s quiet hours for alerts ({window})"
        if until >= row["deadline"]:
            await self._end(row, "expired", f"{why}: past its deadline when they end")
        else:
            await self.store.retry_push(row["id"], until, f"held: {why}")
            timeline.info("push %s to %s held: %s", row["kind"], row["owner_id"], why)
        return True

    async def _retry(self, row: dict[str, Any], error: str) -> None:
        delay = min(retry_delay(row["attempts"]), MAX_RETRY_SECONDS)
        if self.clock.now() + delay >= row["deadline"]:
            await self._end(row, "expired", f"gave up at the deadline; last: {error}")
            return
        self.metrics.pushes.labels("retry").inc()
        await self.store.retry_push(row["id"], self.clock.now() + delay, error)
        log.warning("push %d to %s's device not taken (%s); retry %d in %.0f s", row["id"],
                    row["owner_id"], error, row["attempts"], delay)

    async def _end(self, row: dict[str, Any], state: str, error: str = "") -> None:
        self.metrics.pushes.labels(state).inc()
        await self.store.end_push(row["id"], state, error)
        if state != "sent":
            log.error("push %d (%s) to %s's device %d %s: %s", row["id"], row["kind"],
                      row["owner_id"], row["subscription_id"], state, error)
