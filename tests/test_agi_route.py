"""The routing AGI script as a real process speaking the AGI protocol on stdin/stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from lab.configs import BUSINESS_NUMBER, RING_GROUP_NUMBER, base_config
from agi_scripts.textback_route import route_variables
from textback.config import parse
from textback.routing import routing_table, write_routing_table

SCRIPT = Path(__file__).resolve().parents[1] / "agi_scripts" / "textback_route.py"
NY = ZoneInfo("America/New_York")


def config(tmp_path):
    raw = base_config(tmp_path, **{
        "hours": {"windows": [{"days": ["mon", "tue", "wed", "thu", "fri"],
                               "start": "08:00", "end": "17:00"}], "holiday_calendar": "US"},
        "agi": {"routing_file": str(tmp_path / "routing.json")}})
    raw["numbers"][0]["ring"] = {"targets": "PJSIP/office1", "timeout_seconds": 6,
                                 "after_hours_targets": "PJSIP/carrier/+12125550999",
                                 "after_hours_timeout_seconds": 25}
    raw["numbers"][1]["ring"] = {"targets": "PJSIP/office1&PJSIP/office2", "timeout_seconds": 12}
    return parse(yaml.safe_dump(raw), base=tmp_path).config


def test_route_variables_in_and_out_of_hours(tmp_path):
    table = routing_table(config(tmp_path), date(2026, 11, 1))
    monday_10 = datetime(2026, 11, 23, 10, 0, tzinfo=NY).timestamp()
    thanksgiving = datetime(2026, 11, 26, 10, 0, tzinfo=NY).timestamp()
    assert route_variables(table, BUSINESS_NUMBER, monday_10, "X", "20") == {
        "TEXTBACK_ROUTE": "r1-12125550100", "TEXTBACK_TARGETS": "PJSIP/office1",
        "TEXTBACK_RING_TIMEOUT": "6", "TEXTBACK_HOURS": "open"}
    after = route_variables(table, BUSINESS_NUMBER, thanksgiving, "X", "20")
    assert (after["TEXTBACK_TARGETS"], after["TEXTBACK_RING_TIMEOUT"], after["TEXTBACK_HOURS"]) == (
        "PJSIP/carrier/+12125550999", "25", "closed")
    group = route_variables(table, RING_GROUP_NUMBER, thanksgiving, "X", "20")
    assert (group["TEXTBACK_TARGETS"], group["TEXTBACK_RING_TIMEOUT"]) == (
        "PJSIP/office1&PJSIP/office2", "12")  # no after-hours targets: the same ring


def test_a_number_with_its_own_hours_is_routed_by_them(tmp_path):
    raw = base_config(tmp_path, **{
        "hours": {"windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "17:00"}]}})
    raw["numbers"][1]["hours"] = {"windows": [{"days": ["sat", "sun"], "start": "00:00", "end": "24:00"}],
                                  "holiday_calendar": "US"}
    table = routing_table(parse(yaml.safe_dump(raw), base=tmp_path).config, date(2026, 11, 1))
    assert "2026-12-25" in table["routes"][RING_GROUP_NUMBER]["hours"]["holidays"]
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=NY).timestamp()
    assert route_variables(table, BUSINESS_NUMBER, saturday, "X", "20")["TEXTBACK_HOURS"] == "closed"
    assert route_variables(table, RING_GROUP_NUMBER, saturday, "X", "20")["TEXTBACK_HOURS"] == "open"


def test_unknown_numbers_and_broken_tables_fall_back(tmp_path):
    table = routing_table(config(tmp_path), date(2026, 11, 1))
    for variables in (route_variables(table, "+12125550777", 0, "PJSIP/office1", "20"),
                      route_variables(None, BUSINESS_NUMBER, 0, "PJSIP/office1", "20"),
                      route_variables({"format": 99}, BUSINESS_NUMBER, 0, "PJSIP/office1", "20")):
        assert variables["TEXTBACK_ROUTE"] == "fallback"
        assert (variables["TEXTBACK_TARGETS"], variables["TEXTBACK_RING_TIMEOUT"]) == (
            "PJSIP/office1", "20")


def run_agi(args: list[str], extension: str, command: list[str] | None = None) -> list[str]:
    """Play Asterisk's side of AGI: the environment, then '200 result=1' to each command."""
    env = (f"agi_request: textback_route.py\nagi_channel: PJSIP/carrier-00000001\n"
           f"agi_extension: {extension}\nagi_context: from-carrier\n\n")
    process = subprocess.Popen([*(command or [sys.executable, str(SCRIPT)]), *args],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    process.stdin.write(env)
    process.stdin.flush()
    commands = []
    while line := process.stdout.readline():
        commands.append(line.strip())
        process.stdin.write("200 result=1\n")
        process.stdin.flush()
    assert process.wait(10) == 0
    return commands


def test_the_script_sets_the_variables_over_agi(tmp_path):
    path = write_routing_table(config(tmp_path), date.today())
    assert json.loads(path.read_text())["routes"][BUSINESS_NUMBER]["timeout"] == 6
    commands = run_agi([str(path), "PJSIP/office1", "20"], BUSINESS_NUMBER)
    assert commands[0] == 'SET VARIABLE "TEXTBACK_ROUTE" "r1-12125550100"'
    names = [c.split('"')[1] for c in commands]
    assert names == ["TEXTBACK_ROUTE", "TEXTBACK_TARGETS", "TEXTBACK_RING_TIMEOUT", "TEXTBACK_HOURS"]


def test_the_script_never_fails_a_call_without_a_table(tmp_path):
    commands = run_agi([str(tmp_path / "missing.json"), "PJSIP/office1", "20"], BUSINESS_NUMBER)
    assert 'SET VARIABLE "TEXTBACK_TARGETS" "PJSIP/office1"' in commands
    assert 'SET VARIABLE "TEXTBACK_RING_TIMEOUT" "20"' in commands


def test_install_puts_everything_where_asterisk_finds_it(tmp_path):
    from click.testing import CliRunner

    from textback.cli import main

    raw = base_config(tmp_path, **{"agi": {"routing_file": str(tmp_path / "routing.json")}})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    agi_dir, etc = tmp_path / "agi-bin", tmp_path / "etc"
    result = CliRunner().invoke(main, ["install", "-c", str(path), "--agi-dir", str(agi_dir),
                                       "--dialplan-dir", str(etc)])
    assert result.exit_code == 0, result.output
    script = agi_dir / "textback_route.py"
    assert script.read_text().splitlines()[0] == f"#!{sys.executable}"
    assert script.stat().st_mode & 0o111
    assert "[textback-sms-in]" in (etc / "textback.conf").read_text()
    assert (tmp_path / "routing.json").exists()
    (etc / "textback.conf").write_text("; edited by the installer\n")
    again = CliRunner().invoke(main, ["install", "-c", str(path), "--agi-dir", str(agi_dir),
                                      "--dialplan-dir", str(etc)])
    assert "kept" in again.output and (etc / "textback.conf").read_text().startswith("; edited")
    commands = run_agi([str(tmp_path / "routing.json"), "PJSIP/office1", "20"], BUSINESS_NUMBER,
                       command=[str(script)])  # through its own shebang line
    assert 'SET VARIABLE "TEXTBACK_ROUTE" "r1-12125550100"' in commands


async def test_the_routing_table_is_rewritten_every_day(tmp_path):
    """Calendar holidays cover this year and the next, so a daemon that runs for years keeps them current."""
    import asyncio

    from textback.config import load
    from textback.workers.common import SystemClock
    from textback.workers.ops import Watch
    from textback.workers.routing import RoutingTableWorker

    raw = base_config(tmp_path, **{"agi": {"routing_file": str(tmp_path / "routing.json")}})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    routing = RoutingTableWorker(load(path).config, Watch(), SystemClock(), refresh_seconds=0.05)
    worker = asyncio.create_task(routing.run())
    try:
        await asyncio.sleep(0.2)
        assert (tmp_path / "routing.json").exists()
        (tmp_path / "routing.json").unlink()
        await asyncio.sleep(0.2)
        assert json.loads((tmp_path / "routing.json").read_text())["format"] == 1
    finally:
        worker.cancel()
