"""Workers survive what goes wrong: one bad item is skipped and logged, a dead worker restarted."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from lab.configs import BUSINESS_NUMBER, DANA_AND_BOSS, HOMEOWNER, RING_GROUP_NUMBER
from sms_gateway.base import SendResult
from textback import supervisor
from textback.core.events import REPLY_RECEIVED
from textback.store.media import NewMedia
from textback.supervisor import Supervisor, cancel_and_wait
from textback.workers import owner_mail
from textback.workers.common import SystemClock
from textback.workers.events import Destination, EventWorker
from textback.workers.media import MediaWorker
from tests.cancels import LosesItsFirstCancel


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


@pytest.fixture
def cancel_again_soon(monkeypatch):
    monkeypatch.setattr(supervisor, "CANCEL_AGAIN_SECONDS", 0.05)


async def test_cancel_and_wait_cancels_again_until_the_task_ends(cancel_again_soon):
    work = LosesItsFirstCancel()
    stubborn = asyncio.create_task(work())
    failing = asyncio.create_task(asyncio.sleep(0.01, result=None))
    await work.started.wait()
    await asyncio.wait_for(cancel_and_wait([stubborn, failing]), 5)
    assert len(work.cancels) == 2 and work.ended and stubborn.cancelled()


async def test_cancel_and_wait_cancelled_itself_still_waits_for_its_tasks(cancel_again_soon):
    """A stop that is cancelled in turn (the supervisor cancelling a worker that is stopping
    its own tasks) does not leave those tasks running: it waits, then passes the cancel on."""
    work = LosesItsFirstCancel()
    inner = asyncio.create_task(work())
    await work.started.wait()
    stopping = asyncio.create_task(cancel_and_wait([inner]))
    await asyncio.sleep(0)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(stopping, 5)
    assert work.ended and len(work.cancels) == 2


async def test_a_pbx_listing_that_lost_its_cancel_ends_before_the_stop_goes_on(
        offline_daemon, cancel_again_soon):
    """A channel listing after a dropped AMI message, its action losing the cancel: the
    daemon's stop (`close_timers`) cancels it again and waits, so it never lists or records
    anything once the store closes."""
    daemon = await offline_daemon()
    [pbx] = daemon.pbxs
    action = LosesItsFirstCancel()
    pbx.ami.action = action  # the listing's CoreShowChannels
    pbx.on_ami_dropped("a repeated ActionID")
    await asyncio.wait_for(action.started.wait(), 5)
    await asyncio.wait_for(pbx.close_timers(), 5)
    assert len(action.cancels) == 2 and action.ended


class Stalls:
    """A webhook destination's client or a gateway's media fetcher whose every try is `work`."""

    def __init__(self, work: LosesItsFirstCancel):
        self.deliver = self.fetch = work

    async def close(self) -> None:
        pass


async def stop_once_started(run, work: LosesItsFirstCancel) -> None:
    """Start a worker's `run`, cancel it once `work` is under way: it ends only after `work`,
    which it cancelled twice."""
    running = asyncio.create_task(run())
    await asyncio.wait_for(work.started.wait(), 10)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 5)
    assert len(work.cancels) == 2 and work.ended


async def test_a_webhook_delivery_that_lost_its_cancel_ends_before_the_worker_does(
        offline_daemon, cancel_again_soon):
    daemon = await offline_daemon()
    await daemon.store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "Hello?", "log", None, "dana")
    deliver = LosesItsFirstCancel()
    worker = EventWorker([Destination("crm:stalls", (REPLY_RECEIVED,), Stalls(deliver))], 24,
                         daemon.store, SystemClock(), daemon.mail.tell_admin)
    await stop_once_started(worker.run, deliver)


async def test_a_media_fetch_that_lost_its_cancel_ends_before_the_worker_does(
        offline_daemon, cancel_again_soon):
    daemon = await offline_daemon()
    await daemon.store.record_inbound(
        HOMEOWNER, BUSINESS_NUMBER, "A photo", "stalling", None, "dana",
        media=[NewMedia("https://media.example/1", "image/jpeg")])
    fetch = LosesItsFirstCancel()

    async def tell_owner(*_args) -> None:
        pass

    worker = MediaWorker(daemon.config.media, {"stalling": Stalls(fetch)}, daemon.media_files,
                         daemon.store, SystemClock(), asyncio.Event(), tell_owner,
                         daemon.config.business.timezone)
    await stop_once_started(worker.run, fetch)


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
