"""The operations workers: systemd's watchdog, and incidents mailed to the admin.

Part of the Daemon (a mixin): it uses the daemon's store, AMI connection,
config, metrics and `_mail_notice`. The daemon's other parts report what
goes wrong into `self.watch`; the incident worker turns that into incidents
(textback.incidents decides), stores them, and mails the admin once when one
opens and once when it recovers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from textback import incidents, service
from textback.rules import hours_of

log = logging.getLogger("textback")

INCIDENT_CHECK_SECONDS = 10.0
# What `textback status` reads to tell the AMI state of a running daemon.
AMI_LOGGED_IN = "ami_logged_in"
AMI_STATE_SINCE = "ami_state_since"


@dataclass
class Watch:
    """What went wrong lately, as the daemon's parts report it."""

    started_at: float
    call_event_at: float | None = None  # the last AMI event about a channel
    ami_down_since: float | None = None
    gateway_failures_in_row: int = 0
    gateway_error: str = ""
    expired: str | None = None
    mail_error: str | None = None
    reply_listener_error: str | None = None
    routing_error: str | None = None
    webhook_signing_error: str | None = None

    def send_failed(self, error: str) -> None:
        self.gateway_failures_in_row += 1
        self.gateway_error = error

    def send_accepted(self) -> None:
        self.gateway_failures_in_row = 0
        self.expired = None


class OpsWorkers:
    async def _watchdog_worker(self) -> None:
        """WATCHDOG=1 from the event loop itself: a loop stuck longer than WatchdogSec= is
        killed and restarted by systemd."""
        interval = service.watchdog_interval()
        while True:
            service.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _incident_worker(self) -> None:
        while True:
            await self.check_incidents(time.time())
            await asyncio.sleep(INCIDENT_CHECK_SECONDS)

    def _observed(self, now: float) -> incidents.Observed:
        w = self.watch
        logged_in = self.ami is not None and self.ami.logged_in
        if logged_in:
            w.ami_down_since = None
        elif w.ami_down_since is None:
            w.ami_down_since = now
        hours = hours_of(self.config)
        quiet = None
        if hours.windows:
            quiet = hours.open_seconds_between(w.call_event_at or w.started_at, now) / 3600
        return incidents.Observed(
            now=now, ami_down_since=w.ami_down_since, quiet_open_hours=quiet,
            gateway_failures_in_row=w.gateway_failures_in_row, gateway_error=w.gateway_error,
            expired=w.expired, mail_error=w.mail_error,
            reply_listener_error=w.reply_listener_error, routing_error=w.routing_error,
            webhook_signing_error=w.webhook_signing_error)

    async def check_incidents(self, now: float) -> None:
        """Open the incidents that began and close those that ended, mailing the admin each time."""
        seen = self._observed(now)
        await self._note_ami_state()  # a write that failed when the state changed is made good
        under_way = incidents.active(seen, self.config.incidents)
        known = {row["kind"]: row for row in await self.store.open_incidents()}
        zone = self.config.business.timezone
        for kind, summary in under_way.items():
            if kind in known or await self.store.open_incident(kind, summary, now) is None:
                continue
            log.error("incident: %s: %s", incidents.TITLES[kind], summary)
            await self._mail_admin(*incidents.opened_mail(kind, summary, now, zone))
        for kind, row in known.items():
            if kind in under_way or not await self.store.close_incident(row["id"], now):
                continue
            log.info("incident over: %s (open %.0f min)", incidents.TITLES[kind],
                     (now - row["opened_at"]) / 60)
            await self._mail_admin(*incidents.recovered_mail(kind, row["summary"],
                                                             row["opened_at"], now, zone))
        self.metrics.incidents_open.set(len(under_way))

    def _ami_state_changed(self, logged_in: bool) -> None:
        """The AMI connection logged in or lost its link: `textback status` reads it at once
        (runs on the loop, as the connection's callback: the write is a task)."""
        self._spawn(self._note_ami_state())

    async def _note_ami_state(self) -> None:
        """Keep the AMI state in the store for `textback status`, written only when it changes.

        The state is read as the write begins, under a lock, so writes racing a quick
        login-and-loss leave the latest one in the store.
        """
        async with self._ami_state_lock:
            logged_in = float(self.ami is not None and self.ami.logged_in)
            if await self.store.progress(AMI_LOGGED_IN) != logged_in:
                await self.store.note_progress(AMI_LOGGED_IN, logged_in)
                await self.store.note_progress(AMI_STATE_SINCE, time.time())

    async def _mail_admin(self, subject: str, text: str) -> None:
        admin = self.config.admin_email
        if admin is None:
            log.warning("no admin_email in the configuration: nobody is emailed about %r", subject)
            return
        await self._mail_notice("textback admin", admin, subject, text)
