"""The daemon's side of CDR recovery: the lab's recorded rows in a real Master.csv, a real store
and the SMTP sink, without AMI. The lab tests (tests/test_recovery_lab.py) play the same on
the lab PBX."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import time

from hypothesis import HealthCheck, given, settings, strategies as st

from lab.configs import base_config, write_config
from tests.cdr_rows import as_csv, moved
from textback.checks import _check_cdr
from textback.config import load
from textback import cdr
from textback.cdr import CsvCdr
from textback.core.recovery import CsvLayout, from_csv_fields, recover_calls

CALLER_FRESH = "+12125550123"  # noanswer.csv
CALLER_OLD = "+16465550102"  # caller_hung_up.csv, to +12125550100 as well


def recovery_config(tmp_path, **more):
    return {"recovery": {"max_age_minutes": 30,
                         "cdr": {"type": "csv", "csv": {"path": str(tmp_path / "Master.csv")}}},
            "smtp.port": 15025, **more}


def write_master(tmp_path, *flows: tuple[str, float]) -> None:
    rows = [row for name, ended_at in flows for row in moved(name, ended_at)]
    (tmp_path / "Master.csv").write_text(as_csv(rows))


async def calls_by_caller(daemon) -> dict[str, dict]:
    return {row["caller"]: row for row in await daemon.store.calls(0)}


async def test_a_fresh_miss_is_texted_an_old_one_goes_on_the_ring_back_list(
        offline_daemon, tmp_path, smtp_sink):
    now = time.time()
    write_master(tmp_path, ("noanswer", now - 60), ("caller_hung_up", now - 2 * 3600),
                 ("ringgroup", now - 30))
    daemon = await offline_daemon(**recovery_config(tmp_path))
    await daemon.recover(now - 3 * 3600)

    calls = await calls_by_caller(daemon)
    assert {caller: (row["outcome"], row["decision"], row["recovered"]) for caller, row in calls.items()} == {
        CALLER_FRESH: ("missed", "missed_call_text", 1),
        CALLER_OLD: ("missed", "recovered_too_old", 1),
        "+12125550124": ("answered", "answered", 1),
    }
    [due] = await daemon.store.due(now + 3600)
    assert due.recipient == CALLER_FRESH
    [mail] = smtp_sink.wait_for(1, 5)
    assert mail.recipients == ["dana@example.com"]
    assert mail.message["Subject"].endswith("1 missed call(s) to ring back")
    body = mail.message.get_content()
    assert CALLER_OLD in body and CALLER_FRESH not in body


async def test_a_second_pass_and_a_call_seen_live_are_not_recorded_twice(
        offline_daemon, tmp_path, smtp_sink):
    now = time.time()
    write_master(tmp_path, ("noanswer", now - 60), ("caller_hung_up", now - 2 * 3600))
    daemon = await offline_daemon(**recovery_config(tmp_path))
    [seen_live] = [call for call in recover_calls(
        [from_csv_fields(row, CsvLayout(), None) for row in moved("noanswer", now - 60)],
        ["carrier"], [], 0.0)]
    await daemon.finish_call(seen_live)
    await daemon.recover(now - 3 * 3600)
    await daemon.recover(now - 3 * 3600)

    calls = await calls_by_caller(daemon)
    assert {caller: row["recovered"] for caller, row in calls.items()} == {CALLER_FRESH: 0, CALLER_OLD: 1}
    assert len(await daemon.store.due(now + 3600)) == 1
    time.sleep(0.5)
    assert len(smtp_sink.received) == 1  # one ring-back list, from the first pass


async def test_an_unreadable_cdr_is_logged_and_emailed_to_the_owners(
        offline_daemon, tmp_path, smtp_sink, caplog):
    (tmp_path / "Master.csv").write_text(as_csv(moved("noanswer", time.time()))
                                         .replace(',"DOCUMENTATION"', ""))
    daemon = await offline_daemon(**recovery_config(tmp_path))
    with caplog.at_level(logging.ERROR):
        assert await daemon.recover(time.time() - 600) is False
        assert await daemon.recover(time.time() - 600) is False  # a second login soon after
    assert caplog.text.count("could not recover") == 2 and "recovery.cdr.csv" in caplog.text
    [mail] = smtp_sink.wait_for(1, 5)
    assert mail.message["Subject"].endswith("Missed calls may be unrecorded")
    time.sleep(0.5)
    assert len(smtp_sink.received) == 1  # at most one such email an hour
    assert await daemon.store.calls(0) == []


async def test_the_csv_is_read_from_its_end_only_as_far_back_as_needed(tmp_path, caplog):
    now = time.time()
    years = [("noanswer", now - day * 86400) for day in range(800, 1, -1)]
    write_master(tmp_path, *(years * 5), ("busy", now - 120), ("answered", now - 60))
    master = tmp_path / "Master.csv"
    # Rows no reader can parse, at the start of the file: reading that far would report them.
    master.write_text(as_csv(moved("noanswer", now - 900 * 86400)).replace(',"DOCUMENTATION"', "") * 100
                      + master.read_text())
    assert master.stat().st_size > 20 * 64 * 1024
    with caplog.at_level(logging.ERROR):
        records = await CsvCdr(master, CsvLayout(), None).records_since(now - 600)
    assert sorted(r.src for r in records) == ["+12125550123", "+16465550105", "+16465550105"]
    assert caplog.text == ""


async def test_check_reads_the_cdr_and_names_a_missing_one(tmp_path):
    write_master(tmp_path, ("voicemail", time.time() - 60))
    config = base_config(tmp_path, **recovery_config(tmp_path))
    assert await _check_cdr(load(write_config(tmp_path, config))) == (
        "cdr", True, f"CSV CDR {tmp_path / 'Master.csv'}: 2 row(s) of the last day readable")
    (tmp_path / "Master.csv").unlink()
    name, ok, detail = await _check_cdr(load(write_config(tmp_path, config)))
    assert (name, ok) == ("cdr", False) and "No such file" in detail


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(block=st.integers(min_value=1, max_value=4000), ages=st.lists(
    st.integers(min_value=0, max_value=6 * 3600), min_size=1, max_size=12))
def test_reading_backwards_by_blocks_finds_what_a_full_read_finds(tmp_path, monkeypatch, block, ages):
    now = time.time()
    flows = ["noanswer", "busy", "ringgroup", "freepbx_queue_voicemail"]
    write_master(tmp_path, *((flows[i % len(flows)], now - age)
                             for i, age in enumerate(sorted(ages, reverse=True))))
    since = now - 2 * 3600
    monkeypatch.setattr(cdr, "BLOCK_BYTES", block)
    tail = asyncio.run(CsvCdr(tmp_path / "Master.csv", CsvLayout(), None).records_since(since))
    everything = [from_csv_fields(row, CsvLayout(), None)
                  for row in csv.reader(io.StringIO((tmp_path / "Master.csv").read_text()))]
    assert tail == [r for r in everything if r.end >= since - cdr.CSV_ORDER_SLACK_SECONDS]
