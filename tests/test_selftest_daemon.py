"""The self-test's schedule and its command, on a daemon with a real store and SMTP sink, and
no PBX: a run without AMI fails at its first step, is stored, and is mailed to the admin."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
from click.testing import CliRunner

from lab.configs import base_config, write_config
from lab.harness import SMTP_SINK_PORT, eventually, in_process
from tests.hooks_receiver import Receiver, endpoint, new_secret, schemas
from tests.providers.common import serving
from textback.cli import main
from textback.config import load
from textback.daemon import Daemon
from textback.core.events import rfc3339
from textback.store import Store
from textback.workers.common import SystemClock

ADMIN = "it@acme.example"
DOC = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"
NEW_YORK = ZoneInfo("America/New_York")


class ShiftedClock(SystemClock):
    """The wall clock, `offset` seconds on: the schedule's moment comes when the test wants."""

    def __init__(self, offset: float):
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


def selftest_config(tmp_path, **selftest):
    return write_config(tmp_path, base_config(
        tmp_path, admin_email=ADMIN, **{"smtp.port": SMTP_SINK_PORT, "ami.port": 1,
                                       "selftest": {"recipient": "+12125550177", **selftest}}))


async def test_the_schedule_runs_the_selftest_and_mails_the_admin_where_it_failed(
        tmp_path, smtp_sink):
    # The clock reads 2 s before the next whole minute; the schedule names that minute.
    target = (datetime.now(NEW_YORK) + timedelta(minutes=2)).replace(second=0, microsecond=0)
    offset = (target - timedelta(seconds=2)).timestamp() - time.time()
    path = selftest_config(tmp_path, schedule=f"daily {target:%H:%M}")
    daemon = Daemon(load(path), clock=ShiftedClock(offset))
    async with in_process(daemon):
        last = await eventually(daemon.store.last_selftest, 15, "the scheduled self-test")
        # The report is mailed after the run is stored: wait for it while the daemon runs.
        (mail,) = await asyncio.to_thread(smtp_sink.wait_for, 1, 10)
    assert (last["trigger"], last["passed"]) == ("schedule", 0)
    steps = json.loads(last["steps"])
    assert [s["status"] for s in steps] == ["fail"] + ["not run"] * 7
    assert "not logged in to AMI at 127.0.0.1:1 as textback" in steps[0]["detail"]
    assert mail.recipients == [ADMIN]
    assert mail.message["Subject"] == "textback self-test FAILED at ami (Acme Remodeling)"
    assert "NOT RUN" in mail.message.get_content()


async def run_left_running(path, trigger: str) -> int:
    """A run the daemon had claimed when it stopped: still `running` in the store."""
    store = await Store.open(load(path).config.storage.path)
    try:
        run_id = await store.request_selftest(trigger)
        assert await store.claim_selftest() == run_id
    finally:
        await store.close()
    return run_id


async def test_a_run_a_stop_interrupted_is_recorded_as_failed_at_the_next_start(tmp_path, smtp_sink):
    path = selftest_config(tmp_path)
    run_id = await run_left_running(path, "command")
    daemon = Daemon(load(path))
    async with in_process(daemon):
        last = await eventually(daemon.store.last_selftest, 5, "the interrupted run to be closed")
    assert (last["id"], last["passed"], last["state"]) == (run_id, 0, "done")
    assert "textback stopped while this self-test ran" in last["steps"]


def test_the_command_needs_a_running_daemon_and_a_selftest_section(tmp_path):
    result = CliRunner().invoke(main, ["selftest", "-c", str(selftest_config(tmp_path))])
    assert result.exit_code == 1 and "no `textback run` is using this database" in result.output
    plain = write_config(tmp_path, base_config(tmp_path), "plain.yaml")
    result = CliRunner().invoke(main, ["selftest", "-c", str(plain)])
    assert result.exit_code == 2 and "no `selftest` section" in result.output


async def test_a_selftest_call_and_its_reply_count_nowhere(store):
    from textback.store import CallRow, PlannedText

    now = time.time()
    call = CallRow("st-1", "+12125550100", "+12125550123", "+12125550123", "", now - 5, None, now,
                   "missed", "not_dialled", "missed_call_text")
    outbox_id = await store.record_selftest_call(
        call, "+12125550177", PlannedText("", "[textback self-test] Hi", now, "missed_call"))
    record = await store.record_inbound("+12125550177", "+12125550100", "Got it", "http", "g-1",
                                        owner_for_new="dana")
    assert not record.duplicate  # the reply joins the self-test's conversation, still ownerless
    conversation = await store.conversation(record.conversation_id)
    assert (conversation["selftest"], conversation["owner_id"]) == (1, "")
    assert await store.waiting_replies(now + 3600) == []  # no escalation, no digest
    assert await store.inbox() == []
    assert (await store.sender_facts("+12125550123", "+12125550100")).turn == 0  # no round-robin turn
    rows = await store.report_rows(0, now + 3600)
    assert rows["calls"] == [] and rows["messages"] == []
    assert [r["body"] for r in await store.replies_since(record.conversation_id, now - 1)] == ["Got it"]
    # A text its run no longer waits for is ended, once.
    assert await store.cancel_text(outbox_id, "the self-test ended") is True
    assert (await store.outbox_row(outbox_id))["state"] == "failed"
    assert await store.cancel_text(outbox_id, "again") is False


async def test_the_last_selftest_is_the_latest_finished_run(store):
    assert await store.last_selftest() is None
    first = await store.request_selftest("schedule")
    second = await store.request_selftest("command")
    assert await store.claim_selftest() == first  # oldest first
    await store.finish_selftest(first, 1.0, 2.0, True, "[]")
    assert await store.claim_selftest() == second
    assert (await store.last_selftest())["id"] == first  # the running one is not a result
    await store.finish_selftest(second, 3.0, 4.0, False, "[]")
    last = await store.last_selftest()
    assert (last["id"], last["passed"], last["started_at"], last["finished_at"]) == (
        second, 0, 3.0, 4.0)
    assert await store.claim_selftest() is None


async def test_each_finished_run_is_a_selftest_finished_event_for_endpoints_that_list_it(
        tmp_path, smtp_sink):
    """The run a stop interrupted and a run of `textback selftest`: each a signed event that
    matches the schema in docs/webhooks.md; an endpoint with the default events gets neither."""
    monitor, crm = Receiver(new_secret()), Receiver(new_secret())
    async with serving(monitor.app()) as monitor_url, serving(crm.app()) as crm_url:
        path = write_config(tmp_path, base_config(
            tmp_path, admin_email=ADMIN, **{
                "smtp.port": SMTP_SINK_PORT, "ami.port": 1,
                "selftest": {"recipient": "+12125550177"},
                "webhooks": {"endpoints": [
                    endpoint(tmp_path, "monitor", f"{monitor_url}/hook", monitor.secret,
                             events=["selftest.finished"]),
                    endpoint(tmp_path, "crm", f"{crm_url}/hook", crm.secret)]}}))
        interrupted = await run_left_running(path, "schedule")
        daemon = Daemon(load(path))
        async with in_process(daemon):
            result = await asyncio.to_thread(CliRunner().invoke, main, ["selftest", "-c", str(path)])
            assert result.exit_code == 1 and "FAILED" in result.output, result.output

            async def both_delivered():
                return len(monitor.deliveries) == 2
            await eventually(both_delivered, 15, "two selftest.finished events")
            log = await daemon.store.delivery_log()
            run = await daemon.store.selftest_run(monitor.deliveries[1].event["data"]["run_id"])
    assert monitor.forged == [] and crm.seen == []
    assert {row["endpoint"] for row in log} == {"monitor"}
    published = schemas(DOC)
    first, second = (d.event for d in monitor.deliveries)
    for event in (first, second):
        jsonschema.Draft202012Validator(published["selftest.finished"]).validate(event)
    assert (first["data"]["run_id"], first["data"]["trigger"]) == (interrupted, "schedule")
    assert first["data"]["steps"][0]["detail"] == "textback stopped while this self-test ran"
    data = second["data"]
    assert (data["trigger"], data["passed"], data["failed_step"]) == ("command", False, "ami")
    assert data["steps"] == json.loads(run["steps"])
    assert data["finished_at"] == rfc3339(run["finished_at"])
    assert [s["status"] for s in data["steps"]] == ["fail"] + ["not run"] * 7
