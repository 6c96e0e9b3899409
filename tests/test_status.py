"""`textback status`: one screen for the installer, read from the store and the run lock."""

from __future__ import annotations

import asyncio
import time

from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from textback import runlock
from textback.cli import main
from textback.core.selftest import FAIL, PASS, StepResult, complete
from textback.store import CallRow, PlannedText, Store


def status(path) -> tuple[int, dict[str, str]]:
    result = CliRunner().invoke(main, ["status", "-c", str(path)])
    lines = {}
    for line in result.output.splitlines():
        label, value = line[:15].strip(), line[16:]
        lines[label or f"  {len(lines)}"] = value
    return result.exit_code, lines


async def test_a_daemon_never_run_is_said_so_and_no_database_is_created(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path))
    code, lines = await asyncio.to_thread(status, path)
    assert code == 1 and lines["daemon"].startswith("never run: no database at")
    assert not (tmp_path / "textback.db").exists()


async def test_a_stopped_daemon_is_down_and_nothing_is_known(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path))
    await (await Store.open(tmp_path / "textback.db")).close()
    code, lines = await asyncio.to_thread(status, path)
    assert code == 1
    assert lines["daemon"].startswith("down")
    assert lines["AMI"] == "-" and lines["last AMI event"] == "-"
    assert lines["outbox"] == "0 text(s) waiting; oldest none due"
    assert lines["incidents"] == "none open"
    assert lines["last self-test"] == "none recorded"
    assert lines["version"] == "0.1.0"


async def test_a_running_daemon_shows_ami_the_backlog_and_open_incidents(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path))
    database = tmp_path / "textback.db"
    store = await Store.open(database)
    now = time.time()
    await store.note_progress("ami_logged_in", 1.0)
    await store.note_progress("ami_state_since", now - 7200)
    await store.note_progress("last_ami_event_at", now - 3)
    call = CallRow(linkedid="c1", business_number=BUSINESS_NUMBER, caller_raw=HOMEOWNER,
                   caller=HOMEOWNER, caller_name="", started_at=now - 700, answered_at=None,
                   ended_at=now - 660, outcome="missed", reason="no_answer", decision="text")
    await store.record_call(call, PlannedText("dana", "Sorry we missed you", now - 600))
    lock = runlock.acquire(database)  # what `textback run` holds
    try:
        code, lines = await asyncio.to_thread(status, path)
        assert code == 0, lines
        assert lines["daemon"].startswith("up (pid ")
        assert lines["AMI"] == "logged in for 2h"
        assert lines["last AMI event"] == "3s ago"
        assert lines["outbox"] == "1 text(s) waiting; oldest due 10m ago"
        await store.open_incident("gateway_failing", "5 sends in a row failed; the last: HTTP 503",
                                  now - 60)
        code, lines = await asyncio.to_thread(status, path)
        assert code == 1
        assert lines["incidents"] == "1 open"
        assert any("the SMS gateway keeps failing (5 sends in a row failed; the last: HTTP 503)"
                   in value for value in lines.values())
    finally:
        lock.release()
        await store.close()


async def test_the_last_self_test_is_shown_with_the_step_it_failed_at(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path))
    store = await Store.open(tmp_path / "textback.db")
    started = time.time() - 60
    report = complete([StepResult("ami", PASS, 0.1, ""),
                       StepResult("trunk", FAIL, 0.2, "'carier' is not a PJSIP endpoint")],
                      started, started + 0.3)
    run = await store.request_selftest("schedule")
    await store.claim_selftest()
    await store.finish_selftest(run, started, started + 0.3, report.passed, report.steps_json())
    await store.close()
    code, lines = await asyncio.to_thread(status, path)
    assert code == 1
    assert lines["last self-test"].startswith("FAILED at trunk, ")
    assert lines["last self-test"].endswith(" (schedule)")
