"""Expiry runs on every daemon of a fleet (the outbox expires every text past its deadline,
whoever may send it): daemons expiring at once on one PostgreSQL mail the owner once per text."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from lab.configs import BUSINESS_NUMBER
from sms_gateway.log import LogGateway
from tests.store_helpers import outbox_states
from textback.store import CallRow, PlannedText

DAEMONS = 3
TEXTS = 40


async def test_daemons_expiring_at_once_mail_the_owner_once_per_text(
        offline_daemon, postgres_server, postgres_template, smtp_sink):
    url = postgres_server.new_database(template=postgres_template,
                                       owner=postgres_server.daemon_role())
    daemons = [await offline_daemon(send_with=LogGateway(), **{"storage.url": url})
               for _ in range(DAEMONS)]
    two_hours_ago = time.time() - 7200  # past text.max_age_minutes (60) for every text
    callers = [f"+1212555{n + 800:04d}" for n in range(TEXTS)]
    for n, caller in enumerate(callers):
        await daemons[0].store.record_call(
            CallRow(f"exp.{n}", BUSINESS_NUMBER, caller, caller, "", two_hours_ago - 30, None,
                    two_hours_ago, "missed", "no_answer", "missed_call_text"),
            PlannedText("dana", f"Sorry we missed you {n}", two_hours_ago))
    # Every daemon's outbox starts at once: each first expires what is past its deadline.
    workers = [asyncio.create_task(daemon.outbox.run()) for daemon in daemons]
    try:
        async with asyncio.timeout(90):  # a loaded machine: the assertion is the count
            while len(smtp_sink.received) < TEXTS:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # time for a second email about any text, were one to come
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    subjects = Counter(mail.message["Subject"] for mail in smtp_sink.received)
    assert subjects == Counter({f"Call back {caller}: the text to them was not sent": 1
                                for caller in callers})
    assert await outbox_states(daemons[0].store) == {"expired": TEXTS}
    notices = await daemons[0].store._all("SELECT subject FROM notices")
    assert len(notices) == TEXTS
