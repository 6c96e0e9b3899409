"""Workers survive what goes wrong: one bad item is skipped and logged, a dead worker restarted."""

from __future__ import annotations

import asyncio
import logging
import time

from lab.configs import BUSINESS_NUMBER, DANA_AND_BOSS, HOMEOWNER, RING_GROUP_NUMBER
from sms_gateway.base import SendResult
from textback import supervisor
from textback.supervisor import Supervisor
from textback.workers import owner_mail


async def test_a_worker_that_dies_is_restarted_counted_and_logged(caplog, monkeypatch):
    monkeypatch.setattr(supervisor, "FIRST_RESTART_SECONDS", 0.01)
    runs = []

    async def flaky() -> None:
        runs.append(time.monotonic())
        if len(runs) < 4:
            raise RuntimeError(f"boom {len(runs)}")
        await asyncio.sleep(3600)

    workers = Supervisor()
    workers.start("outbox", flaky)
    for _ in range(200):
        if len(runs) >= 4:
            break
        await asyncio.sleep(0.01)
    await workers.stop()
    assert len(runs) == 4 and workers.restarts["outbox"] == 3
    died = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split(";")[0] for r in died] == ["the outbox worker stopped on an error"] * 3
    assert all(r.exc_info for r in died)


async def test_stop_cancels_again_a_worker_that_lost_its_cancel(monkeypatch):
    """On Python 3.11, asyncio.wait_for (inside psycopg-pool's wait for a connection) can
    swallow a cancel landing as its wait completes; the worker then runs on. Stop sends the
    cancel again instead of waiting for it forever (a shutdown seen to hang that way)."""
    monkeypatch.setattr(supervisor, "CANCEL_AGAIN_SECONDS", 0.05)
    cancels = []

    async def loses_its_first_cancel() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels.append(time.monotonic())
                if len(cancels) > 1:
                    raise
                asyncio.current_task().uncancel()  # as wait_for's lost cancel leaves it

    workers = Supervisor()
    workers.start("notices", loses_its_first_cancel)
    await asyncio.sleep(0.01)
    await asyncio.wait_for(workers.stop(), 5)
    assert len(cancels) == 2


async def test_one_poisoned_text_does_not_stop_the_others_escalating(offline_daemon, smtp_sink, caplog,
                                                                     monkeypatch):
    daemon = await offline_daemon(owners=DANA_AND_BOSS, escalation={
        "backup_owner": "boss", "after_minutes": 10, "reminder_minutes": 30})
    await daemon.store.record_inbound("+12125550177", RING_GROUP_NUMBER, "Hello?", "log", None, "dana")
    await daemon.store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "Anyone there?", "log", None, "dana")
    real_hours_of = owner_mail.hours_of

    def hours_of(config, number):  # whatever goes wrong with one text's number
        if number is not None and number.number == RING_GROUP_NUMBER:
            raise KeyError("a bug met by one text only")
        return real_hours_of(config, number)

    monkeypatch.setattr(owner_mail, "hours_of", hours_of)
    later = time.time() + 11 * 60
    await daemon.mail.escalate(later)
    await daemon.mail.escalate(later + 1)
    [mail] = await asyncio.to_thread(smtp_sink.wait_for, 1, 5)
    assert mail.message["Subject"].startswith(f"Unanswered: text from {HOMEOWNER}")
    failures = [r for r in caplog.records if "escalation worker" in r.getMessage()]
    assert len(failures) == 2 and failures[0].exc_info and not failures[1].exc_info
    assert "failed again; skipped" in failures[1].getMessage()


class FlakyPlugin:
    """A third-party gateway with a bug: it raises for one recipient."""

    name = "flaky"

    def __init__(self, broken_for: str):
        self.broken_for, self.sent = broken_for, []

    async def send(self, text):
        if text.recipient == self.broken_for:
            raise ZeroDivisionError("a bug in the plugin")
        self.sent.append(text.recipient)
        return SendResult.accepted(f"id-{len(self.sent)}")


async def test_a_plugin_that_raises_leaves_that_text_unknown_reported_and_the_rest_flowing(offline_daemon):
    daemon = await offline_daemon(send_with=FlakyPlugin(broken_for="+12125550161"))
    for caller in ("+12125550161", "+12125550162"):
        await daemon.store.queue_test_text(caller, BUSINESS_NUMBER, "dana", "test")
    for item in await daemon.store.claim_all(await daemon.store.due(time.time() + 1)):
        await daemon.outbox.send(item)
    states = dict(await daemon.store._all("SELECT recipient, state FROM outbox"))
    assert states == {"+12125550161": "unknown", "+12125550162": "sent"}
    [notice] = await daemon.store._all("SELECT subject FROM notices")
    assert "+12125550161" in notice["subject"]
