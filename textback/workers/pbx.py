"""One PBX as the daemon listens to it: its AMI connection, its call tracker, its CDR recovery
and its progress marks (until when its events are known to have arrived).

A daemon holds one `PbxListener` per entry of `pbxs:` (or one, `main`, for the single `ami:`
form). Each has its own connection, with its own reconnection and backoff, so a PBX that is
down stops no other PBX's calls or texts; a call seen on one PBX's events is tracked, listed
and recovered on that PBX alone. What a finished call becomes (the rules, the store, the
text) is the daemon's, handed in as `finish_call`, the same for every PBX.

In a fleet (PostgreSQL) each listener has its own advisory-lock lease (`lease`), keyed by its
AMI address: different daemons may hold different PBXs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Protocol

from pydantic import SecretStr

from ami_listener.connection import AmiConnection, AmiError, event_fields
from sms_gateway.asterisk import parse_user_event
from sms_gateway.base import InboundText
from textback.cdr import CdrError, CdrSource
from textback.config import PbxConfig
from textback.core.alerts import one_line
from textback.core.incidents import LATE_COMMIT_SECONDS
from textback.core.missed_call import NO_HANGUP_SEEN, TOO_OLD_TO_TEXT
from textback.core.recovery import CdrRecord, recover_calls
from textback.core.rules import Decision
from textback.core.tracker import CallFinished, CallOverdue, CallStarted, CallTracker
from textback.ops.metrics import Metrics
from textback.store import Store
from textback.supervisor import cancel_and_wait
from textback.workers.ami_lease import AmiLease
from textback.workers.common import SystemClock, clock_text, log_failure
from textback.workers.ops import AMI_LOGGED_IN, AMI_STATE_SINCE, LAST_AMI_EVENT, Watch
from textback.workers.overdue import OverdueCalls

log = logging.getLogger("textback")
timeline = logging.getLogger("textback.timeline")

# When AMI events are known to have arrived until (LAST_AMI_EVENT) is saved at most this
# often, so a busy PBX costs no write per event.
PROGRESS_SAVE_SECONDS = 5.0
# A login recovers the calls that ended since then, less this margin: it covers the save
# interval and the CDR's whole seconds; calls seen both ways are recorded once by call id.
RECOVERY_OVERLAP_SECONDS = 15.0
# A second look at the CDR after a login: Asterisk writes a call's CDR as its last channel goes.
CDR_SETTLE_SECONDS = 5.0
# A CoreShowChannels listing that failed after a login (a timeout, or no `reporting` right) is
# tried again after this, doubling up to the maximum, while that login lasts.
LISTING_RETRY_FIRST_SECONDS = 2.0
LISTING_RETRY_MAX_SECONDS = 300.0


class CallSink(Protocol):
    """The daemon's side: what a call, a text or a recovery on this PBX becomes."""

    async def finish_call(self, call: CallFinished, recovered: bool = False,
                          may_text: bool = True, withheld: str = TOO_OLD_TO_TEXT) -> Decision: ...

    async def receive_text(self, text: InboundText, gateway: str) -> None: ...

    async def ring_back(self, owner_id: str, missed: list[tuple[float, Decision]],
                        max_age_minutes: float) -> None: ...

    async def recovery_failed(self, since: float, error: str, numbers: list[str]) -> None: ...

    def spawn(self, coroutine: Any) -> None: ...

    def pbx_logged_in(self, pbx: "PbxListener") -> None: ...

    def pbx_state_changed(self, pbx: "PbxListener", logged_in: bool) -> None: ...

    async def pbx_ready(self, pbx: "PbxListener") -> None: ...


class PbxListener:
    """One PBX's connection, tracker, recovery and progress (see the module's docstring)."""

    def __init__(self, pbx: PbxConfig, secret: SecretStr, cdr: CdrSource | None,
                 sink: CallSink, store: Callable[[], Store | None], metrics: Metrics,
                 watch: Watch, clock: SystemClock, timezone: str,
                 record_ami: Path | None = None):
        self.pbx = pbx
        self.id = pbx.id
        self._secret = secret
        self.cdr = cdr
        self._sink = sink
        self._store = store
        self._metrics = metrics
        self._watch = watch
        self._timezone = timezone
        self._record_ami = record_ami
        inbound = pbx.inbound
        self.tracker = CallTracker(inbound.trunks, inbound.contexts, inbound.grace_seconds,
                                   inbound.max_call_hours * 3600)
        self.ami: AmiConnection = self.new_ami()
        self.lease: AmiLease | None = None  # a fleet's: listen only while holding it
        self.overdue = OverdueCalls(self.recover, self._decided, self._record_as_seen, clock)
        self.events_seen_at: float | None = None  # the last AMI event of a logged-in connection
        self._saved_seen_at: float | None = None
        self.logins = 0
        self._recovering = asyncio.Lock()  # logins in quick succession recover one after the other
        self._listing_retry: asyncio.Task | None = None  # a failed channel listing, tried again
        self._relisting: asyncio.Task | None = None  # a listing after a dropped AMI message
        self._relist_again = False  # another message was dropped while that listing ran
        self._expiry: asyncio.TimerHandle | None = None
        self._state_lock = asyncio.Lock()  # one write of this PBX's AMI state at a time

    def new_ami(self) -> AmiConnection:
        """A connection to this PBX's AMI, not yet started."""
        a = self.pbx.ami
        return AmiConnection(
            a.host, a.port, a.username, self._secret,
            on_event=self.on_event, on_login=self.on_login, on_state=self._state_changed,
            on_ready=self._ready, on_dropped=self.on_ami_dropped, on_behind=self._behind,
            use_tls=a.tls, tls_verify=a.tls_verify,
            ping_interval=a.ping_interval, ping_timeout=a.ping_timeout,
            reconnect_max=a.reconnect_max_seconds, record_to=self._record_ami)

    def _behind(self) -> None:
        """AMI's answer waited behind unread events: the incident worker reads when."""
        self._watch.ami_behind_at[self.pbx.incident_name] = time.time()

    def _clock(self, at: float) -> str:
        return clock_text(at, self._timezone)

    @property
    def logged_in(self) -> bool:
        return self.ami.logged_in

    @property
    def answering(self) -> bool:
        """Listened to: by this daemon, or (a fleet) by the daemon holding its lease while this
        one stands by, which is no incident."""
        return self.ami.logged_in or (self.lease is not None and self.lease.standing_by)

    @property
    def listened(self) -> bool | None:
        """For the incidents: True while this daemon is logged in to the PBX's AMI, None while
        another daemon of the fleet holds its lease (that one tells whether it is down), False
        otherwise."""
        if self.ami.logged_in:
            return True
        return None if self.lease is not None and self.lease.standing_by else False

    @property
    def holding(self) -> bool:
        """This daemon listens to the PBX: always with SQLite, while holding its lease in a fleet."""
        return self.lease is None or self.lease.holding

    async def load_progress(self) -> None:
        """Read until when this PBX's events were seen: a login recovers the calls after it."""
        self.events_seen_at = self._saved_seen_at = await self._store().progress(
            self.pbx.progress_name(LAST_AMI_EVENT))

    async def listen(self) -> None:
        """Start listening (a fleet: the lease is ours). The login recovers from the CDR the
        calls since the moment the last holder saved, whichever daemon it was."""
        await self.load_progress()
        self.ami.start()

    async def stop_listening(self) -> None:
        """The lease is lost: close the AMI connection before anything else, so this daemon
        acts on no call the next holder also sees; then an idle one stands in its place."""
        await self.ami.close()
        self.ami = self.new_ami()
        self._state_changed(False)

    async def close_timers(self) -> None:
        """Stop the call expiry, and the channel listings and their retries, and wait for the
        listings to end: one must not list channels or record a call once the daemon stops."""
        if self._expiry is not None:
            self._expiry.cancel()
        await cancel_and_wait(listing for listing in (self._listing_retry, self._relisting)
                              if listing is not None)

    # -- AMI events (run on the event loop: must never block) ---------------------

    def on_event(self, event: dict[str, Any]) -> None:
        if self.ami.logged_in:  # not events that beat the login callback
            self.events_seen_at = time.time()
            if "Uniqueid" in event:  # about a channel: calls flow, not just Pings
                self._watch.call_event_at[self.pbx.incident_name] = self.events_seen_at
        inbound = parse_user_event(event)
        if inbound is not None:  # SIP MESSAGE via the dialplan
            self._sink.spawn(self._sink.receive_text(inbound, "asterisk"))
            return
        self.handle(self.tracker.feed(event, time.time()))

    def on_login(self) -> Any:
        """Runs as the login succeeds, before any event of the new connection counts as seen."""
        seen_until, self.events_seen_at = self.events_seen_at, time.time()
        self.logins += 1
        if self.logins > 1:
            self._metrics.ami_reconnects.inc()
        self._sink.pbx_logged_in(self)
        return self._reconcile(seen_until)

    def _state_changed(self, logged_in: bool) -> None:
        self._metrics.pbx_ami_connected.labels(self.id).set(1 if self.answering else 0)
        self._sink.pbx_state_changed(self, logged_in)
        self._sink.spawn(self.note_state())

    async def _ready(self) -> None:
        await self._sink.pbx_ready(self)

    async def note_state(self) -> None:
        """Keep this PBX's AMI state for `textback status` when it changes (a PBX of `pbxs:`;
        the single form's state is the daemon's own, kept by the incident worker)."""
        if self.pbx.progress_name(AMI_LOGGED_IN) == AMI_LOGGED_IN:
            return
        async with self._state_lock:
            store = self._store()
            answering = float(self.answering)
            if await store.progress(self.pbx.progress_name(AMI_LOGGED_IN)) != answering:
                await store.note_progress(self.pbx.progress_name(AMI_LOGGED_IN), answering)
                await store.note_progress(self.pbx.progress_name(AMI_STATE_SINCE), time.time())

    def on_ami_dropped(self, why: str) -> None:
        """The AMI edge dropped a message of this login (a repeated id, unreadable framing): it
        may have been a call's Newchannel or Hangup. List the channels at once, as after a
        login, so the tracker picks the call up (or lets it go) now rather than at the next
        login's CDR recovery. Drops during a listing ask for one more listing after it."""
        if self._relisting is not None and not self._relisting.done():
            self._relist_again = True
            return
        log.info("PBX %s: an AMI message was dropped (%s); listing the channels to catch up",
                 self.id, why)
        self._relisting = asyncio.create_task(self._relist_after_drops(self.logins))
        self._relisting.add_done_callback(log_failure)

    async def _relist_after_drops(self, login: int) -> None:
        while True:
            self._relist_again = False
            if not await self._list_channels(login):
                if self._listing_retry is None or self._listing_retry.done():
                    self._listing_retry = asyncio.create_task(self._list_channels_again(login))
                    self._listing_retry.add_done_callback(log_failure)
                return
            if not self._relist_again:
                return

    async def _reconcile(self, seen_until: float | None) -> None:
        """After every login: pick up calls already ringing, close calls whose hangup we
        missed, and recover from the CDR the calls that began and ended while AMI was not
        logged in."""
        if not await self._list_channels(self.logins, first_try=True):
            if self._listing_retry is not None:
                self._listing_retry.cancel()
            self._listing_retry = asyncio.create_task(self._list_channels_again(self.logins))
            self._listing_retry.add_done_callback(log_failure)
        if seen_until is None:
            log.info("PBX %s: no earlier AMI session in the database: no calls to recover",
                     self.id)
            return
        if self.cdr is None:
            log.warning("PBX %s: calls that ended since %s, while AMI was not logged in, are not "
                        "recovered: configure `recovery` to read them from Asterisk's CDR",
                        self.id, self._clock(seen_until))
            return
        if await self.recover(seen_until - RECOVERY_OVERLAP_SECONDS):
            await asyncio.sleep(CDR_SETTLE_SECONDS)
            await self.recover(seen_until - RECOVERY_OVERLAP_SECONDS)

    async def _list_channels(self, login: int, first_try: bool = False) -> bool:
        """Reconcile the tracker with CoreShowChannels; False when the listing failed."""
        try:
            listing = await self.ami.action({"Action": "CoreShowChannels"}, timeout=10)
        except AmiError as exc:
            if first_try:
                log.warning("PBX %s: could not list channels after login (%s); trying again, "
                            "with backoff: until then calls in progress may be missed, and a "
                            "call whose hangup was missed stays open up to "
                            "inbound.max_call_hours", self.id, exc)
            else:
                log.info("PBX %s: still cannot list channels (%s)", self.id, exc)
            return False
        if login != self.logins:
            return True  # a newer login lists the channels itself
        channels = [event_fields(e) for e in listing if e.get("Event") == "CoreShowChannel"]
        self.handle(self.tracker.reconcile(channels, time.time()))
        if not first_try:
            log.info("PBX %s: listed the channels after login", self.id)
        return True

    async def _list_channels_again(self, login: int) -> None:
        """Retry a failed listing with backoff while the login it followed lasts."""
        delay = LISTING_RETRY_FIRST_SECONDS
        while True:
            await asyncio.sleep(delay)
            if login != self.logins or not self.ami.logged_in:
                return  # the next login lists the channels afresh
            if await self._list_channels(login):
                return
            delay = min(delay * 2, LISTING_RETRY_MAX_SECONDS)

    # -- recovery from the CDR --------------------------------------------------------

    async def recover(self, since: float) -> bool:
        """Run the calls this PBX's CDR shows ended after `since`, and nobody recorded, through
        the rules.

        A call that ended within recovery.max_age_minutes is texted like a live one; an older
        one is recorded, and its owner gets one email listing the callers to ring back. False
        when the CDR could not be read.
        """
        async with self._recovering:
            try:
                records = await self.cdr.records_since(since)
            except CdrError as exc:
                log.error("PBX %s: could not recover the calls that ended while AMI was not "
                          "logged in: %s", self.id, exc)
                await self._sink.recovery_failed(since, str(exc), self.pbx.numbers)
                return False
            await self._recover_from(records, since)
            return True

    async def _recover_from(self, records: list[CdrRecord], since: float) -> None:
        inbound = self.pbx.inbound
        max_age = self.pbx.recovery.max_age_minutes
        ring_back: dict[str, list[tuple[float, Decision]]] = {}
        for call in recover_calls(records, inbound.trunks, inbound.contexts, since):
            if self.tracker.is_tracking(call.call_id) or await self._decided(call.call_id):
                continue  # seen live: the tracker decides it, or already did
            timeline.info("call recovered from the CDR: %s calling %s, ended %s (PBX %s)",
                          one_line(call.caller_id), one_line(call.did),
                          self._clock(call.ended_at), self.id)
            decision = await self._sink.finish_call(
                self._as_stored(call), recovered=True,
                may_text=time.time() - call.ended_at <= max_age * 60)
            if decision.reason == TOO_OLD_TO_TEXT:
                ring_back.setdefault(decision.owner_id, []).append((call.ended_at, decision))
        for owner_id, missed in sorted(ring_back.items()):
            await self._sink.ring_back(owner_id, missed, max_age)

    # -- progress ---------------------------------------------------------------------

    async def run_progress(self) -> None:
        """Every few seconds: Ping (events come in order, so none sent before the answer is
        missing) and keep until when this PBX's events arrived."""
        while True:
            await asyncio.sleep(PROGRESS_SAVE_SECONDS)
            if self.ami.logged_in:
                asked = time.time()
                try:
                    await self.ami.action({"Action": "Ping"}, timeout=PROGRESS_SAVE_SECONDS)
                except AmiError:
                    pass  # the keepalive reconnects; the moment stays at the last event
                else:
                    self.events_seen_at = max(self.events_seen_at or asked, asked)
            await self.save_progress()
            self._metrics.pbx_ami_connected.labels(self.id).set(1 if self.answering else 0)
            await self.note_state()  # a write that failed, or a lease taken or lost

    async def save_progress(self) -> None:
        """Keep when the last AMI event arrived: the next start recovers the calls after it.
        In a fleet, only the lease's holder keeps it (a former holder's moment is older)."""
        if not self.holding:
            return
        if self.events_seen_at is not None and self.events_seen_at != self._saved_seen_at:
            await self._store().note_progress(self.pbx.progress_name(LAST_AMI_EVENT),
                                              self.events_seen_at)
            self._saved_seen_at = self.events_seen_at

    # -- the tracker's happenings -------------------------------------------------------

    def handle(self, happenings: list[CallStarted | CallFinished | CallOverdue]) -> None:
        for happening in happenings:
            if isinstance(happening, CallStarted):
                timeline.info("call started: %s calling %s", one_line(happening.caller_id),
                              one_line(happening.did))
            elif isinstance(happening, CallOverdue):
                self._sink.spawn(self._overdue(happening))
            else:
                self._sink.spawn(self._record(happening, time.time()))
        self._schedule_expiry()

    async def _record(self, call: CallFinished, finished_at: float) -> None:
        """Record a call the tracker finished at `finished_at`; one committed later than
        LATE_COMMIT_SECONDS after it is a sign of a commit backlog, for the incident worker."""
        await self._sink.finish_call(self._as_stored(call))
        if time.time() - finished_at > LATE_COMMIT_SECONDS:
            self._watch.calls_late_at[self.pbx.incident_name] = time.time()

    def expire_calls(self, now: float) -> None:
        """Close the calls whose deadline is past at `now`, as the expiry timer does."""
        self.handle(self.tracker.expire(now))

    def _schedule_expiry(self) -> None:
        if self._expiry:
            self._expiry.cancel()
        deadline = self.tracker.next_deadline()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(max(0.0, deadline - time.time()) + 0.01,
                                           lambda: self.expire_calls(time.time()))

    async def _overdue(self, overdue: CallOverdue) -> None:
        """A call open for inbound.max_call_hours with no Hangup seen: the CDR decides it, or,
        with no CDR to read, it is recorded as the events showed it, without a text."""
        call = overdue.as_seen
        hours = f"{self.pbx.inbound.max_call_hours:g}"
        if self.cdr is None:
            log.warning("call %s from %s has been open %s h with no hangup seen; recorded as the "
                        "AMI events showed it, without a text (configure `recovery` so "
                        "Asterisk's CDR decides such calls)", call.call_id,
                        one_line(call.caller_id), hours)
            await self._record_as_seen(call)
            return
        log.warning("call %s from %s has been open %s h with no hangup seen; Asterisk's CDR will "
                    "decide it", call.call_id, one_line(call.caller_id), hours)
        self.overdue.add(overdue)

    def _as_stored(self, call: CallFinished) -> CallFinished:
        """The call under its key in the store (`PbxConfig.call_key`). A self-test's call keeps
        its own id, unique already, which its run waits for."""
        return call if call.selftest else replace(call, call_id=self.pbx.call_key(call.call_id))

    async def _decided(self, linkedid: str) -> bool:
        return await self._store().call_decision(self.pbx.call_key(linkedid)) is not None

    async def _record_as_seen(self, call: CallFinished) -> Decision:
        return await self._sink.finish_call(self._as_stored(call), may_text=False,
                                            withheld=NO_HANGUP_SEEN)


def pbx_worker_name(name: str, listener: PbxListener, several: bool) -> str:
    """A worker's name for the supervisor (and its restarts metric): `progress`, or
    `progress:branch` when the daemon holds several PBXs."""
    return f"{name}:{listener.id}" if several else name

