"""The self-test runner: each step of textback.core.selftest performed for real, on a schedule or
when `textback selftest` asks (a `selftests` row the worker picks up).

An object with explicit dependencies: the test call goes through the daemon's
own AMI connection, tracker, rules, store, outbox and gateway (handed in), so a
pass means the path a real missed call takes works now. Only the Originate uses a connection of its
own, as the optional `selftest.ami` user (write = originate), so the main AMI
user never needs that right.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Awaitable, Callable
from zoneinfo import ZoneInfo

import aiosmtplib

from ami_listener.connection import AmiConnection, AmiError, one_shot
from sms_gateway.base import Gateway
from textback.core.alerts import one_line
from textback.config import Config, Secrets
from textback.core.numbers import caller_name, to_e164
from textback.core.rules import Decision, apply_policy, choose_template, decide, match_number
from textback.core.selftest import (FAIL, PASS, SKIPPED, STEPS, Report, StepResult, complete,
                                    expected_reason, parse_schedule)
from textback.store import CallRow, PlannedText, Store
from textback.core.tracker import CallFinished, CallTracker
from textback.workers.common import SystemClock, clock_text

log = logging.getLogger("textback.core.selftest")
timeline = logging.getLogger("textback.timeline")

# How often the worker looks for a run `textback selftest` asked for.
REQUEST_POLL_SECONDS = 1.0
# The test call must show up in the daemon's AMI events this soon after the Originate.
CALL_SEEN_SECONDS = 10.0
# After the ring time, the call must have ended and been decided within this.
CALL_DECIDED_SECONDS = 15.0
LOGIN_SECONDS = 5.0
# Every self-test text says what it is.
TEXT_PREFIX = "[textback self-test] "
# The reply-mail step: its forger, and the command its genuine reply carries (it texts nobody).
FORGED_SENDER = "selftest-forger@forged.invalid"
SELFTEST_COMMAND = "#lost"
REPLY_TOKEN_SECONDS = 600.0


class StepFailed(Exception):
    """A step's check did not hold; the message says what was found instead."""


@dataclass
class _Run:
    """What one run's steps hand on to the next ones."""

    context: str = ""
    call_id: str = ""
    caller_uniqueid: str = ""
    decided: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    call: CallFinished | None = None
    decision: Decision | None = None
    outbox_id: int | None = None
    conversation_id: int | None = None
    sent_at: float = 0.0


class SelftestRunner:
    """`selftest.schedule` and the runs `textback selftest` requests, one at a time."""

    def __init__(self, config: Config, secrets: Secrets, store: Store, gateway: Gateway,
                 ami: AmiConnection, tracker: CallTracker, clock: SystemClock,
                 wake_outbox: Callable[[], None],
                 mail_notice: Callable[[str, str, str, str], Awaitable[bool]],
                 masked: Callable[[str], str], last_ami_event_at: Callable[[], float | None]):
        self.config = config
        self.secrets = secrets
        self.store = store
        self.gateway = gateway
        self.ami = ami
        self.tracker = tracker
        self.clock = clock
        self._wake_outbox = wake_outbox
        self._mail_notice = mail_notice
        self._masked = masked
        self._last_ami_event_at = last_ami_event_at
        self._selftest_run: _Run | None = None

    def _clock(self, at: float) -> str:
        return clock_text(at, self.config.business.timezone)

    async def run(self) -> None:
        # This runner's own runs too: in a fleet it runs again each time the AMI lease is
        # taken, and a run the lease's loss stopped is over.
        interrupted = await self.store.abandon_selftests(
            abandoned_steps("textback stopped while this self-test ran"), mine_too=True)
        if interrupted:
            log.warning("self-test run(s) %s were interrupted by a stop; recorded as failed",
                        interrupted)
        settings = self.config.selftest
        schedule = parse_schedule(settings.schedule) if settings.schedule else None
        zone = ZoneInfo(self.config.business.timezone)

        def next_run() -> float | None:
            if schedule is None:
                return None
            return schedule.next_after(datetime.fromtimestamp(self.clock.now(), zone)).timestamp()

        next_at = next_run()
        if next_at is not None:
            log.info("next scheduled self-test: %s", self._clock(next_at))
        while True:
            run_id = await self.store.claim_selftest()
            if run_id is None and next_at is not None and self.clock.now() >= next_at:
                next_at = next_run()
                await self.store.request_selftest("schedule")
                continue
            if run_id is None:
                await asyncio.sleep(REQUEST_POLL_SECONDS)
                continue
            await self.run_selftest(run_id)

    async def run_selftest(self, run_id: int) -> Report:
        """Run every step in order, stop at the first that fails; store and mail the report."""
        started = time.time()
        run = self._selftest_run = _Run()
        results: list[StepResult] = []
        try:
            for name, _ in STEPS:
                step: Callable[[_Run], Awaitable[tuple[str, str]]] = getattr(self, f"_step_{name}")
                began = time.monotonic()
                try:
                    status, detail = await step(run)
                except StepFailed as exc:
                    status, detail = FAIL, str(exc)
                except Exception as exc:  # noqa: BLE001 - a broken step is a failed step, reported
                    log.exception("self-test step %s raised", name)
                    status, detail = FAIL, f"{type(exc).__name__}: {exc}"
                results.append(StepResult(name, status, round(time.monotonic() - began, 3),
                                          self._masked(detail)))
                if status == FAIL:
                    break
        finally:
            self._selftest_run = None
            if run.caller_uniqueid:
                self.tracker.forget_selftest(run.caller_uniqueid)
            if run.outbox_id is not None:
                await self.store.cancel_text(run.outbox_id, "the self-test ended before it was sent")
        report = complete(results, started, time.time())
        await self.store.finish_selftest(run_id, report.started_at, report.finished_at,
                                         report.passed, report.steps_json())
        failed = report.failed_step
        if failed is None:
            timeline.info("self-test passed in %.1f s", report.finished_at - started)
        else:
            log.error("self-test FAILED at %s: %s", failed.name, one_line(failed.detail, 300))
        zone = self.config.business.timezone
        await self._mail_notice("textback admin", self.config.admin_email,
                                report.subject(self.config.business.name),
                                report.text(zone, datetime.fromtimestamp(started, ZoneInfo(zone))))
        return report

    # -- the steps: each returns (status, detail) or raises StepFailed -----------------

    async def _step_ami(self, run: _Run) -> tuple[str, str]:
        c = self.config.selftest_pbx().ami
        if not self.ami.logged_in:
            why = self.ami.last_login_error or "not connected"
            raise StepFailed(f"not logged in to AMI at {c.host}:{c.port} as {c.username} ({why})")
        asked = time.monotonic()
        try:
            await self.ami.action({"Action": "Ping"}, timeout=LOGIN_SECONDS)
        except AmiError as exc:
            raise StepFailed(f"logged in, but Ping got no answer: {exc}") from None
        seen = self._last_ami_event_at()
        age = f"; last event {time.time() - seen:.0f} s ago" if seen else ""
        return PASS, (f"logged in to {c.host}:{c.port} as {c.username}; Ping answered in "
                      f"{(time.monotonic() - asked) * 1000:.0f} ms{age}")

    async def _step_trunk(self, run: _Run) -> tuple[str, str]:
        settings = self.config.selftest
        if settings.context:
            run.context = settings.context
            return PASS, f"calling into context {settings.context} (selftest.context)"
        trunk = settings.trunk or self.config.selftest_pbx().inbound.trunks[0]
        try:
            answer = await self.ami.action({"Action": "Getvar",
                                            "Variable": f"PJSIP_ENDPOINT({trunk},context)"})
        except AmiError as exc:
            raise StepFailed(f"could not look up PJSIP endpoint {trunk!r}: {exc}") from None
        context = answer.get("Value") or ""
        if not context or context == "(null)":
            raise StepFailed(f"{trunk!r} is not a PJSIP endpoint on the PBX (check inbound.trunks "
                             f"against `pjsip show endpoints`): calls from it cannot be recognised")
        run.context = context
        return PASS, f"PJSIP endpoint {trunk} delivers calls to context {context}"

    async def _step_call(self, run: _Run) -> tuple[str, str]:
        c, settings = self.config, self.config.selftest
        number = c.selftest_number().number
        caller = settings.caller or settings.recipient
        run.call_id = f"textback-selftest-{uuid.uuid4().hex[:16]}"
        run.caller_uniqueid = run.call_id + "-2"
        pbx = c.selftest_pbx()
        user = settings.ami.username if settings.ami else pbx.ami.username
        secret = self.secrets.selftest_ami if settings.ami else self.secrets.ami_of(pbx.id)
        variables = "TEXTBACK_SELFTEST=1" + (",TEXTBACK_SELFTEST_RING=1" if settings.ring_phones else "")
        self.tracker.expect_selftest(run.caller_uniqueid)
        try:
            await one_shot(pbx.ami.host, pbx.ami.port, user, secret, {
                "Action": "Originate", "Channel": f"Local/{number}@{run.context}/n",
                "Application": "Wait", "Data": f"{settings.ring_seconds:g}",
                "CallerID": f'"textback self-test" <{caller}>',
                "Timeout": str(int(settings.ring_seconds * 1000)), "Variable": variables,
                "ChannelId": run.call_id, "OtherChannelId": run.caller_uniqueid, "Async": "true"},
                use_tls=pbx.ami.tls, tls_verify=pbx.ami.tls_verify, timeout=LOGIN_SECONDS)
        except AmiError as exc:
            hint = (": give it `write = originate` in manager.conf (or set selftest.ami)"
                    if "denied" in str(exc).lower() else "")
            raise StepFailed(f"AMI user {user!r} could not originate the test call: {exc}{hint}") from None
        sent = time.monotonic()
        while not (self.tracker.is_tracking(run.call_id) or run.decided.done()):
            if time.monotonic() - sent > CALL_SEEN_SECONDS:
                raise StepFailed(f"Originate was accepted, but no event of the test call reached the "
                                 f"daemon within {CALL_SEEN_SECONDS:g} s (is {number} an extension "
                                 f"of context {run.context}? does the AMI user read `call`?)")
            await asyncio.sleep(0.02)
        return PASS, (f"{caller} calling {number} in context {run.context} as {user}; its events "
                      f"reached the tracker in {(time.monotonic() - sent) * 1000:.0f} ms")

    async def _step_missed(self, run: _Run) -> tuple[str, str]:
        settings = self.config.selftest
        try:
            call, decision, outbox_id = await asyncio.wait_for(
                asyncio.shield(run.decided), settings.ring_seconds + CALL_DECIDED_SECONDS)
        except asyncio.TimeoutError:
            raise StepFailed("the test call was not decided in time: its hangup never reached "
                             "the tracker") from None
        run.call, run.decision, run.outbox_id = call, decision, outbox_id
        wanted = expected_reason(settings.ring_phones)
        if call.outcome != "missed":
            raise StepFailed(f"the tracker called it {call.outcome} ({call.reason}, by "
                             f"{one_line(call.answered_by or '?')}), not missed")
        if wanted is not None and call.reason != wanted:
            raise StepFailed(f"missed, but with reason {call.reason}, not {wanted} (does the inbound "
                             f"dialplan check TEXTBACK_SELFTEST, as dialplan/textback.conf does?)")
        return PASS, f"missed, reason {call.reason}, after {call.ended_at - call.started_at:.1f} s"

    async def _step_template(self, run: _Run) -> tuple[str, str]:
        call, decision = run.call, run.decision
        if not decision.send:
            raise StepFailed(f"the rules chose no text: {decision.reason}")
        number = match_number(self.config, call.did)
        # What the config's hours say of this moment, whatever the dialplan found.
        _, expected, _ = choose_template(self.config, number,
                                         dataclasses.replace(call, dialplan_hours=""), False)
        if decision.template != expected:
            raise StepFailed(f"the text used template {decision.template!r}, but the business hours "
                             f"say {expected!r} for {self._clock(call.ended_at)} (the dialplan "
                             f"found the business {call.dialplan_hours or 'unknown'}; is the routing "
                             f"table current?)")
        return PASS, f"template {decision.template!r} ({decision.reason})"

    async def _step_gateway(self, run: _Run) -> tuple[str, str]:
        settings = self.config.selftest
        if run.outbox_id is None:
            raise StepFailed("no text was queued")
        self._wake_outbox()
        began = time.monotonic()
        while True:
            row = await self.store.outbox_row(run.outbox_id)
            if row["state"] == "sent":
                run.outbox_id = None  # nothing left to cancel
                run.sent_at = row["updated_at"]
                return PASS, (f"{self.gateway.name} accepted the text to {settings.recipient} in "
                              f"{time.monotonic() - began:.2f} s")
            if row["state"] != "sending" and (row["state"] != "pending" or row["attempts"]):
                raise StepFailed(f"the {self.gateway.name} gateway did not accept the text to "
                                 f"{settings.recipient} ({row['state']}): "
                                 f"{row['last_error'] or 'no error given'}")
            if time.monotonic() - began > settings.gateway_seconds:
                raise StepFailed(f"the text was not handed to the gateway within "
                                 f"{settings.gateway_seconds:g} s")
            await asyncio.sleep(0.05)

    async def _step_reply(self, run: _Run) -> tuple[str, str]:
        settings = self.config.selftest
        if settings.expect_reply_minutes is None:
            return SKIPPED, "selftest.expect_reply_minutes is not set"
        timeline.info("self-test: waiting %g min for a reply from %s",
                      settings.expect_reply_minutes, settings.recipient)
        deadline = time.monotonic() + settings.expect_reply_minutes * 60
        while True:
            replies = await self.store.replies_since(run.conversation_id, run.sent_at)
            if replies and replies[0]["alert_state"] in ("sent", "failed"):
                break
            if time.monotonic() > deadline:
                if replies:
                    raise StepFailed(f"{settings.recipient} replied, but its alert was not mailed "
                                     f"(alert {replies[0]['alert_state'] or 'missing'}): is SMTP up?")
                raise StepFailed(f"no reply from {settings.recipient} within "
                                 f"{settings.expect_reply_minutes:g} min: reply to the self-test's "
                                 f"text from that phone (the gateway's inbound path is untested)")
            await asyncio.sleep(0.2)
        reply = replies[0]
        if reply["alert_state"] != "sent":
            raise StepFailed("the reply came back, but its alert email failed: is SMTP up?")
        return PASS, (f"{settings.recipient} replied {one_line(reply['body'], 60)!r} "
                      f"{reply['created_at'] - run.sent_at:.0f} s after the text; emailed to "
                      f"{reply['alerted']}")

    async def _step_reply_mail(self, run: _Run) -> tuple[str, str]:
        settings = self.config.reply_mail
        if settings is None:
            return SKIPPED, "reply_mail is not configured"
        owner = self.config.owner(self.config.selftest_number().owner)
        token = await self.store.reply_token(run.conversation_id, owner.id, REPLY_TOKEN_SECONDS)
        address = f"reply+{token}@{settings.domain}"
        host = "127.0.0.1" if settings.listen_host in ("", "0.0.0.0", "::") else settings.listen_host
        forged = await self._mail_reply(host, settings.listen_port, address, FORGED_SENDER)
        if forged.startswith("2"):
            raise StepFailed(f"the listener on {host}:{settings.listen_port} accepted a reply from "
                             f"{FORGED_SENDER}, who is not the owner: {forged}")
        genuine = await self._mail_reply(host, settings.listen_port, address, owner.email)
        if not genuine.startswith("2"):
            raise StepFailed(f"the listener on {host}:{settings.listen_port} refused a reply from "
                             f"the owner {owner.email}: {genuine}")
        if not await self.store.outcomes_of(run.conversation_id):
            raise StepFailed(f"the listener answered {genuine}, but the reply's command was not "
                             f"recorded")
        return PASS, (f"{host}:{settings.listen_port} refused {FORGED_SENDER} ({forged}) and took "
                      f"{owner.email}'s reply ({genuine})")

    async def _mail_reply(self, host: str, port: int, address: str, sender: str) -> str:
        """Mail a one-command reply to `address` from `sender`; the listener's answer to it."""
        message = EmailMessage()
        message["From"] = sender
        message["To"] = address
        message["Subject"] = "Re: textback self-test"
        message["Message-ID"] = make_msgid(domain=self.config.reply_mail.domain)
        authserv = self.config.reply_mail.trusted_authserv_id
        if authserv:  # what the business's own MX adds to a genuine reply
            domain = sender.rpartition("@")[2]
            message["Authentication-Results"] = (f"{authserv}; dmarc=pass header.from={domain}; "
                                                 f"spf=pass smtp.mailfrom={domain}")
        message.set_content(f"{SELFTEST_COMMAND}\n")
        try:
            _, answer = await aiosmtplib.send(message, hostname=host, port=port, sender=sender,
                                              recipients=[address], timeout=LOGIN_SECONDS,
                                              start_tls=False, use_tls=False)
        except aiosmtplib.SMTPResponseException as exc:
            return f"{exc.code} {exc.message}"
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return "; ".join(f"{e.code} {e.message}" for e in exc.recipients)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise StepFailed(f"could not reach the reply-mail listener on {host}:{port}: {exc}") from None
        return f"250 {answer}"

    # -- the daemon hands the self-test's call here instead of the usual rules ---------

    async def call_finished(self, call: CallFinished) -> Decision:
        """Decide the self-test's call like any other, but text the recipient at once, with no
        owner, no dedupe and no fraud counting; then hand the result to the waiting run."""
        settings = self.config.selftest
        call = apply_policy(self.config, call)
        decision = decide(self.config, call)
        planned = None
        if decision.send:
            planned = PlannedText("", TEXT_PREFIX + decision.body, time.time(), decision.template)
        region = self.config.selftest_number().region
        row = CallRow(
            linkedid=call.call_id, business_number=decision.business_number,
            caller_raw=call.caller_id, caller=to_e164(call.caller_id, region),
            caller_name=caller_name(call.caller_name, call.caller_id), started_at=call.started_at,
            answered_at=call.answered_at, ended_at=call.ended_at, outcome=call.outcome,
            reason=call.reason, decision=decision.reason, route=call.route, selftest=True)
        outbox_id = await self.store.record_selftest_call(row, settings.recipient, planned)
        timeline.info("self-test call %s: reason %s; %s", call.outcome, call.reason,
                      f"text queued to {settings.recipient}" if outbox_id else decision.reason)
        run = self._selftest_run
        if run is not None and run.call_id == call.call_id and not run.decided.done():
            if outbox_id is not None:
                conversation = await self.store.conversation_for(settings.recipient,
                                                                 decision.business_number)
                run.conversation_id = conversation["id"]
            run.decided.set_result((call, decision, outbox_id))
        elif outbox_id is not None:  # its run is over: nobody waits for this text
            await self.store.cancel_text(outbox_id, "the self-test ended before its call did")
        self._wake_outbox()
        return decision


def abandoned_steps(why: str) -> str:
    """The steps of a run that a stop interrupted, as the store keeps them."""
    return complete([StepResult("ami", FAIL, 0.0, why)], 0.0, 0.0).steps_json()

