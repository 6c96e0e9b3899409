"""The operations workers: systemd's watchdog, and incidents mailed to the admin.

The incident worker is an object with explicit dependencies: the store, the
metrics, the `Watch` the daemon's other parts report what goes wrong into,
whether each PBX is listened to, and a way to mail the admin. It turns the watch
into incidents (textback.core.incidents decides), stores them, and mails the
admin once when one opens and once when it recovers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping

from textback import service

from textback.core import incidents
from textback.core.alerts import one_line
from textback.config import Config
from textback.ops.metrics import Metrics
from textback.core.rules import hours_of
from textback.store import Store

log = logging.getLogger("textback")

INCIDENT_CHECK_SECONDS = 10.0
# The incident check's first store call must answer within this, or the database counts as down.
STORE_ANSWER_SECONDS = 5.0
# Until when AMI events are known to have arrived: the last event, or the last Ping answered
# (events come in order, so none sent before it is missing). The daemon saves it at most every
# few seconds; the next start recovers the calls after it, and `textback status` shows it.
LAST_AMI_EVENT = "last_ami_event_at"
# What `textback status` reads to tell the AMI state of a running daemon.
AMI_LOGGED_IN = "ami_logged_in"
AMI_STATE_SINCE = "ami_state_since"


@dataclass
class Watch:
    """What went wrong lately, as the daemon's parts report it."""

    # Each PBX not listened to, since when (by its incident name: '' for the single form's).
    ami_down_since: dict[str, float] = field(default_factory=dict)
    # Each PBX's last AMI event about a channel, as this daemon saw it (by incident name).
    call_event_at: dict[str, float] = field(default_factory=dict)
    # Each PBX this daemon holds, since when (from the start, then as the incident check sees
    # it take a lease): a PBX taken over is judged from then on, its quiet hours counted from
    # then at the earliest.
    held_since: dict[str, float] = field(default_factory=dict)
    gateway_failures_in_row: int = 0
    gateway_error: str = ""
    expired: str | None = None
    mail_error: str | None = None
    reply_listener_error: str | None = None
    routing_error: str | None = None
    webhook_signing_error: str | None = None
    # Each PBX's AMI answers last waited behind unread events then (by incident name).
    ami_behind_at: dict[str, float] = field(default_factory=dict)
    # Each PBX's calls: the last committed later than LATE_COMMIT_SECONDS after they finished.
    calls_late_at: dict[str, float] = field(default_factory=dict)
    database_down_since: float | None = None  # the store stopped answering the incident check
    database_error: str = ""

    def send_failed(self, error: str) -> None:
        self.gateway_failures_in_row += 1
        self.gateway_error = error

    def send_accepted(self) -> None:
        self.gateway_failures_in_row = 0
        self.expired = None


async def watchdog() -> None:
    """WATCHDOG=1 from the event loop itself: a loop stuck longer than WatchdogSec= is
    killed and restarted by systemd."""
    interval = service.watchdog_interval()
    while True:
        service.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


class IncidentWorker:
    """Incidents from the watch, and the AMI state `textback status` reads, kept in the store."""

    def __init__(self, config: Config, store: Store, metrics: Metrics, watch: Watch,
                 pbx_states: Callable[[], Mapping[str, bool | None]],
                 mail_admin: Callable[[str, str], Awaitable[None]],
                 mail_admin_now: Callable[[str, str], Awaitable[None]]):
        self.config = config
        self.store = store
        self.metrics = metrics
        self.watch = watch
        # Each PBX by its incident name: True listened to by this daemon, False not, None held
        # by another daemon of the fleet (that one observes it).
        self._pbx_states = pbx_states
        self._mail_admin = mail_admin
        # Straight to the relay, no row in the store: while the database does not answer.
        self._mail_admin_now = mail_admin_now
        self._database_down_told = False
        self._ami_state_lock = asyncio.Lock()  # one write of the AMI state at a time

    async def run(self) -> None:
        while True:
            await self.check_incidents(time.time())
            await asyncio.sleep(INCIDENT_CHECK_SECONDS)

    def _observed(self, now: float) -> incidents.Observed:
        """The watch as the core reads it. Only the PBXs this daemon holds are judged: one
        another daemon holds is that daemon's to observe, and what this one saw of it before
        it lost the lease is dropped (it would be judged on a view no longer kept up)."""
        w = self.watch
        views = {}
        for pbx, listened in self._pbx_states().items():
            if listened is False:
                w.ami_down_since.setdefault(pbx, now)
            else:
                w.ami_down_since.pop(pbx, None)
            if listened is None:
                for moments in (w.held_since, w.call_event_at, w.ami_behind_at, w.calls_late_at):
                    moments.pop(pbx, None)
            else:
                w.held_since.setdefault(pbx, now)
            views[pbx] = incidents.PbxView(listened, w.held_since.get(pbx),
                                           w.call_event_at.get(pbx))
        hours = hours_of(self.config)
        quiet = {}
        if hours.windows and self.config.incidents.no_calls_hours is not None:
            for pbx, held_since in w.held_since.items():
                since = max(w.call_event_at.get(pbx, held_since), held_since)
                quiet[pbx] = hours.open_seconds_between(since, now) / 3600
        return incidents.Observed(
            now=now, ami_down_since=dict(w.ami_down_since), quiet_open_hours=quiet,
            gateway_failures_in_row=w.gateway_failures_in_row, gateway_error=w.gateway_error,
            expired=w.expired, mail_error=w.mail_error,
            reply_listener_error=w.reply_listener_error, routing_error=w.routing_error,
            webhook_signing_error=w.webhook_signing_error,
            ami_behind_at={pbx: at for pbx, at in w.ami_behind_at.items() if pbx in w.held_since},
            calls_late_at={pbx: at for pbx, at in w.calls_late_at.items() if pbx in w.held_since},
            pbxs=views, database_down_since=w.database_down_since,
            database_error=w.database_error)

    async def check_incidents(self, now: float) -> None:
        """Open the incidents that began and close those that ended, mailing the admin each time.
        While the store does not answer, the incidents cannot be kept in it: the database's
        own is mailed straight to the relay once it lasts past its bound."""
        try:  # a write that failed when the state changed is made good
            await asyncio.wait_for(self.note_ami_state(), STORE_ANSWER_SECONDS)
        except Exception as exc:  # noqa: BLE001 - whatever the backend raises, it did not answer
            await self._database_not_answering(now, exc)
            return
        await self._database_answers(now)
        seen = self._observed(now)
        under_way = incidents.active(seen, self.config.incidents)
        known = {incidents.Key(row["kind"], row["pbx"]): row
                 for row in await self.store.open_incidents()}
        zone = self.config.business.timezone
        fleet = self.config.storage.backend == "postgresql"
        for key, summary in under_way.items():
            if fleet:
                summary = incidents.seen_on(key, summary, socket.gethostname())
            if key in known or await self.store.open_incident(key.kind, summary, now,
                                                              key.pbx) is None:
                continue  # open already: this daemon's, or one it judges or leaves alone
            log.error("incident: %s: %s", incidents.title(key), summary)
            await self._mail_admin(*incidents.opened_mail(key, summary, now, zone))
        verdict = incidents.judge(
            {key: incidents.Opened(row["opened_at"], row["opened_here"], row["opener_gone"])
             for key, row in known.items()}, under_way, seen, self.config.incidents)
        for key in verdict.adopted:
            if await self.store.adopt_incident(known[key]["id"]):
                log.info("incident taken over (the daemon that opened it is gone): %s",
                         incidents.title(key))
        for key in verdict.ended:
            row = known[key]
            if not await self.store.close_incident(row["id"], now):
                continue
            log.info("incident over: %s (open %.0f min)", incidents.title(key),
                     (now - row["opened_at"]) / 60)
            await self._mail_admin(*incidents.recovered_mail(key, row["summary"],
                                                             row["opened_at"], now, zone))
        self.metrics.incidents_open.set(len(under_way))

    async def _database_not_answering(self, now: float, exc: Exception) -> None:
        w = self.watch
        w.database_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if w.database_down_since is None:
            w.database_down_since = now
            log.error("the database does not answer (%s); the admin is emailed if it lasts "
                      "%g minutes", one_line(w.database_error, 300),
                      self.config.incidents.ami_down_minutes)
        down = incidents.Key("database_down")
        summary = incidents.active(self._observed(now), self.config.incidents).get(down)
        if summary is None or self._database_down_told:
            return
        log.error("incident: %s: %s", incidents.title(down), summary)
        try:
            await self._mail_admin_now(*incidents.opened_mail(
                down, summary, w.database_down_since, self.config.business.timezone))
        except Exception as mail_error:  # noqa: BLE001 - tried again at the next check
            log.error("could not email the admin that the database is down either: %s",
                      one_line(f"{type(mail_error).__name__}: {mail_error}", 300))
            return
        self._database_down_told = True

    async def _database_answers(self, now: float) -> None:
        w = self.watch
        if w.database_down_since is None:
            return
        since, error = w.database_down_since, w.database_error
        w.database_down_since, w.database_error = None, ""
        log.info("the database answers again (it did not for %.0f s)", now - since)
        if self._database_down_told:
            self._database_down_told = False
            await self._mail_admin(*incidents.recovered_mail(
                incidents.Key("database_down"), f"the database did not answer: {one_line(error, 300)}", since,
                now, self.config.business.timezone))

    async def note_ami_state(self) -> None:
        """Keep the AMI state in the store for `textback status`, written only when it changes.

        The state is read as the write begins, under a lock, so writes racing a quick
        login-and-loss leave the latest one in the store.
        """
        async with self._ami_state_lock:
            logged_in = float(all(listened is not False
                                  for listened in self._pbx_states().values()))
            if await self.store.progress(AMI_LOGGED_IN) != logged_in:
                await self.store.note_progress(AMI_LOGGED_IN, logged_in)
                await self.store.note_progress(AMI_STATE_SINCE, time.time())
