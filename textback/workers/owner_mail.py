"""Email to people: alerts, notices, escalations, digests; each a row claimed before it is mailed.

An object with explicit dependencies (the store, the mailer, the metrics, the watch it reports
mail failures into, the media files and its two wake events); the daemon composes it, and the
other workers mail people through its `notify`, `tell_admin` and `mail_notice`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable
from zoneinfo import ZoneInfo

from textback.core.alerts import (ReplyAlert, ThreadEntry, compose_notice, compose_reply_alert, one_line,
                                  quoted_lines)
from textback.config import Config, OwnerConfig
from textback.core.call_words import call_headline
from textback.core.hours import minutes_waited
from textback.core.media import sent_line, summary
from textback.core.scorecard import render_text
from textback.core.rules import hours_of
from textback.store import Notice, Store
from textback.mailer import Mailer
from textback.mediafiles import MediaStore, alert_attachments
from textback.ops.metrics import Metrics
from textback.core.media import shown_items
from textback.supervisor import ItemFailures
from textback.web.links import link_line, sign_in_link
from textback.workers.common import IDLE_POLL_SECONDS, retry_delay, wait_event
from textback.workers.ops import Watch

log = logging.getLogger("textback")
timeline = logging.getLogger("textback.timeline")

MAX_ALERT_ATTEMPTS = 10  # tries per owner alert or notice before it fails for good
FRAUD_ALERT_INTERVAL = 3600.0  # at most one admin email per fraud guard in this many seconds


def next_daily(now: float, clock: str, zone: ZoneInfo) -> float:
    """The next moment after `now` when the local time is `clock` ('HH:MM')."""
    hour, minute = (int(part) for part in clock.split(":"))
    local = datetime.fromtimestamp(now, zone)
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate.timestamp() <= now:
        candidate = datetime.combine(local.date() + timedelta(days=1), candidate.timetz())
    return candidate.timestamp()




def selftest_admin(config: Config) -> OwnerConfig:
    """Who gets the alert of a reply to a self-test text: the admin, as no owner has it."""
    return OwnerConfig(id="admin", name="textback admin",
                       email=config.admin_email or config.owners[0].email)


class OwnerMail:
    """The alert, notice, escalation and digest workers, and the notices the daemon sends."""

    def __init__(self, config: Config, store: Store, mailer: Mailer, metrics: Metrics,
                 watch: Watch, media_files: MediaStore, alerts_wake: asyncio.Event,
                 notices_wake: asyncio.Event):
        self.config = config
        self.store = store
        self.mailer = mailer
        self.metrics = metrics
        self.watch = watch
        self.media_files = media_files
        self._alerts_wake = alerts_wake  # a committed inbound text's alert
        self._notices_wake = notices_wake
        self._escalation_failures = ItemFailures("escalation")
        self._digest_failures = ItemFailures("digest")
        self._mail_failures = ItemFailures("mail")

    async def notify(self, owner: OwnerConfig, subject: str, text: str,
                      unless_since: float | None = None) -> None:
        if await self.mail_notice(owner.name, owner.email, subject, text, unless_since):
            timeline.info("owner notice queued: %s, %r", owner.email, subject)

    async def tell_admin(self, subject: str, text: str, unless_since: float | None = None) -> None:
        """A notice for whoever runs the installation: admin_email, else the first owner."""
        if self.config.admin_email is not None:
            await self.mail_notice("textback admin", self.config.admin_email, subject, text,
                                   unless_since)
        else:
            await self.notify(self.config.owners[0], subject, text, unless_since)

    async def mail_admin(self, subject: str, text: str) -> None:
        """A notice to admin_email; with none configured, only a warning in the log."""
        admin = self.config.admin_email
        if admin is None:
            log.warning("no admin_email in the configuration: nobody is emailed about %r", subject)
            return
        await self.mail_notice("textback admin", admin, subject, text)

    async def mail_admin_now(self, subject: str, text: str) -> None:
        """Straight to the relay, with no row in the store (no retry, no record): for what the
        admin must learn while the database, which holds the mail queue, does not answer.
        Raises what the relay raised."""
        admin = self.config.admin_email
        if admin is None:
            log.warning("no admin_email in the configuration: nobody is emailed about %r", subject)
            return
        await self.mailer.send(compose_notice(self.mailer.sender, self.config.business.name,
                                              "textback admin", admin, subject, text,
                                              self.mailer.domain))

    async def report_fraud(self, guard: str, report: str, now: float) -> None:
        """Email the admin that a guard tripped, at most once per guard per hour (the log has every
        trip). The notices table is the memory of that hour, so a restart does not reset it."""
        admin = self.config.fraud.alert_email
        if admin is None:
            return
        text = (f"{report}.\n\nNo automatic text goes out while the guard holds. If this is real "
                f"traffic, raise the limits under `fraud` in the configuration. This is the only "
                f"email about {guard} for the next hour; textback's log lists every call it stopped.")
        if await self.mail_notice("textback admin", admin, f"Fraud guard tripped: {guard}", text,
                                   unless_since=now - FRAUD_ALERT_INTERVAL):
            timeline.info("admin notice queued: %s tripped", guard)

    async def mail_notice(self, name: str, address: str, subject: str, text: str,
                           unless_since: float | None = None) -> bool:
        """Commit a short plain-text notice, then try to mail it at once; the notice worker
        retries it with backoff. True once it is queued (committed); False when `unless_since`
        is given and the same notice was already queued since then."""
        notice_id = await self.store.queue_notice(name, address, subject, text, unless_since)
        if notice_id is None:
            return False
        await self.deliver_notice(notice_id)
        self._notices_wake.set()  # after a failed first try, the worker re-reads the next retry time
        return True

    async def run_notices(self) -> None:
        await self._mail_worker("notices", self._notices_wake, self.deliver_notice)

    async def deliver_notice(self, notice_id: int) -> None:
        notice = await self.store.claim_mail("notices", notice_id, time.time())
        if notice is None:
            return  # another worker has it, or it waits for its retry time
        message = compose_notice(self.mailer.sender, self.config.business.name, notice["name"],
                                 notice["address"], notice["subject"], notice["body"],
                                 self.mailer.domain)
        try:
            await self.mailer.send(message)
        except Exception as exc:  # noqa: BLE001 - any mail failure is retried
            await self._mail_failed("notices", notice, f"{type(exc).__name__}: {exc}")
            return
        self._mail_went("notices")
        await self.store.mark_notice(notice_id, "sent")
        timeline.info("notice emailed: %s, %r", notice["address"], notice["subject"])

    async def _mail_failed(self, table: str, row: dict[str, Any], error: str) -> None:
        """Retry a claimed alert or notice with backoff; after MAX_ALERT_ATTEMPTS, fail it loudly."""
        what = {"alerts": "owner alert", "notices": "notice"}[table]
        self.metrics.mail_failed.labels(table).inc()
        self.watch.mail_error = f"the relay {self.config.smtp.host} did not take a {what}: {error}"
        if row["attempts"] >= MAX_ALERT_ATTEMPTS:
            if table == "alerts":
                await self.store.mark_alert(row["id"], "failed", error=error)
            else:
                await self.store.mark_notice(row["id"], "failed", error)
            log.error("%s %d failed for good after %d attempts: %s", what, row["id"],
                      row["attempts"], error)
            return
        delay = retry_delay(row["attempts"])
        await self.store.retry_mail(table, row["id"], time.time() + delay, error)
        log.warning("%s %d not sent (%s); retry %d in %.0f s", what, row["id"], error,
                    row["attempts"], delay)

    def _mail_went(self, table: str) -> None:
        self.metrics.mail_sent.labels(table).inc()
        self.watch.mail_error = None

    async def _mail_worker(self, table: str, wake: asyncio.Event,
                           deliver: Callable[[int], Awaitable[None]]) -> None:
        """Mail the due rows of `table` whenever woken, at the next retry time, or every poll."""
        while True:
            wake.clear()
            for row_id in await self.store.due_mail(table, time.time()):
                try:
                    await deliver(row_id)
                except Exception:  # noqa: BLE001 - one email must not stop the others
                    self._mail_failures.failed((table, row_id), f"{table} row {row_id}")
            next_retry = await self.store.next_mail_retry(table)
            wait = IDLE_POLL_SECONDS if next_retry is None else next_retry - time.time()
            await wait_event(wake, min(max(0.1, wait), IDLE_POLL_SECONDS))

    async def run_escalation(self) -> None:
        """Email the backup owner about homeowner texts nobody has answered in time."""
        while True:
            await self.escalate(time.time())
            await asyncio.sleep(min(30.0, self.config.escalation.after_minutes * 60 / 4))

    async def escalate(self, now: float) -> None:
        settings = self.config.escalation
        backup = self.config.owner(settings.backup_owner)
        # Only texts older than after_minutes of clock time can have waited long enough, and
        # only those not yet escalated as often as they can be (once, or twice with a reminder).
        most = 1 if settings.reminder_minutes is None else 2
        for waiting in await self.store.waiting_replies(
                now, now - settings.after_minutes * 60, most):
            try:
                await self._escalate_one(waiting, backup, now)
            except Exception:  # noqa: BLE001 - one text must not hold up the others
                self._escalation_failures.failed(waiting["message_id"],
                                                 f"escalating message {waiting['message_id']}")

    async def _escalate_one(self, waiting: dict[str, Any], backup: OwnerConfig, now: float) -> None:
        settings = self.config.escalation
        hours = hours_of(self.config, self.config.number(waiting["business_number"]))
        counted = hours if hours.windows and not settings.after_hours else None
        level = waiting["escalated"] + 1
        if level > 2 or minutes_waited(counted, waiting["created_at"], now) < settings.after_minutes:
            return
        if level == 2 and (settings.reminder_minutes is None or minutes_waited(
                counted, waiting["escalated_at"], now) < settings.reminder_minutes):
            return
        minutes = (now - waiting["created_at"]) / 60
        what = "Reminder: still unanswered" if level == 2 else "Unanswered"
        notice = Notice(
            backup.name, backup.email, f"{what}: text from {waiting['caller']} ({minutes:.0f} min)",
            f"{waiting['caller']} texted {waiting['business_number']} {minutes:.0f} minutes ago "
            f"and nobody has answered yet. The conversation belongs to "
            f"{waiting['owner_id']}.\n\nTheir text:\n    {one_line(waiting['listed'], 500)}\n\n"
            f"Answer with: textback reply {waiting['caller']} \"...\"  or call them back."
            + "\n".join(await self._inbox_link_lines(backup.id, waiting["conversation_id"])))
        # The escalation's row and its notice are one commit: never one without the other.
        notice_id = await self.store.record_escalation(waiting["message_id"], level,
                                                       backup.id, notice)
        if notice_id is None:
            return  # another worker escalated it first
        await self.deliver_notice(notice_id)
        timeline.info("escalated the text from %s to %s (level %d)", waiting["caller"],
                      backup.id, level)

    async def run_digest(self) -> None:
        zone = ZoneInfo(self.config.business.timezone)
        while True:
            now = time.time()
            await asyncio.sleep(max(1.0, next_daily(now, self.config.digest.daily_at, zone) - now))
            await self.send_digest(time.time())

    async def send_digest(self, now: float) -> None:
        """Each owner's waiting conversations (those of the reported window,
        textback/core/waiting.py); on the 1st, last month's scorecard too."""
        zone = ZoneInfo(self.config.business.timezone)
        waiting: dict[str, list[dict[str, Any]]] = {}
        for row in await self.store.waiting_replies(now):
            waiting.setdefault(row["owner_id"], []).append(row)
        for owner_id, rows in sorted(waiting.items()):
            lines = [f"{len(rows)} homeowner text(s) still wait for an answer:", ""]
            for row in sorted(rows, key=lambda r: r["created_at"]):
                when = datetime.fromtimestamp(row["created_at"], zone).strftime("%a %d %b %H:%M")
                lines.append(f"  {when}  {row['caller']}: {one_line(row['listed'], 120)}")
            lines += ["", "Answer by replying to their alert email, or: textback reply NUMBER \"...\""]
            try:
                lines += await self._inbox_link_lines(owner_id, None)
                await self.notify(self.config.owner(owner_id),
                                   f"{len(rows)} text(s) waiting for an answer", "\n".join(lines))
            except Exception:  # noqa: BLE001 - one owner's digest must not stop the others'
                self._digest_failures.failed(owner_id, f"the digest for {owner_id}")
        local = datetime.fromtimestamp(now, zone)
        recipients = self.config.digest.monthly_report_to
        if local.day == 1 and recipients:
            end = local.replace(hour=0, minute=0, second=0, microsecond=0)
            start = (end - timedelta(days=1)).replace(day=1)
            label = f"{start:%Y-%m}"
            cards = await self.store.scorecard(start.timestamp(), end.timestamp(), label)
            text = render_text(cards, label, self.config.business.timezone)
            for owner_id in recipients:
                await self.notify(self.config.owner(owner_id), f"textback scorecard {label}", text)

    async def _inbox_link_lines(self, owner_id: str, conversation_id: int | None) -> list[str]:
        """With a `web:` section: the lines of an email that sign its owner in to the inbox."""
        if self.config.web is None:
            return []
        link = await sign_in_link(self.store, self.config.web, owner_id, conversation_id)
        return ["", link_line(link, self.config.web)]

    async def run_alerts(self) -> None:
        await self._mail_worker("alerts", self._alerts_wake, self._deliver_alert)

    async def _deliver_alert(self, alert_id: int) -> None:
        alert = await self.store.claim_mail("alerts", alert_id, time.time())
        if alert is None:
            return  # another worker has it, or it waits for its retry time
        if await self._waits_for_media(alert):
            return
        try:
            await self._send_alert(alert)
        except Exception as exc:  # noqa: BLE001 - any mail failure is retried
            await self._mail_failed("alerts", alert, f"{type(exc).__name__}: {exc}")

    async def _waits_for_media(self, alert: dict[str, Any]) -> bool:
        """An alert for a text whose photos are still being fetched waits for them, at most
        media.alert_wait_seconds after the text: the owner gets the photos in the email, and a
        provider that is slow to serve them never holds a lead back for long. The media worker
        brings the alert forward as soon as the last one is kept or given up."""
        waiting = await self.store.media_unsettled(alert["message_id"])
        if not waiting:
            return False
        until = waiting["created_at"] + self.config.media.alert_wait_seconds
        if time.time() >= until:
            return False
        await self.store.defer_alert(alert["id"], until)
        return True

    async def _send_alert(self, alert: dict[str, Any]) -> None:
        conversation = await self.store.conversation(alert["conversation_id"])
        selftest = bool(conversation["selftest"])
        owner = selftest_admin(self.config) if selftest else self.config.owner(conversation["owner_id"])
        if not selftest and "email" not in owner.alerts.chosen(
                await self.store.alert_channels(owner.id)):
            # The owner hears of replies by push or text only. The row ends as skipped, not
            # sent: the thread says why no email went; the conversation stays unread and
            # unanswered, so escalation and the digest (both by email) still find it.
            await self.store.mark_alert(alert["id"], "skipped", owner.email,
                                        error=f"not emailed: {owner.id} chose no alert emails")
            timeline.info("no alert email to %s: they chose no alert emails", owner.id)
            return
        history = await self.store.conversation_history(alert["conversation_id"])
        reply = next(m for m in history["messages"] if m["id"] == alert["message_id"])
        entries = [_call_entry(call) for call in history["calls"]]
        shown = await self.store.media_of(m["id"] for m in history["messages"]
                                          if m["direction"] == "in")
        entries += [ThreadEntry(m["created_at"] if m["direction"] == "in" else
                                (m["sent_at"] or m["created_at"]),
                                "text_in" if m["direction"] == "in" else "text_out",
                                summary(m["body"], shown_items(shown.get(m["id"], ())))
                                if m["direction"] == "in" else m["body"])
                    for m in history["messages"] if m["created_at"] <= reply["created_at"]]
        entries.sort(key=lambda e: e.at)
        contact = self.config.contact(conversation["caller"])
        caller_name = (contact.name if contact and contact.name else conversation["contact_name"]
                       or next((c["caller_name"] for c in reversed(history["calls"])
                                if c["caller_name"]), ""))
        link = (await sign_in_link(self.store, self.config.web, owner.id, conversation["id"])
                if self.config.web is not None else None)
        link_text = link_line(link, self.config.web) if link else ""
        attached = await asyncio.to_thread(alert_attachments, self.media_files,
                                           shown[reply["id"]],
                                           self.config.media.alert_attachment_bytes)
        facts = ReplyAlert(
            business_name=self.config.business.name, timezone=self.config.business.timezone,
            owner_name=owner.name, owner_email=owner.email, sender=self.mailer.sender,
            caller=conversation["caller"], caller_name=caller_name,
            business_number=conversation["business_number"], reply=reply["body"],
            entries=tuple(entries), media_line=sent_line(shown_items(shown[reply["id"]])),
            attachments=attached.files, media_left_out=attached.left_out,
            intake_labels=conversation["intake_labels"])
        reply_to = None
        if self.config.reply_mail is not None and not selftest:  # a self-test has nobody to answer
            settings = self.config.reply_mail
            token = await self.store.reply_token(conversation["id"], owner.id,
                                                 settings.token_days * 86400,
                                                 quoted_lines(facts, link, link_text))
            reply_to = f"reply+{token}@{settings.domain}"
        message = compose_reply_alert(facts, self.mailer.domain, reply_to, link, link_text)
        await self.mailer.send(message)
        self._mail_went("alerts")
        self.metrics.reply_to_alert.observe(max(0.0, time.time() - reply["created_at"]))
        await self.store.mark_alert(alert["id"], "sent", owner.email, message["Subject"])
        timeline.info("owner emailed: %s, subject %r", owner.email, message["Subject"])


def _call_entry(call: dict[str, Any]) -> ThreadEntry:
    """A call in an alert's thread, in the words the inbox uses for it."""
    headline, detail = call_headline(call["outcome"], call["reason"], call["decision"] or "")
    return ThreadEntry(call["started_at"], "call", detail, headline)
