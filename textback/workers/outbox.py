"""The outbox worker: due texts to the gateway, in parallel, until each is sent or reported.

An object with explicit dependencies: the store, the gateway, a clock, its wake event, the
pacer, the metrics and watch it reports into, `notify` to tell an owner what did not go,
`media_links` to sign the links an MMS provider fetches an owner's photos from, and `senders`:
the business numbers whose texts it may send now (in a fleet with the asterisk gateway, those
of the PBXs this daemon holds; every number otherwise). Expiry looks at every text, whoever
may send it, so a text nobody can send is still reported at its deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Awaitable, Callable

from sms_gateway.base import Gateway, OutgoingText, SendResult, mms_limits
from textback.core.alerts import one_line
from textback.config import Config, OwnerConfig
from textback.core.fleet import EVERY_SENDER, Senders
from textback.core.delivery import (CONFIRMATION_WINDOW_SECONDS, MAX_RETRY_SECONDS, OPTOUT_CONFIRMATION,
                                    OWNER_REPLY, Pacer, Undelivered, deadline, undelivered_notice)
from textback.ops.metrics import Metrics
from textback.core.quiet_hours import HOLD, judge
from textback.core.relay import OWNER_ALERT, OWNER_KINDS, OWNER_STOP_CONFIRMATION
from textback.store import SELFTEST_KIND, OutboxItem, Store
from textback.workers.common import (IDLE_POLL_SECONDS, SystemClock, clock_text, log_failure,
                                     retry_delay)
from textback.workers.ops import Watch

log = logging.getLogger("textback")

AUTO_TEXT = "auto"  # the kind of a missed call's text
timeline = logging.getLogger("textback.timeline")

EXPIRY_CHECK_SECONDS = 1.0  # a text past its deadline is expired within this
SEND_DRAIN_SECONDS = 20.0  # on stop, sends under way get this long to finish
# Why a text that did not go is not tried again: its row was marked `unknown` while its send
# was under way (see textback/store/states.py), and such a row is never pending again.
NOT_RETRIED = "not tried again: it was marked unknown while being sent"
# Why a text is `unknown` when recovery marked it: the daemon sending it stopped mid-send.
INTERRUPTED = "textback stopped while it was being sent, so whether it went is unknown; not re-sent"


# (owner, subject, text): a notice to an owner, committed and then mailed.
Notify = Callable[[OwnerConfig, str, str], Awaitable[None]]
# (message id, caller, business number, state, gateway, error): an owner's answer from their
# mobile did not go; True when its owner was told by text (OwnerPhone.answer_failed).
AnswerFailed = Callable[[int, str, str, str, str, str], Awaitable[bool]]
# A signer of links to media files under web.public_url: (media id, now) -> URL; None when no
# `web:` listener serves them.
MediaLinks = Callable[[], Awaitable[Callable[[int, float], str] | None]]


class OutboxWorker:
    """Hands due texts to the gateway; expires the overdue; tells the owner what did not go."""

    def __init__(self, config: Config, store: Store, gateway: Gateway, clock: SystemClock,
                 wake: asyncio.Event, metrics: Metrics, watch: Watch, notify: Notify,
                 masked: Callable[[str], str], answer_failed: AnswerFailed,
                 media_links: MediaLinks | None = None,
                 senders: Callable[[], Senders] = lambda: EVERY_SENDER):
        self.config = config
        self._senders = senders  # read at each round and each claim: leases come and go
        self._media_links = media_links
        self.store = store
        self.gateway = gateway
        self.clock = clock
        self.metrics = metrics
        self.watch = watch
        self._outbox_wake = wake  # a text queued, or a send that ended
        self._notify = notify
        self._answer_failed = answer_failed
        self._masked = masked  # gateway errors go to the store and the log without secrets
        self._pacer = Pacer(config.gateway.max_sends_per_second)
        self._link_failing = False  # a send failed for want of the gateway since the last success
        self._accepted: list[tuple[OutboxItem, str | None]] = []  # sent, not yet committed
        self._accepted_commit: asyncio.Future | None = None
        self._in_flight: dict[asyncio.Task, OutboxItem] = {}  # claimed, send not ended

    async def run(self) -> None:
        """Hand due texts to the gateway, oldest first, up to gateway.max_concurrent_sends at once.

        Each is claimed (pending -> sending) just before its send starts, after the
        rate limit's wait, so a crash can only ever leave a started send `unknown`.
        """
        sending: set[asyncio.Task] = set()
        try:
            await self._outbox_rounds(sending)
        finally:  # stopping: let the sends under way finish and be recorded
            if sending:
                await asyncio.wait(sending, timeout=SEND_DRAIN_SECONDS)

    async def _outbox_rounds(self, sending: set[asyncio.Task]) -> None:
        limit = self.config.gateway.max_concurrent_sends
        expiry_checked = float("-inf")
        while True:
            self._outbox_wake.clear()
            now = self.clock.now()
            if now - expiry_checked >= EXPIRY_CHECK_SECONDS:  # not on every send that ends
                await self._expire_overdue(now)
                expiry_checked = now
            held = self._pacer.held_until > now
            if not held and len(sending) < limit:
                batch: list[OutboxItem] = []  # texts whose rate-limit slot is now
                for item in await self.store.due(now, limit - len(sending), self._senders()):
                    start = self._pacer.reserve(self.clock.now())
                    if start > self.clock.now():
                        await self._start_sends(batch, sending)
                        batch = []
                        await self.clock.sleep(start - self.clock.now())
                    batch.append(item)
                await self._start_sends(batch, sending)
            now = self.clock.now()
            if held:
                timeout = self._pacer.held_until - now
            elif len(sending) >= limit:
                timeout = IDLE_POLL_SECONDS  # a send that ends wakes the worker
            else:
                next_due = await self.store.next_due(self._senders())
                timeout = IDLE_POLL_SECONDS if next_due is None else next_due - now
            await self.clock.wait(self._outbox_wake, min(timeout, IDLE_POLL_SECONDS))

    async def _start_sends(self, items: list[OutboxItem], sending: set[asyncio.Task]) -> None:
        """Claim `items` in one transaction and start sending the ones claimed, each in `sending`
        until it ends (which wakes the worker)."""
        for item in await self.store.claim_all(items, self._senders()):
            task = asyncio.create_task(self.send(item))
            sending.add(task)
            self._in_flight[task] = item
            task.add_done_callback(sending.discard)
            task.add_done_callback(lambda done: self._in_flight.pop(done, None))
            task.add_done_callback(log_failure)
            task.add_done_callback(lambda _: self._outbox_wake.set())

    async def sends_stopped(self, senders: Senders, within: float, how: str) -> list[int]:
        """This daemon may no longer send from `senders` (the AMI lease of their PBX went, its
        connection already closed): wait, at most `within` seconds, for the sends from them
        under way to end (through a closed connection they end at once, to be retried by the
        next holder), then mark what this daemon still has `sending` from them `unknown`, as
        a start does: it may or may not have gone, so it is not sent again. `how` says in the
        log how they were being sent. Returns those ids."""
        stopping = [task for task, item in self._in_flight.items() if senders.include(item.sender)]
        if stopping:
            await asyncio.wait(stopping, timeout=within)
        marked = await self.store.recover_interrupted(mine_too=True, senders=senders)
        await self.report_interrupted(marked, how)
        return marked

    async def report_interrupted(self, outbox_ids: list[int], how: str) -> None:
        """Rows recovery just marked `unknown` (`Store.recover_interrupted`: at a start, in a
        fleet's sweep of a gone daemon's claims, as an AMI lease went or came back): each
        owner is told the text may or may not have reached the caller, as for a send the
        gateway did not answer; the text is never sent again. Only the caller whose guarded
        UPDATE marked a row (or took over its notice, owed by a daemon that died before it told
        the owner) passes its id, so each is reported once however many daemons sweep, and the
        notice is no longer owed once queued. A send of this daemon's still under way is left
        to report itself as it ends (`send`: a row once `unknown` ends `failed` or `unknown`
        with its notice, or `sent`).
        Each row is logged, saying `how` it was being sent ("when textback stopped")."""
        for outbox_id in outbox_ids:
            log.warning("outbox row %d was being sent %s; marked unknown, not re-sent; its "
                        "owner is told", outbox_id, how)
        running = {item.id for item in self._in_flight.values()}
        for item in await self.store.outbox_items([i for i in outbox_ids if i not in running]):
            await self.report_undelivered(item, "unknown", INTERRUPTED)
            await self.store.notice_given(item.id)  # owed until here: a crash before, told again

    async def send(self, item: OutboxItem) -> None:
        name = self.gateway.name
        if (item.kind not in (OPTOUT_CONFIRMATION, OWNER_STOP_CONFIRMATION)
                and await self.store.is_suppressed(item.recipient)):
            if not await self.store.mark_final(item, "blocked", name, "recipient opted out"):
                return  # ended otherwise meanwhile (the store logged it): reported there
            self.metrics.texts.labels("blocked", name).inc()
            timeline.info("text to %s blocked: the number opted out", item.recipient)
            if item.kind == OWNER_REPLY:  # someone meant to reach them: say why it did not go
                await self.report_undelivered(item, "blocked", "recipient opted out")
            return
        if await self._held_for_quiet_hours(item):
            return
        media_urls, photos_not_sent = await self._mms(item)
        if photos_not_sent and not item.body.strip():
            await self._failed(item, f"its photos could not be sent: {photos_not_sent}")
            return
        try:
            result = await self.gateway.send(OutgoingText(
                item.sender, item.recipient, item.body,
                idempotency_key=f"textback-{item.idempotency_key}", media_urls=media_urls))
        except Exception as exc:  # noqa: BLE001 - a plugin's bug must not leave the text in limbo
            log.exception("the %s gateway raised while sending to %s", name, item.recipient)
            result = SendResult.unknown(f"{type(exc).__name__} from the gateway: {exc}")
        result = dataclasses.replace(result, error=self._masked(result.error))
        now = self.clock.now()
        self.metrics.texts.labels(result.status, name).inc()
        if result.status == "accepted":
            self.watch.send_accepted()
            await self._commit_accepted(item, result.gateway_id)
            if item.kind == AUTO_TEXT:
                ended = (await self.store.text_facts(item.message_id))["call_ended_at"]
                if ended is not None:
                    self.metrics.hangup_to_accepted.observe(max(0.0, now - ended))
            timeline.info("text sent to %s from %s: %s%s", item.recipient, item.sender,
                          one_line(item.body, 200),
                          f" (+{len(media_urls)} media)" if media_urls else "")
            if photos_not_sent:
                await self._tell_photos_not_sent(item, photos_not_sent)
            if self._link_failing:
                await self.link_back(f"{name} accepted a text again")
        elif result.status == "retryable":
            self.watch.send_failed(result.error)
            self._link_failing = True
            if result.retry_after is not None:
                self._pacer.hold(now + result.retry_after)
            delay = result.retry_after or retry_delay(item.attempts + 1, MAX_RETRY_SECONDS)
            if not await self.store.mark_retry(item, now + delay, result.error):
                await self._failed(item, f"{result.error}; {NOT_RETRIED}", count=False)
                return
            log.warning("text to %s not sent (%s), attempt %d; next in %.0f s, gives up at %s",
                        item.recipient, result.error, item.attempts + 1, delay,
                        clock_text(self._deadline(item), self.config.business.timezone))
        else:
            self.watch.send_failed(result.error)
            state = "unknown" if result.status == "unknown" else "failed"
            if not await self.store.mark_final(item, state, name, result.error):
                return  # ended otherwise meanwhile (the store logged it): reported there
            log.error("text to %s %s: %s", item.recipient,
                      "may or may not have been sent" if state == "unknown" else "failed",
                      result.error)
            await self.report_undelivered(item, state, result.error)

    async def _failed(self, item: OutboxItem, error: str, count: bool = True) -> None:
        """A claimed text that did not go and will not be tried again: ended `failed`, its
        owner told (unless the row had ended otherwise meanwhile, which the store logs).
        `count`: add it to the texts' failed count (not when its send was counted already)."""
        name = self.gateway.name
        if not await self.store.mark_final(item, "failed", name, error):
            return
        if count:
            self.metrics.texts.labels("failed", name).inc()
        log.error("text to %s failed: %s", item.recipient, error)
        await self.report_undelivered(item, "failed", error)

    async def _mms(self, item: OutboxItem) -> tuple[tuple[str, ...], str]:
        """An owner's reply with photos: the signed links the provider fetches them from, or
        why they cannot go ('' when they all go, or there are none). The photos were checked
        against this gateway's limits when the reply was accepted; a gateway changed since,
        or a `web:` section removed, is the reason they would not go now."""
        if item.kind != OWNER_REPLY:
            return (), ""
        rows = (await self.store.media_of([item.message_id]))[item.message_id]
        if not rows:
            return (), ""
        limits = mms_limits(self.gateway)
        if limits is None:
            return (), f"the {self.gateway.name} gateway texts words only"
        link = await self._media_links() if self._media_links else None
        if link is None:
            return (), "no `web:` listener (web.public_url) serves them to the provider"
        # Each link works until an hour past the text's own deadline: the same links on every
        # retry, so a provider that deduplicates by idempotency key sees the same request.
        until = self._deadline(item)
        return tuple(link(row["id"], until) + ("&v=jpeg" if row["rendition_sha256"] else "")
                     for row in rows[:limits.max_items]), ""

    async def _tell_photos_not_sent(self, item: OutboxItem, why: str) -> None:
        """The words of a reply went, its photos did not: its owner hears so."""
        facts = await self.store.text_facts(item.message_id)
        owner = next((o for o in self.config.owners if o.id == facts["owner_id"]),
                     self.config.owners[0])
        log.warning("reply to %s sent without its photos: %s", item.recipient, why)
        await self._notify(owner, f"Your photo to {facts['caller']} was not sent",
                           f"Your reply to {facts['caller']} was texted without its photos: "
                           f"{why}.\n\nThe words went:\n    {one_line(item.body, 400)}")

    async def _held_for_quiet_hours(self, item: OutboxItem) -> bool:
        """A text of a kind the config holds, due in the homeowner's quiet hours: back to
        pending until their window opens (the outbox sends it then, checking again). An alert
        text to an owner's mobile waits out that owner's own quiet hours instead; the other
        texts to it answer what the owner just did, and go at once."""
        if item.kind in OWNER_KINDS:
            return item.kind == OWNER_ALERT and await self._held_for_owner(item)
        if self.config.compliance.homeowner_hours.policy_for(item.kind) != HOLD:
            return False
        verdict = judge(item.recipient, self.clock.now(), self.config.business.timezone)
        if verdict.allowed:
            return False
        why = verdict.explain()
        if await self.store.hold(item, verdict.until, why):
            timeline.info("text to %s held: %s", item.recipient, why)
        else:
            await self._failed(item, f"held for the homeowner's quiet hours ({why}); {NOT_RETRIED}")
        return True

    async def _held_for_owner(self, item: OutboxItem) -> bool:
        owner = self.config.owner_by_mobile(item.recipient)
        window = (owner.alerts.quiet_window(await self.store.alert_quiet_hours(owner.id))
                  if owner is not None else None)
        until = window.held_until(self.clock.now(), self.config.business.timezone) if window else None
        if until is None:
            return False
        why = f"{owner.id}'s quiet hours for alert texts ({window})"
        if await self.store.hold(item, until, why):
            timeline.info("alert text to %s held: %s", owner.id, why)
        else:
            await self._failed(item, f"held for {why}; {NOT_RETRIED}")
        return True

    async def _commit_accepted(self, item: OutboxItem, gateway_id: str | None) -> None:
        """Mark a text sent; texts accepted at the same moment share one commit."""
        self._accepted.append((item, gateway_id))
        if self._accepted_commit is None:
            self._accepted_commit = asyncio.ensure_future(self._commit_accepted_batch())
        await asyncio.shield(self._accepted_commit)

    async def _commit_accepted_batch(self) -> None:
        await asyncio.sleep(0)  # the other sends that end in this turn of the loop join in
        batch, self._accepted, self._accepted_commit = self._accepted, [], None
        await self.store.mark_all_sent(batch, self.gateway.name)

    def _deadline(self, item: OutboxItem) -> float:
        return deadline(item.kind, item.first_due_at, self.config.text.max_age_minutes * 60)

    async def link_back(self, why: str) -> None:
        """The gateway works again: everything waiting out a retry delay is due now."""
        self._link_failing = False
        count = await self.store.bring_forward(self.clock.now())
        if count:
            log.info("%s: sending the %d text(s) that waited for it", why, count)
        self._outbox_wake.set()

    async def _expire_overdue(self, now: float) -> None:
        """Pending texts past their deadline become `expired`; their owners are emailed."""
        max_age = self.config.text.max_age_minutes * 60
        # No text's deadline comes sooner after it was due than an opt-out confirmation's.
        for item in await self.store.first_due_before(now - min(CONFIRMATION_WINDOW_SECONDS, max_age)):
            if now < self._deadline(item) or not await self.store.expire(item, self.gateway.name):
                continue
            late = (f"the text to {item.recipient} expired unsent, "
                    f"{(now - item.first_due_at) / 60:.0f} min after it was due "
                    f"(last error: {item.last_error or 'none'})")
            log.error("%s", late)
            self.metrics.texts.labels("expired", self.gateway.name).inc()
            self.watch.expired = late
            await self.report_undelivered(item, "expired", item.last_error)

    async def report_undelivered(self, item: OutboxItem, state: str, error: str) -> None:
        """Email the conversation's owner about a text that did not (or may not) reach the caller."""
        if item.kind == SELFTEST_KIND:
            return  # it has no owner: the self-test's report to the admin names the failure
        facts = await self.store.text_facts(item.message_id)
        if item.kind == OWNER_REPLY and await self._answer_failed(
                item.message_id, facts["caller"], facts["business_number"], state,
                facts["gateway"] or self.gateway.name, error):
            return  # the owner answered by text: told by text
        subject, text = undelivered_notice(Undelivered(
            kind=item.kind, state=state, caller=facts["caller"], caller_name=facts["caller_name"],
            business_number=facts["business_number"], body=item.body, error=error,
            first_due_at=item.first_due_at, call_at=facts["call_at"],
            call_reason=facts["call_reason"], gateway=facts["gateway"]),
            self.config.business.timezone)
        owner = next((o for o in self.config.owners if o.id == facts["owner_id"]), self.config.owners[0])
        await self._notify(owner, subject, text)
