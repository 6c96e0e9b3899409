"""Every outbox transition is guarded by its source states (textback/store/states.py): a send
that outlives its claim (its row marked `unknown` as its AMI lease went) never puts the row back
to `pending`, what the gateway said still settles it, and a refused transition is logged."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from lab.configs import base_config, write_config
from lab.harness import SMTP_SINK_PORT
from tests.providers.common import serving
from tests.store_helpers import outbox_states
from tests.test_outbox_outage import Provider, missed_call
from tests.test_store import call
from textback.config import load
from textback.core import consent
from textback.core.fleet import EVERY_SENDER
from textback.daemon import Daemon
from textback.gateways import build_gateway
from textback.store import PlannedText, open_store
from textback.workers.common import SystemClock


@pytest.fixture
async def store(store):
    """The conftest's store on each backend, as a daemon's: its claimer registered, as
    `textback run` does at its start (the rows recovery marks are this claimer's)."""
    await store.register_claimer("this-daemon", 1)
    return store


async def claimed_then_marked_unknown(store, caller: str):
    """A text claimed by this daemon, then marked unknown as sends_stopped does past its bound
    (by the daemon's `store`, whose claimer the test registered)."""
    now = time.time()
    await store.record_call(call(f"g.{caller}", caller), PlannedText("dana", "Hi", now))
    [item] = [item for item in await store.due(now) if item.recipient == caller]
    assert await store.claim_all([item])
    assert await store.recover_interrupted(mine_too=True) == [item.id]
    return item


async def test_a_row_marked_unknown_is_never_pending_again_and_the_refusal_is_logged(store, caplog):
    item = await claimed_then_marked_unknown(store, "+12125550701")
    caplog.set_level(logging.WARNING, "textback")
    assert not await store.mark_retry(item, time.time(), "HTTP 503")
    assert not await store.hold(item, time.time() + 3600, "the homeowner's quiet hours")
    assert await outbox_states(store) == {"unknown": 1}
    assert await store.due(time.time() + 7200) == []
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals == [f"outbox row {item.id}: retry to pending refused: it is unknown, not sending",
                        f"outbox row {item.id}: hold to pending refused: it is unknown, not sending"]
    assert all(r.levelno == logging.WARNING for r in caplog.records if "refused" in r.getMessage())
    message = (await store.thread(item.conversation_id))["messages"][-1]
    assert message["status"] == "unknown"  # not `held`: the refused hold wrote nothing


async def test_what_the_gateway_says_late_settles_a_row_marked_unknown(store):
    accepted = await claimed_then_marked_unknown(store, "+12125550702")
    refused = await claimed_then_marked_unknown(store, "+12125550703")
    await store.mark_all_sent([(accepted, "gw-1")], "http")
    assert await store.mark_final(refused, "failed", "http", "HTTP 400 invalid number")
    assert await outbox_states(store) == {"sent": 1, "failed": 1}
    # The ledger knows the text that went, though its row had been marked unknown.
    ledger = await store.consent_record(accepted.recipient)
    assert [fact["fact"] for fact in ledger if fact["fact"] == consent.TEXT_SENT] == [consent.TEXT_SENT]
    statuses = {m["id"]: m["status"] for m in (await store.thread(refused.conversation_id))["messages"]}
    assert statuses[refused.message_id] == "failed"


async def test_a_row_that_has_ended_is_not_ended_again(store, caplog):
    item = await claimed_then_marked_unknown(store, "+12125550704")
    await store.mark_all_sent([(item, "gw-1")], "http")
    events = [row["id"] for row in await store._all("SELECT id FROM events")]
    caplog.set_level(logging.WARNING, "textback")
    assert not await store.mark_final(item, "failed", "http", "late")
    assert await outbox_states(store) == {"sent": 1}
    # No text.failed for a sent text.
    assert [row["id"] for row in await store._all("SELECT id FROM events")] == events
    assert f"outbox row {item.id}: end to failed refused: it is sent, not sending or unknown" in [
        r.getMessage() for r in caplog.records]


@pytest.fixture
async def outbox_daemon(tmp_path, smtp_sink, backend_storage):
    """A daemon (no AMI) whose outbox worker sends through the generic `http` gateway to a
    loopback provider, its store on each backend in turn."""
    made: list[Daemon] = []

    async def start(url: str) -> Daemon:
        config = base_config(tmp_path, **{
            "smtp.port": SMTP_SINK_PORT, "text.delay_seconds": 0, **backend_storage,
            "gateway": {"type": "http", "http": {"url": f"{url}/send", "timeout_seconds": 5}}})
        daemon = Daemon(load(write_config(tmp_path, config)), clock=SystemClock())
        daemon.attach(await open_store(daemon.config.storage),
                      build_gateway(daemon.config, None, daemon.secrets))
        made.append(daemon)
        return daemon

    yield start
    for daemon in made:
        await daemon.gateway.close()
        await daemon.store.close()


async def test_a_send_that_outruns_sends_stopped_is_not_sent_again_and_its_owner_is_told(
        outbox_daemon, smtp_sink):
    caller = "+12125550705"
    provider = Provider(SystemClock(), work_seconds=1.0, answers=[(503, {})])
    async with serving(provider.app()) as url:
        daemon = await outbox_daemon(url)
        await missed_call(daemon.store, caller, time.time())
        worker = asyncio.create_task(daemon.outbox.run())
        try:
            while provider.in_flight == 0:
                await asyncio.sleep(0.01)
            # The lease went; the send is still under way past the bound: marked unknown.
            [marked] = await daemon.outbox.sends_stopped(EVERY_SENDER, within=0.1,
                                                          how="as its AMI lease went")
            assert await outbox_states(daemon.store) == {"unknown": 1}
            async with asyncio.timeout(10):  # the provider's 503 comes after the bound
                while not smtp_sink.received:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)  # long enough for a retry to be due, were it pending
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    assert provider.refused == 1 and provider.taken == []  # tried once, never again
    row = await daemon.store.outbox_row(marked)
    assert row["state"] == "failed"
    assert "HTTP 503" in row["last_error"] and "marked unknown while being sent" in row["last_error"]
    [mail] = smtp_sink.received
    assert mail.message["Subject"] == f"Call back {caller}: the text to them was not sent"
    assert "HTTP 503" in mail.message.get_content()
    # The send told the owner itself: the next start owes nobody a notice for it.
    assert row["notice_owed"] == 0
    await daemon.store.register_claimer("restarted", 2)
    assert await daemon.store.recover_interrupted() == []
