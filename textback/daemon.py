"""The daemon: wires the edges (AMI, store, gateway, SMTP) around the pure core.

    AMI events -> CallTracker -> Store.call_facts -> missed_call.judge_call
        -> Store (call + outbox, one commit)
    outbox worker -> gateway.send -> Store
    inbound text -> Store.sender_facts -> inbound.plan_text
        -> Store (message + alert + keyword's answer, one commit) -> alert worker -> SMTP
    notice to an owner or the admin -> Store -> SMTP (retried by the notice worker)

Every decision is written to the "textback.timeline" log in plain words, so
an installer can follow what happened to each call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from functools import partial
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence
from zoneinfo import ZoneInfo

from ami_listener.connection import AmiConnection
from sms_gateway.base import Gateway, InboundMedia, InboundText
from sms_gateway.media import MediaFetcher
from sms_gateway.callbacks import CallbackServer, DeliveryStatus
from textback import mailin, pushkeys, runlock, service
from textback.core.alerts import one_line
from textback.core.media import Shown, kind_of, summary
from textback.api.routes import api_routes
from textback.cdr import build_source
from textback.config import Loaded, OwnerConfig
from textback.core.delivery import OPTOUT_CONFIRMATION
from textback.core.fleet import EVERY_SENDER, WAKE_CHANNEL, Senders, pbx_lock_key, senders_through
from textback.crm.client import CrmClient
from textback.hooks.sender import EndpointClient
from textback.workers.events import Destination, EventWorker
from textback.mailer import Mailer
from textback.core.inbound import plan_text
from textback.core.media import Attachment, not_sent_lines
from textback.core.missed_call import TOO_OLD_TO_TEXT, callback_number, judge_call
from textback.core.numbers import caller_name, parse_address
from textback.core.replies import INTAKE_COMMANDS, Verdict
from textback.core.scorecard import parse_amount
from textback.core.rules import Decision, match_number
from textback.gateways import build_gateway
from textback.mediafiles import MediaStore, Outbound, accept_outbound, media_directory
from textback.store import CallRow, NewMedia, PlannedText, Store, open_store
from textback.supervisor import Supervisor, cancel_and_wait
from textback.core.tracker import CallFinished, CallTracker
from textback.workers.common import SystemClock, clock_text, log_failure
from textback.workers.ami_lease import AmiLease
from textback.workers.recovery import ClaimRecovery, mail_again
from textback.workers.in_order import InOrder, Turn
from textback.workers.intake import IntakeSuggester
from textback.workers.media import MediaWorker, keep as keep_media
from textback.workers.outbox import OutboxWorker
from textback.workers.owner_mail import OwnerMail
from textback.workers.push import PushWorker
from textback.workers.ops import IncidentWorker, Watch, watchdog
from textback.workers.selftest import SelftestRunner
from textback.workers.wakeups import WakeListener
from textback.ops.metrics import Metrics
from textback.ops.web import ops_routes
from textback.web.consent import consent_routes
from textback.web.inbox import inbox_routes
from textback.web.links import sign_in_link
from textback.web.push import push_routes
from textback.web.medialinks import MEDIA_LINK_KEY, media_link
from textback.workers.pbx import PbxListener, pbx_worker_name
from textback.workers.owner_phone import OwnerPhone, Tell
from textback.workers.retention import RetentionWorker
from textback.workers.routing import RoutingTableWorker
from textback.web.context import HttpContext
from textback.web.front import WebFront
from textback.web.msp import CompanyDoor
from textback.web.server import RouteProvider, WebServer

log = logging.getLogger("textback")
timeline = logging.getLogger("textback.timeline")

REPLY_LISTENER_RETRY_SECONDS = 60.0  # while the reply-mail port cannot be bound
# At most one email in this many seconds says that the CDR could not be read (the log has each).
RECOVERY_ALERT_INTERVAL = 3600.0
# How long past a reply's deadline (text.max_age_minutes after it was due) the link an MMS
# provider fetches an owner's photo from works: the provider fetches it as it takes the
# message (Telnyx at send time), so an hour is ample, and a link that leaks from a provider's
# log soon stops working.
OUTBOUND_LINK_SECONDS = 3600.0
# How long events wait for a CRM adapter, and are kept, when no `webhooks:` section sets
# max_age_hours.
DEFAULT_EVENT_MAX_AGE_HOURS = 24.0
# In a fleet, what needs the PBX's AMI follows the lease: checked this often.
HOLDING_POLL_SECONDS = 0.2
# How long the sends through a PBX whose lease went may take to end, and then marking the
# texts still being sent may take (the database may be gone as well).
SENDS_STOPPED_SECONDS = 3.0
STOPPED = "when textback stopped"  # how a start found its rows in flight, in the log


class _CurrentAmi:
    """A PBX's AMI connection of the moment, for what keeps one for its life (the asterisk
    gateway): in a fleet a new connection stands in each time the lease is taken again."""

    def __init__(self, pbx: PbxListener):
        self._pbx = pbx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pbx.ami, name)


class Daemon:
    """The wiring: one PbxListener per PBX (its AMI connection, tracker, CDR recovery), and
    what their calls and inbound texts become here; the outbox, email, operations,
    self-test and retention workers are objects from textback/workers/, composed by `attach`
    on the open store and the gateway, each holding its own state."""

    def __init__(self, loaded: Loaded, record_ami: Path | None = None,
                 clock: SystemClock | None = None, web_front: WebFront | None = None):
        """`web_front`: the shared listener this company's web app joins (several companies in
        one process, `textback.companies`) instead of a listener of its own."""
        self.config = loaded.config
        self.web_front = web_front
        self.clock = clock or SystemClock()
        self.secrets = loaded.secrets
        self.mailer = Mailer(self.config.smtp, self.secrets.smtp_password)
        self.store: Store | None = None
        self.gateway: Gateway | None = None
        self.serving = asyncio.Event()  # set once every listener is bound and every worker started
        self._outbox_wake = asyncio.Event()
        self._alerts_wake = asyncio.Event()
        self._notices_wake = asyncio.Event()
        self._media_wake = asyncio.Event()
        self._push_wake = asyncio.Event()
        self.media_files = MediaStore(media_directory(self.config))
        self._writes: set[asyncio.Task] = set()
        self.workers = Supervisor()
        self._masked = self.secrets.redactor().url  # gateway errors go to the store and the log
        self.metrics = Metrics(self.workers.restarts)
        started = time.time()
        names = [pbx.incident_name for pbx in self.config.pbx_list()]
        self.call_order = InOrder()  # finished calls commit in the order they finished
        self.watch = Watch(ami_down_since=dict.fromkeys(names, started),
                           held_since=dict.fromkeys(names, started))
        self._ready_said = False  # READY=1 told systemd at the first AMI login
        self._mail_server: asyncio.AbstractServer | None = None
        self.pbxs = self._pbx_listeners(record_ami)
        self.routing = RoutingTableWorker(self.config, self.watch, self.clock)
        # The workers, built by `attach` once the store is open and the gateway built.
        self.mail: OwnerMail | None = None
        self.outbox: OutboxWorker | None = None
        self.incidents: IncidentWorker | None = None
        self.selftests: SelftestRunner | None = None
        self.retention: RetentionWorker | None = None
        self.owner_phone: OwnerPhone | None = None
        self.push: PushWorker | None = None  # with `web:` and push.enabled
        self._media_link_key: bytes | None = None  # read from the store once (media_linker)
        # A fleet with the asterisk gateway: the PBXs whose texts this daemon sends now (it holds
        # their AMI leases); None: it sends every text.
        self._sending_through: set[str] | None = None

    def attach(self, store: Store, gateway: Gateway | None = None) -> None:
        """Compose the workers on the open `store` and the `gateway` (None: nothing is sent);
        `run` does this itself, and a test that runs no daemon calls it to reach the workers."""
        self.store, self.gateway = store, gateway
        self._media_link_key = None  # this store's, read on first use
        c = self.config
        self.mail = OwnerMail(c, store, self.mailer, self.metrics, self.watch, self.media_files,
                              self._alerts_wake, self._notices_wake)
        self.owner_phone = OwnerPhone(c, store, self.wake_outbox, self.mail.notify, self._command)
        self.outbox = OutboxWorker(c, store, gateway, self.clock, self._outbox_wake, self.metrics,
                                   self.watch, self.mail.notify, self._masked,
                                   self.owner_phone.answer_failed,
                                   media_links=lambda: self.media_linker(OUTBOUND_LINK_SECONDS),
                                   senders=self._claimable_senders)
        self.incidents = IncidentWorker(c, store, self.metrics, self.watch, self._pbx_states,
                                        self.mail.mail_admin, self.mail.mail_admin_now)
        tested = self._selftest_pbx()
        self.selftests = SelftestRunner(
            c, self.secrets, store, gateway, tested.ami, tested.tracker, self.clock,
            self.wake_outbox, self.mail.mail_notice, self._masked,
            lambda: tested.events_seen_at)
        self.retention = RetentionWorker(c, store, self.clock, self.media_files)
        self.push = None
        if c.pushes():
            self.push = PushWorker(c, store, self.metrics, pushkeys.load_or_create(c.push_key_file()),
                                   self._push_link, self._push_wake, self.clock)

        model = c.intake.model
        self.intake_suggester = (IntakeSuggester(
            c, model, self.secrets.intake_model.get_secret_value()
            if self.secrets.intake_model else None, store) if model is not None else None)

    async def _push_link(self, owner_id: str, conversation_id: int) -> str:
        """A push's link: it signs the owner in once and opens the thread, like an alert email's."""
        return await sign_in_link(self.store, self.config.web, owner_id, conversation_id)

    def wake_outbox(self) -> None:
        """A text was queued: the outbox worker looks for due texts now."""
        self._outbox_wake.set()

    # -- the PBXs: one PbxListener each (textback/workers/pbx.py) ---------------------

    def _pbx_listeners(self, record_ami: Path | None) -> list[PbxListener]:
        """One listener per PBX, each with its own connection, tracker, CDR and progress.
        With several PBXs a recording of the AMI traffic goes to one file per PBX."""
        pbxs = self.config.pbx_list()
        listeners = []
        for pbx in pbxs:
            recording = record_ami
            if record_ami is not None and len(pbxs) > 1:
                recording = record_ami.with_name(f"{record_ami.stem}.{pbx.id}{record_ami.suffix}")
            cdr = (build_source(pbx.recovery, self.secrets.pbx_cdr.get(pbx.id))
                   if pbx.recovery is not None else None)
            listeners.append(PbxListener(pbx, self.secrets.ami_of(pbx.id), cdr, self,
                                         lambda: self.store, self.metrics, self.watch,
                                         self.clock, self.config.business.timezone, recording))
        return listeners

    def _pbx_serving(self, number: str) -> PbxListener:
        """The listener of the PBX serving business number `number` (else the first PBX's):
        the asterisk gateway texts from a number through its own PBX."""
        pbx = self.config.pbx_serving(number)
        return next((p for p in self.pbxs if pbx is not None and p.id == pbx.id), self.pbxs[0])

    def _claimable_senders(self) -> Senders:
        """The texts this daemon may claim now: every one, unless the asterisk gateway sends
        through PBXs that a fleet's daemons hold apart; then the texts of the PBXs whose AMI
        lease this daemon holds (each PBX's business numbers; the first PBX also sends from a
        number none lists, as the gateway does)."""
        if self._sending_through is None:
            return EVERY_SENDER
        return self._senders_through(self._sending_through)

    def _senders_through(self, pbx_ids: set[str]) -> Senders:
        return senders_through([p.pbx.numbers for p in self.pbxs],
                               {index for index, p in enumerate(self.pbxs) if p.id in pbx_ids})

    def _selftest_pbx(self) -> PbxListener:
        return next(p for p in self.pbxs if p.id == self.config.selftest_pbx().id)

    # The first PBX (the only one of the single `ami:` form), as tests and tools drive it.
    @property
    def ami(self) -> AmiConnection:
        return self.pbxs[0].ami

    @ami.setter
    def ami(self, connection: AmiConnection) -> None:
        self.pbxs[0].ami = connection

    @property
    def tracker(self) -> CallTracker:
        return self.pbxs[0].tracker

    @property
    def ami_lease(self) -> AmiLease | None:
        return self.pbxs[0].lease

    def on_event(self, event: dict[str, Any]) -> None:
        self.pbxs[0].on_event(event)

    def on_login(self) -> Any:
        return self.pbxs[0].on_login()

    def on_ami_dropped(self, why: str) -> None:
        self.pbxs[0].on_ami_dropped(why)

    async def recover(self, since: float) -> bool:
        return await self.pbxs[0].recover(since)

    def expire_calls(self, now: float) -> None:
        """Close the calls whose deadline is past at `now` on every PBX, as the timers do."""
        for pbx in self.pbxs:
            pbx.expire_calls(now)

    def _ami_logged_in(self) -> bool:
        return all(pbx.logged_in for pbx in self.pbxs)

    def _ami_answering(self) -> bool:
        """Every PBX is listened to: by this daemon, or (a fleet on PostgreSQL) by the daemon
        that holds its lease while this one stands by, which is no incident."""
        return all(pbx.answering for pbx in self.pbxs)

    def _pbx_states(self) -> dict[str, bool | None]:
        """Each PBX, by the name its incidents give it: listened to by this daemon (True), by
        another daemon of the fleet holding its lease (None), or not (False)."""
        return {pbx.pbx.incident_name: pbx.listened for pbx in self.pbxs}

    @property
    def last_ami_event_at(self) -> float | None:
        """When an AMI event last arrived (or a Ping was answered) on a logged-in connection:
        with several PBXs, the oldest of their moments (None while one has none)."""
        moments = [pbx.events_seen_at for pbx in self.pbxs]
        return None if None in moments else min(moments)

    def pbx_logged_in(self, pbx: PbxListener) -> None:
        """A PBX's login: the first of the daemon tells systemd it is ready."""
        if not self._ready_said:  # the store is open before AMI starts: ready to take calls
            self._ready_said = True
            service.notify("READY=1\nSTATUS=logged in to AMI; taking calls")

    def pbx_state_changed(self, pbx: PbxListener, logged_in: bool) -> None:
        """A PBX's AMI connection logged in or lost its link (or was replaced, its lease lost):
        `textback status` reads it at once (on the loop, as the connection's callback: the
        write is a task)."""
        if self.selftests is not None and pbx is self._selftest_pbx():
            self.selftests.ami = pbx.ami
        self._ami_state_changed(logged_in)

    async def pbx_ready(self, pbx: PbxListener) -> None:
        await self.on_asterisk_ready()

    async def ring_back(self, owner_id: str, missed: list[tuple[float, Decision]],
                        max_age_minutes: float) -> None:
        await self._send_ring_back_list(self.config.owner(owner_id), missed, max_age_minutes)

    def _clock(self, at: float) -> str:
        return clock_text(at, self.config.business.timezone)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; raises runlock.AlreadyRunning if a daemon has the database."""
        lock = runlock.acquire(self.config.storage.path)  # before anything touches the store or AMI
        try:
            await self.serve(stop)
        finally:
            lock.release()

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, the run lock already held (by `run`, or by the process
        serving several companies)."""
        c = self.config
        store = await open_store(c.storage, self.secrets.storage_password, c.company)
        self.store = store
        for pbx in self.pbxs:
            await pbx.load_progress()
        self.routing.write()
        fleet = c.storage.backend == "postgresql"
        # The asterisk gateway sends through a PBX's AMI, which in a fleet only the daemon
        # holding the PBX's lease has: each daemon claims the texts of the PBXs it holds.
        self._sending_through = set() if fleet and c.gateway.type == "asterisk" else None
        # Before any claim: the claims from now on are this daemon's, and recovery (here, in a
        # daemon starting beside others, or in their sweeps) takes only a gone daemon's rows.
        await self.store.register_claimer(socket.gethostname(), os.getpid())
        interrupted = await self.store.recover_interrupted()
        await mail_again(self.store, STOPPED)
        callbacks = web_server = None
        workers = self.workers
        try:
            # A PBX's AMI connection is replaced as its lease comes and goes (a fleet): the
            # asterisk gateway sends through whichever this daemon has now, of the PBX that
            # serves the number the text is sent from.
            self.attach(store, build_gateway(
                c, _CurrentAmi(self.pbxs[0]), self.secrets,
                ami_for_sender=lambda number: _CurrentAmi(self._pbx_serving(number))))
            await self.outbox.report_interrupted(interrupted, STOPPED)
            if c.gateway.callbacks is not None:
                w = c.gateway.callbacks
                callbacks = CallbackServer(
                    [self.gateway], self.receive_text, self.report_delivery,
                    host=w.listen_host, port=w.listen_port, public_base_url=w.public_base_url,
                    max_body_bytes=w.max_body_bytes, max_connections=w.max_connections,
                    header_seconds=w.header_timeout_seconds, body_seconds=w.body_timeout_seconds,
                    keepalive_seconds=w.keepalive_seconds, on_result=self._count_callback,
                    on_not_configured=self._callback_not_configured)
                await callbacks.start()
            if c.reply_mail is not None and not await self._serve_reply_mail():
                workers.start("reply-mail", self._reply_mail_worker)
            if c.web is not None and self.web_front is not None:
                await self.web_front.join(c.company.id, c.web, self.web_routes(),
                                          CompanyDoor(c.company.id, c.business.name,
                                                      c.web.public_url, store))
            elif c.web is not None:
                web_server = WebServer(c.web, self.web_routes())
                await web_server.start()
            if fleet:
                self._start_fleet_workers(store)
                recovery = ClaimRecovery(store, socket.gethostname(), os.getpid(),
                                         report_unknown=self.outbox.report_interrupted)
                workers.start("claim-recovery", recovery.run)  # a daemon that dies meanwhile
            else:  # SQLite: one daemon (the run lock), always the listener
                for pbx in self.pbxs:
                    pbx.ami.start()
            workers.start("outbox", self.outbox.run)
            workers.start("alerts", self.mail.run_alerts)
            workers.start("notices", self.mail.run_notices)
            workers.start("routing", self.routing.run)
            self._start_pbx_workers()
            workers.start("incidents", self.incidents.run)
            if service.watchdog_interval() is not None:
                workers.start("watchdog", watchdog)
            if c.escalation is not None:
                workers.start("escalation", self.mail.run_escalation)
            if c.digest is not None:
                workers.start("digest", self.mail.run_digest)
            if c.selftest is not None:  # in a fleet, by the holder: its calls go through AMI
                tested = self._selftest_pbx()
                workers.start("selftest", (lambda: self._while_holding(self.selftests.run, tested))
                              if fleet else self.selftests.run)
            if c.retention.months is not None:
                workers.start("retention", self.retention.run)
            # Always: with no endpoint configured it still forgets old events.
            max_age = c.webhooks.max_age_hours if c.webhooks else DEFAULT_EVENT_MAX_AGE_HOURS
            hooks = EventWorker(self._event_destinations(), max_age, self.store, self.clock,
                                self.mail.tell_admin)
            workers.start("webhooks", hooks.run)
            media = MediaWorker(c.media, self._media_fetchers(), self.media_files, self.store,
                                self.clock, self._media_wake, self._tell_media_owner,
                                c.business.timezone, self._alerts_wake)
            workers.start("media", media.run)
            if self.push is not None:
                workers.start("push", self.push.run)
            log.info("textback running for %s (%s); gateway %s; database %s",
                     c.business.name, ", ".join(n.number for n in c.numbers),
                     self.gateway.name, c.storage.url or c.storage.path)  # a url holds no password
            self.serving.set()
            if fleet:  # a standby is ready too: systemd must not wait for an AMI login
                service.notify("READY=1\nSTATUS=serving; listening to each PBX while holding "
                               "its AMI lease")
            await stop.wait()
        finally:
            log.info("textback stopping")
            service.notify("STOPPING=1")
            for pbx in self.pbxs:
                await pbx.close_timers()
                try:  # while a fleet's lease, which ends with its worker, still holds
                    await pbx.save_progress()
                except Exception:  # noqa: BLE001 - the database may be gone: the stop goes on
                    log.exception("PBX %s: could not keep until when its events were seen", pbx.id)
            if self.web_front is not None:
                self.web_front.leave(c.company.id)
            await workers.stop()
            if web_server is not None:
                await web_server.stop()
            if callbacks is not None:
                await callbacks.stop()  # waits for in-flight commits
            if self._mail_server is not None:
                self._mail_server.close()
                await self._mail_server.wait_closed()
            if self._writes:
                await asyncio.gather(*self._writes, return_exceptions=True)
            for pbx in self.pbxs:
                await pbx.ami.close()
            if self.intake_suggester is not None:
                await self.intake_suggester.close()
            if hasattr(self.gateway, "close"):
                await self.gateway.close()
            for pbx in self.pbxs:
                await pbx.save_progress()
            await self.store.close()

    def _start_pbx_workers(self) -> None:
        """Each PBX's own: its progress mark (with a Ping) and, with a CDR, its overdue calls."""
        several = len(self.pbxs) > 1
        for pbx in self.pbxs:
            self.workers.start(pbx_worker_name("progress", pbx, several), pbx.run_progress)
            if pbx.cdr is not None:
                self.workers.start(pbx_worker_name("overdue-calls", pbx, several), pbx.overdue.run)

    def _start_fleet_workers(self, store: Store) -> None:
        """PostgreSQL: each PBX's AMI lease (listen to it only while holding it; different
        daemons may hold different PBXs) and the wake-ups other daemons' writes send
        (LISTEN/NOTIFY), each on a connection of its own."""
        from textback.store.postgres.fleet import AdvisoryLease, WakeConnection
        c = self.config
        password = (self.secrets.storage_password.get_secret_value()
                    if self.secrets.storage_password else None)
        several = len(self.pbxs) > 1
        for pbx in self.pbxs:
            a = pbx.pbx.ami
            lease = AdvisoryLease(c.storage.url, password, pbx_lock_key(a.host, a.port, c.company.id))
            name = pbx.pbx.address if not several else f"PBX {pbx.id} ({pbx.pbx.address})"
            pbx.lease = AmiLease(lease, name, partial(self._lease_taken, pbx),
                                 partial(self._lease_lost, pbx))
            self.workers.start(pbx_worker_name("ami-lease", pbx, several), pbx.lease.run)
        wakes = {"outbox": [self._outbox_wake],
                 "alerts": [self._alerts_wake, self._push_wake],  # a homeowner's text
                 "notices": [self._notices_wake], "events": [store.events_added],
                 "media": [self._media_wake]}
        listener = WakeListener(WakeConnection(c.storage.url, password, WAKE_CHANNEL), wakes)
        self.workers.start("wake-ups", listener.run)

    async def _lease_taken(self, pbx: PbxListener) -> None:
        """This daemon holds `pbx`'s AMI lease: listen to it (the login recovers the CDR's gap)
        and, with the asterisk gateway, send its texts from now on. Before the first claim,
        what was left `sending` through this PBX is marked unknown (not sent again), as at a
        start: a gone holder's, and this daemon's own when the database was gone as the lease
        went. Its texts queued meanwhile are claimed at the outbox's next round, and at once
        when its Asterisk is ready (`on_asterisk_ready`)."""
        await pbx.listen()
        if self._sending_through is None:
            return
        senders = self._senders_through({pbx.id})
        marked = await self.store.recover_interrupted(mine_too=True, senders=senders)
        await self.outbox.report_interrupted(
            marked, f"through PBX {pbx.id} by a former holder of its AMI lease")
        self._sending_through.add(pbx.id)

    async def _lease_lost(self, pbx: PbxListener) -> None:
        """`pbx`'s lease went (or the daemon stops): no text of its numbers is claimed any more,
        its AMI connection closes, and then the texts this daemon was sending through it are
        settled: a send through the closed connection ends at once (retried by the next
        holder); what is still `sending` is marked unknown, not left for this daemon while it
        stands by. Bounded: with the database gone too, the next holding does it."""
        if self._sending_through is not None:
            self._sending_through.discard(pbx.id)
        await pbx.stop_listening()
        if self._sending_through is None:
            return
        try:
            await asyncio.wait_for(self.outbox.sends_stopped(
                self._senders_through({pbx.id}), SENDS_STOPPED_SECONDS,
                f"through PBX {pbx.id} as its AMI lease went"), 2 * SENDS_STOPPED_SECONDS)
        except Exception as exc:  # noqa: BLE001 - the database may be gone: said, done later
            log.error("could not mark the texts being sent through PBX %s as its AMI lease went "
                      "(%s); they are marked unknown when this daemon holds it again, or by "
                      "another daemon once this one's claimer is gone", pbx.id,
                      one_line(str(exc) or type(exc).__name__))
            return

    async def _while_holding(self, work: Callable[[], Awaitable[None]],
                             pbx: PbxListener) -> None:
        """Run `work` while this daemon holds `pbx`'s AMI lease, cancelled when it loses it:
        for what needs the PBX's AMI (the self-test's Originate; the asterisk gateway's sends
        follow the leases through the outbox's `senders` instead)."""
        while True:
            while not pbx.lease.holding:
                await asyncio.sleep(HOLDING_POLL_SECONDS)
            running = asyncio.create_task(work())
            try:
                while pbx.lease.holding and not running.done():
                    await asyncio.sleep(HOLDING_POLL_SECONDS)
            finally:
                await cancel_and_wait([running])
            if not running.cancelled() and running.exception() is not None:
                raise running.exception()  # the supervisor logs it and restarts this worker

    def _event_destinations(self) -> list[Destination]:
        """Every place events go: the webhook endpoints, then the CRM adapters (`crm:<name>`)."""
        c = self.config
        destinations = [
            Destination(e.name, tuple(e.events),
                        EndpointClient(e, self.secrets.webhooks[e.name], self._masked))
            for e in (c.webhooks.endpoints if c.webhooks else ())]
        for entry in c.crm:
            client = CrmClient(entry, self.secrets.crm[entry.name], self.store, self._masked)
            destinations.append(Destination(f"crm:{entry.name}", client.events, client))
        return destinations

    def _media_fetchers(self) -> dict[str, MediaFetcher]:
        """The gateway's media hosts and credentials, if it carries media (MMS)."""
        access = getattr(self.gateway, "media_access", lambda: None)()
        if access is None:
            return {}
        m = self.config.media
        if m.insecure_loopback_for_tests:
            log.warning("media.insecure_loopback_for_tests is set: media may be fetched over plain "
                        "HTTP from loopback addresses. It is for the test suite only; remove it")
        return {access.gateway: MediaFetcher(access, m.timeout_seconds,
                                             m.insecure_loopback_for_tests)}

    async def _tell_media_owner(self, owner_id: str, selftest: bool, subject: str,
                                text: str) -> None:
        if selftest:
            await self.mail.tell_admin(subject, text)
        else:
            await self.mail.notify(self.config.owner(owner_id), subject, text)

    def http_context(self) -> HttpContext:
        """What the HTTP rooms may use of the daemon (the store is open by now)."""
        return HttpContext(
            config=self.config, secrets=self.secrets, store=self.store, metrics=self.metrics,
            media_files=self.media_files, wake_outbox=self.wake_outbox,
            media_linker=self.media_linker,
            ami_logged_in=self._ami_answering,
            last_ami_event_at=lambda: self.last_ami_event_at,
            outbound_media=self.outbound_media,
            msp=self.web_front.msp_access if self.web_front is not None else None)

    async def outbound_media(self, attachments: Sequence[Attachment]) -> Outbound:
        """An owner's attachments to a reply (email or web inbox), checked for this gateway's
        MMS and stored, or each refused saying why."""
        web = self.config.web
        return await accept_outbound(self.media_files, self.gateway,
                                     web.public_url if web else None, attachments)

    def web_routes(self) -> list[RouteProvider]:
        """What the `web:` listener serves; each HTTP room adds its own routes."""
        context = self.http_context()
        routes = [ops_routes(context), inbox_routes(context), api_routes(context),
                  consent_routes(context)]
        if self.config.pushes():
            routes.append(push_routes(context))
        return routes

    async def _serve_reply_mail(self) -> bool:
        """Start the reply-mail listener; False (an incident, retried) when its port is taken."""
        settings = self.config.reply_mail
        try:
            self._mail_server = await mailin.serve(self.config, self.store, self.owner_reply,
                                                   self._count_reply_mail)
        except OSError as exc:
            self.watch.reply_listener_error = (f"cannot listen on {settings.listen_host}:"
                                               f"{settings.listen_port}: {exc.strerror or exc}")
            log.error("reply mail: %s; retrying every %.0f s", self.watch.reply_listener_error,
                      REPLY_LISTENER_RETRY_SECONDS)
            return False
        self.watch.reply_listener_error = None
        return True

    async def _reply_mail_worker(self) -> None:
        while True:
            await asyncio.sleep(REPLY_LISTENER_RETRY_SECONDS)
            if await self._serve_reply_mail():
                return

    def _ami_state_changed(self, logged_in: bool) -> None:
        """The AMI connection logged in or lost its link: `textback status` reads it at once
        (runs on the loop, as the connection's callback: the write is a task)."""
        if self.incidents is not None:
            self.spawn(self.incidents.note_ami_state())

    def _count_reply_mail(self, verdict: str) -> None:
        self.metrics.reply_mail.labels(verdict).inc()

    def _count_callback(self, gateway: str, result: str) -> None:
        self.metrics.callbacks.labels(gateway, result).inc()
        if result == "accepted":
            self.watch.webhook_signing_error = None  # the provider's signatures check out again

    def _callback_not_configured(self, gateway: str, why: str) -> None:
        """A webhook signed with a key or algorithm not configured: an incident, so a person
        fixes the configuration before the provider gives up retrying the replies."""
        self.watch.webhook_signing_error = f"{gateway}: {why}"

    async def on_asterisk_ready(self) -> None:
        """Asterisk has finished starting (FullyBooted) after a login: the texts that waited for
        it go out now. Sent before, a MessageSend fails until res_pjsip_messaging is loaded."""
        if self.gateway is not None and self.gateway.name == "asterisk":
            await self.outbox.link_back("Asterisk is ready")

    async def _send_ring_back_list(self, owner: OwnerConfig, missed: list[tuple[float, Decision]],
                                   max_age_minutes: float) -> None:
        zone = ZoneInfo(self.config.business.timezone)
        minutes = f"{max_age_minutes:g}"
        lines = [f"textback was not connected to the phone system when these calls were missed, and "
                 f"found them more than {minutes} minutes later, too late for an automatic text. "
                 f"Please ring them back:", ""]
        for ended_at, decision in sorted(missed, key=lambda item: item[0]):
            when = datetime.fromtimestamp(ended_at, zone).strftime("%a %d %b %H:%M")
            lines.append(f"  {when}  {decision.caller} (called {decision.business_number})")
        await self.mail.notify(owner, f"{len(missed)} missed call(s) to ring back", "\n".join(lines))

    async def recovery_failed(self, since: float, error: str, numbers: list[str]) -> None:
        """Tell the owners of a PBX's `numbers` that missed calls may be unrecorded and
        untexted, once an hour at most (the notices table remembers the hour, across restarts)."""
        started = datetime.fromtimestamp(since, ZoneInfo(self.config.business.timezone))
        text = (f"textback could not read the phone system's call records ({error}), so calls missed "
                f"since {started:%a %d %b %H:%M} while it was not connected to Asterisk may be neither "
                f"recorded nor texted. Please check the phone system's call log for missed callers.")
        served = [n for n in self.config.numbers if n.number in numbers]
        for owner_id in sorted({n.owner for n in served}):
            await self.mail.notify(self.config.owner(owner_id), "Missed calls may be unrecorded", text,
                                   unless_since=time.time() - RECOVERY_ALERT_INTERVAL)

    async def settle(self) -> None:
        """Wait until the calls and texts handed on so far are written, then stop the timers (the
        call expiry, a channel listing's retry): for a daemon driven without `run`."""
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        for pbx in self.pbxs:
            await pbx.close_timers()

    def spawn(self, coroutine: Any) -> None:
        """Run a write (a call's, a text's) as a task the daemon waits for when it stops."""
        task = asyncio.create_task(coroutine)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        task.add_done_callback(log_failure)

    async def finish_call(self, call: CallFinished, recovered: bool = False,
                          may_text: bool = True, withheld: str = TOO_OLD_TO_TEXT) -> Decision:
        """Decide, record and queue a finished call: its facts read in one store call, the
        whole decision made purely (`missed_call.judge_call`), then committed in one;
        `may_text` False withholds its text, giving `withheld` as the decision (too old, by
        default)."""
        if call.selftest:
            return await self.selftests.call_finished(call)
        turn = self.call_order.take()  # before any await: the order the calls finished in
        try:
            return await self._judge_and_record(call, turn, recovered, may_text, withheld)
        finally:
            turn.end()

    async def _judge_and_record(self, call: CallFinished, turn: Turn, recovered: bool,
                                may_text: bool, withheld: str) -> Decision:
        """`finish_call`'s work: the facts read at once, the commit after the calls before."""
        dialled = match_number(self.config, call.did)
        now = time.time()
        facts = await self.store.call_facts(callback_number(self.config, call),
                                            dialled.number if dialled else None, now)
        judged = judge_call(self.config, call, facts, self._local(now), may_text, withheld)
        call, decision = judged.call, judged.decision
        self.metrics.calls.labels(call.outcome, call.reason,
                                  dialled.number if dialled else "other").inc()
        if judged.fraud_report is not None:
            log.warning("%s", judged.fraud_report)
        row = CallRow(
            linkedid=call.call_id, business_number=decision.business_number,
            caller_raw=call.caller_id, caller=decision.caller,
            caller_name=caller_name(call.caller_name, call.caller_id),
            started_at=call.started_at, answered_at=call.answered_at, ended_at=call.ended_at,
            outcome=call.outcome, reason=call.reason, decision=decision.reason, route=call.route,
            recovered=recovered)
        planned = (PlannedText(decision.owner_id, decision.body, decision.due_at, decision.template)
                   if decision.send else None)
        dedupe_since = call.ended_at - self.config.text.dedupe_hours * 3600
        await turn.wait()
        outbox_id = await self.store.record_call(row, planned, owner_id=decision.owner_id,
                                                 dedupe_since=dedupe_since,
                                                 owner_reason=judged.owner_reason)
        turn.end()  # committed: the next call may commit while this one's mail and logs go on
        if judged.fraud_report is not None:
            await self.mail.report_fraud(decision.reason, judged.fraud_report, time.time())
        # The canonical number when the caller ID holds one, else what the trunk sent, escaped.
        who = decision.caller or one_line(call.caller_id)
        if call.outcome == "answered":
            timeline.info("call answered: %s (by %s)", who, one_line(call.answered_by or call.reason))
            return decision
        timeline.info("call missed: %s calling %s (reason: %s)", who, decision.business_number,
                      call.reason)
        if outbox_id is None:
            reason = decision.reason
            if decision.send:
                hours = f"{self.config.text.dedupe_hours:g} h"
                reason = {"deduplicated": f"already texted within {hours}",
                          "open_conversation": f"in a conversation with texts within {hours}; "
                                               f"the miss joins its thread"}.get(
                    await self.store.call_decision(call.call_id), "call already recorded")
            timeline.info("no text for %s: %s", who, reason)
            return decision
        timeline.info("text due at %s to %s", self._clock(decision.due_at), decision.caller)
        self.wake_outbox()
        return decision

    def _local(self, at: float) -> datetime:
        """The business's local time at `at`: what ownership schedules are written in."""
        return datetime.fromtimestamp(at, ZoneInfo(self.config.business.timezone))

    # -- inbound texts and owner alerts -------------------------------------------

    async def receive_text(self, text: InboundText, gateway: str) -> None:
        """Commit an inbound text, its owner alert and its keyword's answer; the gateway
        acknowledges after this returns. The sender's facts are read in one store call, the
        decision made purely (`inbound.plan_text`), then committed in one."""
        number = match_number(self.config, text.recipient)
        if number is None:
            if await self.store.record_unroutable(text.sender, text.recipient, text.body, gateway,
                                                  text.gateway_id):
                log.error("text from %s to %s kept, not threaded: it is not one of the configured "
                          "business numbers (check `numbers` and the gateway's number mapping)",
                          one_line(text.sender), one_line(text.recipient))
            return
        address = parse_address(text.sender, number.region)
        if address.number is None:
            if await self.store.record_unroutable(text.sender, number.number, text.body, gateway,
                                                  text.gateway_id):
                log.warning("text to %s from %s kept as unroutable: the sender holds no phone "
                            "number, so it is not threaded, answered or opted out (later texts "
                            "from this sender are kept without this line)", number.number,
                            one_line(text.sender))
            return
        sender = address.number
        owner = self.config.owner_by_mobile(sender)
        if owner is not None:  # an owner's own phone: an answer, never a lead's text
            await self.owner_phone.answer(owner, number, text.body, len(text.media), gateway,
                                          text.gateway_id)
            return
        facts = await self.store.sender_facts(sender, number.number)
        plan = plan_text(self.config, number, sender, text.body, facts, self._local(time.time()))
        # Read off the loop: dateparser's first call loads its languages.
        intake = await asyncio.to_thread(self.config.extract_intake, text.body, time.time(),
                                         sender) if text.body.strip() else None
        record = await self.store.record_inbound(
            sender, number.number, text.body, gateway, text.gateway_id, plan.owner_id,
            plan.owner_reason, display_name=caller_name(address.display_name, sender),
            media=[await self._new_media(item) for item in text.media],
            media_link=await self.media_linker(), keyword=plan.keyword, answer=plan.answer,
            intake=intake)
        if record.duplicate:
            log.info("duplicate delivery of message %s ignored",
                     one_line(text.gateway_id or f"from {sender} without an id"))
            return
        if text.media:
            self._media_wake.set()
        if record.repeated_optout:  # kept in the thread and the ledger; nobody's news
            timeline.info("%s, already opted out, texted %s again: %s; kept, no alert",
                          sender, number.number, one_line(text.body, 200))
            return
        timeline.info("homeowner replied: %s to %s: %s%s", sender, number.number,
                      one_line(text.body, 200),
                      f" (+{len(text.media)} media)" if text.media else "")
        self._alerts_wake.set()
        self._push_wake.set()
        await self.owner_phone.alert(record.conversation_id, number, sender, summary(
            text.body, [Shown(kind_of(item.declared_type)) for item in text.media]))
        if self.intake_suggester is not None and not plan.keyword and text.body.strip():
            # After the commit and the alert's wake-up: the extractor never delays an alert.
            self.intake_suggester.submit(record.conversation_id, record.message_id, text.body)
        if record.answered is None:
            return
        if plan.answer.opt == "out":
            timeline.info("opted out: %s; no path will text it again", sender)
        elif plan.answer.opt == "in":
            timeline.info("opted back in: %s", sender)
        self.wake_outbox()

    async def media_linker(self, seconds: float | None = None
                           ) -> Callable[[int, float], str] | None:
        """Signed links to media under web.public_url, valid `seconds` (else media.link_hours)
        from a moment; None without a `web:` listener to serve them."""
        web = self.config.web
        if web is None:
            return None
        if self._media_link_key is None:
            # Read once, not on every inbound text: the store makes the key on first use and
            # never changes it after, and every daemon of a fleet reads the same row.
            self._media_link_key = await self.store.web_key(MEDIA_LINK_KEY)
        key = self._media_link_key
        valid = self.config.media.link_hours * 3600 if seconds is None else seconds
        return lambda media_id, at: media_link(key, web.public_url, media_id, int(at + valid))

    async def _new_media(self, item: InboundMedia) -> NewMedia:
        """A media row for the store: to fetch later, or (bytes that came with the text, as a
        SIP MESSAGE's non-text body) checked and kept now."""
        if item.content is None:
            return NewMedia(item.url, item.declared_type, item.declared_size)
        kept = await asyncio.to_thread(keep_media, self.media_files, item.content,
                                       item.declared_type)
        return NewMedia(item.url, item.declared_type, item.declared_size, kept.sha256,
                        kept.content_type, kept.shown, kept.size, kept.note,
                        kept.rendition_sha256)

    # -- owners' email replies ------------------------------------------------------

    async def owner_reply(self, binding: dict[str, Any], verdict: Verdict) -> None:
        """Act on an accepted email reply; runs before the SMTP 250 is sent."""
        self._count_reply_mail(verdict.action)
        conversation_id, caller = binding["conversation_id"], binding["caller"]
        owner = self.config.owner(binding["owner_id"])
        if verdict.action == "command":
            await self._command(conversation_id, caller, owner, verdict.command, verdict.argument,
                                f"email:{owner.id}", partial(self.mail.notify, owner))
        elif verdict.action == "too_long":
            await self.mail.notify(owner, f"Not sent to {caller}: too long",
                                   f"Your reply to {caller} was not sent: it is {verdict.reason}.\n"
                                   f"Please shorten it and reply again. Nothing was cut or sent.")
        elif verdict.action == "nothing_to_send":
            files = "".join(f"\n    {one_line(name, 80)}" for name in verdict.attachments)
            await self.mail.notify(owner, f"Not sent to {caller}: nothing to send",
                                   f"Your email reply to {caller} was not sent: {verdict.reason}."
                                   + (f"\n\nIts pictures:{files}" if files else "")
                                   + "\n\nWrite your answer above the quoted message and reply "
                                   "again. A photo is texted only when attached as a file, on a "
                                   "gateway that sends MMS.")
        elif verdict.action == "unreadable":
            await self.mail.notify(owner, f"Not sent to {caller}: your reply could not be read",
                                   f"Your email reply to {caller} was not sent: {verdict.reason}.\n"
                                   f"Please reply again with a short plain message, or call them.")
        elif verdict.action != "text":
            raise ValueError(f"no handling for a reply verdict {verdict.action!r}")
        else:
            await self._text_owner_reply(binding, owner, verdict)

    async def _text_owner_reply(self, binding: dict[str, Any], owner: OwnerConfig,
                                verdict: Verdict) -> None:
        """Queue an email reply's words and the photos it may carry (checked and on disk, with
        their rows in the reply's commit, before the 250); whatever is not texted, the owner
        is told of by name."""
        conversation_id, caller = binding["conversation_id"], binding["caller"]
        prepared = await self.outbound_media(verdict.files)
        left_out = [*prepared.refused, *((name, "a picture inside the email's text is not "
                                                "texted; attach the photo as a file")
                                         for name in verdict.in_body)]
        if not verdict.text and not prepared.files:
            await self.mail.notify(owner, f"Not sent to {caller}: nothing to send",
                                   f"Your email reply to {caller} was not sent: it had no words, "
                                   f"and none of its files can be texted:"
                                   f"{not_sent_lines(left_out)}\n\nWrite your answer above the "
                                   f"quoted message and reply again.")
            return
        if await self.store.queue_owner_reply(conversation_id, binding["business_number"], caller,
                                              verdict.text, f"email:{owner.id}",
                                              media=prepared.rows()) is None:
            await self.mail.notify(owner, f"Not sent to {caller}: they opted out",
                                   f"{caller} asked not to be texted (STOP), so your reply was not "
                                   f"sent. Call them instead, or wait until they text START.")
            return
        timeline.info("owner %s replied by email; texting %s: %s%s", owner.id, caller,
                      one_line(verdict.text, 200),
                      f" (+{len(prepared.files)} photos)" if prepared.files else "")
        self.wake_outbox()
        if left_out:
            await self.mail.notify(owner, f"Sent to {caller} without some files",
                                   f"Your reply to {caller} was texted, but not these files:"
                                   f"{not_sent_lines(left_out)}")

    async def _command(self, conversation_id: int, caller: str, owner: OwnerConfig, command: str,
                       argument: str, source: str, tell: Tell) -> None:
        """A bookkeeping command an owner sent by email or from their mobile (`source`);
        `tell` (subject, text) answers only a command that could not be done."""
        if command in INTAKE_COMMANDS:
            await self._correct_intake(conversation_id, caller, owner, command, argument, source,
                                       tell)
            return
        if command == "assign":
            target = next((o for o in self.config.owners if o.id == argument.lower()), None)
            if target is None:
                known = ", ".join(o.id for o in self.config.owners)
                await tell(f"#assign {argument}: no such owner",
                           f"There is no owner {argument!r}. Owners: {known}.")
                return
            await self.store.assign(conversation_id, target.id, f"#assign by {owner.id}")
            timeline.info("conversation with %s assigned to %s by %s", caller, target.id, owner.id)
            return
        value = None
        if command == "won" and argument:
            value = parse_amount(argument)
            if value is None:
                await tell(f"#won {argument}: not an amount",
                           "Write the job value as a number, e.g. #won 82000.")
                return
        await self.store.record_outcome(conversation_id, command, value, source)
        timeline.info("conversation with %s marked %s%s by %s", caller, command,
                      f" ({value:,.0f})" if value else "", owner.id)

    async def _correct_intake(self, conversation_id: int, caller: str, owner: OwnerConfig,
                              command: str, argument: str, source: str, tell: Tell) -> None:
        """"#budget 80k": the owner's value, committed with the command's words; one that
        cannot be read is answered (by email, or by text to the owner's mobile), saying why."""
        words = f"#{command} {argument}".strip()
        try:
            facts = self.config.intake_corrections(INTAKE_COMMANDS[command], argument, time.time())
        except ValueError as error:
            await tell(f"{one_line(words, 60)}: not changed",
                       f"Nothing was changed for {caller}: {error}.")
            return
        await self.store.correct_intake(conversation_id, facts, source, words)
        timeline.info("intake of the conversation with %s set by %s: %s", caller, owner.id,
                      ", ".join(f"{fact.name} {fact.label}" for fact in facts))

    async def report_delivery(self, status: DeliveryStatus, gateway: str) -> None:
        """A provider's delivery report; reports repeat and arrive out of order."""
        message_id = await self.store.update_delivery(gateway, status.gateway_id, status.status,
                                                      status.error_code)
        if message_id is None:
            return
        timeline.info("delivery report: %s %s%s", status.gateway_id, status.status,
                      f" (error {status.error_code})" if status.error_code else "")
        if status.status in ("failed", "undelivered"):  # the text failed for good after it was sent
            item = await self.store.sent_text(message_id)
            if item is not None and item.kind != OPTOUT_CONFIRMATION:
                await self.outbox.report_undelivered(item, "undelivered", item.last_error)
