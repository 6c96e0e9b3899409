"""A text recovery marks `unknown` (its daemon stopped mid-send) reaches a person: its owner is
emailed, through the real SMTP sink, once per text, that it may or may not have gone, and the
text is never sent again. At a start on each backend; on PostgreSQL, a gone daemon's claim swept
by two survivors at once still makes one notice. A daemon that dies between marking a text and
telling its owner leaves the notice owed: the next start gives it."""

from __future__ import annotations

import asyncio
import time

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from lab.harness import SMTP_SINK_PORT
from tests.store_helpers import outbox_states
from tests.test_fleet_recovery import kill_claimer
from tests import test_outbox_guards
from tests.test_outbox_outage import missed_call
from textback.config import load
from textback.daemon import STOPPED, Daemon
from textback.gateways import build_gateway
from textback.store import CallRow, PlannedText
from textback.store.postgres import PostgresStore
from textback.workers.recovery import ClaimRecovery

outbox_daemon = test_outbox_guards.outbox_daemon  # the fixture: a daemon on each backend in turn

# No provider answers here: a text sent again would fail to connect and show in the rows.
NOWHERE = "http://127.0.0.1:9"


async def test_texts_left_sending_at_a_start_are_marked_unknown_and_each_owner_told_once(
        outbox_daemon, smtp_sink):
    caller, selftest_phone = "+12125550801", "+12125550802"
    daemon = await outbox_daemon(NOWHERE)
    now = time.time()
    await missed_call(daemon.store, caller, now)
    # A self-test's text has no owner: the self-test's own report names its failure.
    await daemon.store.record_selftest_call(
        CallRow("selftest-1", BUSINESS_NUMBER, selftest_phone, selftest_phone, "", now - 20,
                None, now, "missed", "no_answer", "missed_call_text"),
        selftest_phone, PlannedText("", "textback self-test", now))
    # A daemon claimed them and died mid-send: claimed by no claimer alive now.
    assert len(await daemon.store.claim_all(await daemon.store.due(time.time()))) == 2
    await daemon.store.register_claimer("restarted", 1)

    # What `textback run` does at a start (Daemon.serve), twice: a second start finds nothing.
    for _ in range(2):
        await daemon.outbox.report_interrupted(await daemon.store.recover_interrupted(), STOPPED)

    assert await outbox_states(daemon.store) == {"unknown": 2}
    assert await daemon.store.due(time.time() + 7200) == []  # never sent again
    [mail] = smtp_sink.received
    assert mail.message["Subject"] == f"Call back {caller}: the text to them may not have been sent"
    body = mail.message.get_content()
    assert "may or may not have reached them" in body and "Please call them back." in body
    assert "textback stopped while it was being sent" in body


async def test_a_daemon_that_died_between_marking_a_text_and_telling_its_owner_owes_the_notice(
        outbox_daemon, smtp_sink):
    caller = "+12125550803"
    daemon = await outbox_daemon(NOWHERE)
    await missed_call(daemon.store, caller, time.time())
    [item] = await daemon.store.claim_all(await daemon.store.due(time.time()))
    await daemon.store.register_claimer("restarted", 1)  # the sending daemon died
    # A start marks the text unknown, and dies before it queues the owner's notice.
    assert await daemon.store.recover_interrupted() == [item.id]
    assert (await daemon.store.outbox_row(item.id))["notice_owed"] == 1
    assert smtp_sink.received == []

    await daemon.store.register_claimer("restarted again", 2)
    for _ in range(2):  # the next start tells the owner; the one after it, nobody
        await daemon.outbox.report_interrupted(await daemon.store.recover_interrupted(), STOPPED)

    [mail] = smtp_sink.received
    assert mail.message["Subject"] == f"Call back {caller}: the text to them may not have been sent"
    assert (await daemon.store.outbox_row(item.id))["notice_owed"] == 0
    assert await outbox_states(daemon.store) == {"unknown": 1}


async def test_a_gone_daemons_text_swept_by_two_daemons_at_once_makes_one_notice(
        tmp_path, smtp_sink, postgres_server, postgres_template):
    url = postgres_server.new_database(template=postgres_template)
    callers = [f"+1212555090{i}" for i in range(3)]
    daemons: list[Daemon] = []
    doomed = await PostgresStore.open(url)
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            config = base_config(tmp_path / name, **{
                "smtp.port": SMTP_SINK_PORT, "text.delay_seconds": 0,
                "gateway": {"type": "http", "http": {"url": f"{NOWHERE}/send"}}})
            made = Daemon(load(write_config(tmp_path / name, config)))
            made.attach(await PostgresStore.open(url),
                        build_gateway(made.config, None, made.secrets))
            await made.store.register_claimer(name, len(daemons) + 1)
            daemons.append(made)
        doomed_id = await doomed.register_claimer("c", 3)
        for caller in callers:
            await missed_call(doomed, caller, time.time())
        assert len(await doomed.claim_all(await doomed.due(time.time()))) == len(callers)
        kill_claimer(url, doomed_id)  # the daemon sending them dies

        await asyncio.gather(*(ClaimRecovery(made.store, made.config.company.id, 0,
                                             report_unknown=made.outbox.report_interrupted).sweep()
                               for made in daemons for _ in range(2)))

        assert await outbox_states(daemons[0].store) == {"unknown": len(callers)}
        subjects = sorted(mail.message["Subject"] for mail in smtp_sink.received)
        assert subjects == [f"Call back {caller}: the text to them may not have been sent"
                            for caller in sorted(callers)]
    finally:
        for made in daemons:
            await made.gateway.close()
            await made.store.close()
        await doomed.close()
