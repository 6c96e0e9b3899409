"""`textback intake`, and the intake facts in `textback thread` and `textback inbox --json`."""

from __future__ import annotations

import asyncio
import json
import time

from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from textback.cli import main
from textback.config import load
from textback.store import Store

AREA = {"service_area": {"zip_prefixes": ["112"], "office_zip": "11215", "radius_miles": 20}}
TEXT = ("Yes please! We want to redo our kitchen, budget around $75k. Can someone come by "
        "Tuesday? We're at 45 Maple Ave, Montclair NJ 07042")


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_intake_prints_each_fact_and_why(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path, **AREA))
    result = run("intake", "-c", str(path), "--at", "2026-12-07T10:00", TEXT)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "labels        Kitchen · ~$75k · 07042 (in area) · Tue"
    assert "budget        ~75000" in lines
    assert any("why: “around $75k” read as an approximate amount" in line for line in lines)
    assert any("mi from the office's 11215; the radius is 20 mi" in line for line in lines)
    data = json.loads(run("intake", "-c", str(path), "--format", "json", "--at",
                          "2026-12-07T10:00", TEXT).output)
    assert data["fields"]["timing"] == {
        "value": "2026-12-08", "label": "Tue", "evidence": "Tuesday",
        "why": "“Tuesday”: Tue Dec 8 2026", "source": "extracted"}


def test_intake_with_a_vocabulary_of_the_config_and_the_callers_area_code(tmp_path):
    path = write_config(tmp_path, base_config(
        tmp_path, intake={"projects": {"garage": ["carport"]}}))
    result = run("intake", "-c", str(path), "--caller", "(212) 555-0199", "a new carport")
    assert result.exit_code == 0, result.output
    assert "project       garage" in result.output
    assert "only the caller's area code 212" in result.output
    assert run("intake", "-c", str(path), "ok thanks").output.startswith("nothing found")


def test_intake_refuses_bad_options_and_never_obeys_control_characters(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path))
    assert run("intake", "-c", str(path), "--at", "soon", "x").exit_code == 2
    assert run("intake", "-c", str(path), "--caller", "nobody", "x").exit_code == 2
    result = run("intake", "-c", str(path), "kitchen \x1b]0;owned\x07 40k")
    assert result.exit_code == 0 and "\x1b" not in result.output


def test_a_service_area_that_cannot_be_placed_is_a_config_error(tmp_path):
    path = write_config(tmp_path, base_config(
        tmp_path, service_area={"office_zip": "00000", "radius_miles": 10}))
    result = run("check", "-c", str(path))
    assert result.exit_code == 2
    assert "office_zip 00000 has no known centroid" in result.output


async def test_thread_and_inbox_show_what_was_read_and_what_a_person_set(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path, **AREA))
    config = load(path).config
    store = await Store.open(tmp_path / "textback.db")
    record = await store.record_inbound(
        HOMEOWNER, BUSINESS_NUMBER, "kitchen, around 75k, we're in 11215", "log", None, "dana",
        intake=config.extract_intake("kitchen, around 75k, we're in 11215", time.time()))
    await store.correct_intake(record.conversation_id,
                               config.intake_corrections("budget", "90k", time.time()),
                               "web:dana", "90k")
    await store.close()
    inbox = json.loads((await asyncio.to_thread(run, "inbox", "-c", str(path), "--json")).output)
    assert inbox[0]["intake_labels"] == "Kitchen · $90k · 11215 (in area)"
    assert (inbox[0]["intake_project"], inbox[0]["intake_area"]) == ("kitchen", "in")
    table = (await asyncio.to_thread(run, "inbox", "-c", str(path))).output
    assert "Kitchen · $90k · 11215 (in area)" in table
    thread = (await asyncio.to_thread(run, "thread", "-c", str(path), HOMEOWNER)).output
    assert "intake       budget: ~$75k (read from the reply)" in thread
    assert "intake       budget: $90k (set by Dana)" in thread  # as the inbox names her
    rows = json.loads((await asyncio.to_thread(run, "thread", "-c", str(path), HOMEOWNER,
                                               "--json")).output)
    assert {(r["detail"], r["status"]) for r in rows if r["kind"] == "intake"} == {
        ("project", "extracted"), ("budget", "extracted"), ("location", "extracted"),
        ("service_area", "extracted"), ("budget", "person")}


async def test_inbox_filters_by_project_type_and_area_as_the_web_inbox_does(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path, **AREA))
    config = load(path).config
    store = await Store.open(tmp_path / "textback.db")
    for caller, text in (("+12125550101", "kitchen, we're in 11215"),
                         ("+12125550102", "a new bathroom, we live in 90210"),
                         ("+12125550103", "call me back please")):
        await store.record_inbound(caller, BUSINESS_NUMBER, text, "log", None, "dana",
                                   intake=config.extract_intake(text, time.time()))
    await store.close()

    async def callers(*options: str) -> set[str]:
        result = await asyncio.to_thread(run, "inbox", "-c", str(path), "--json", *options)
        assert result.exit_code == 0, result.output
        return {row["caller"] for row in json.loads(result.output)}

    assert await callers() == {"+12125550101", "+12125550102", "+12125550103"}
    assert await callers("--project", "kitchen") == {"+12125550101"}
    assert await callers("--project", "bath") == {"+12125550102"}
    assert await callers("--area", "in") == {"+12125550101"}
    assert await callers("--area", "out") == {"+12125550102"}
    assert await callers("--project", "kitchen", "--area", "out") == set()
    table = (await asyncio.to_thread(run, "inbox", "-c", str(path), "--area", "in")).output
    assert "+12125550101" in table and "+12125550102" not in table
    wrong = await asyncio.to_thread(run, "inbox", "-c", str(path), "--project", "spaceship")
    assert wrong.exit_code == 2 and "no such project type" in wrong.output
    assert (await asyncio.to_thread(run, "inbox", "-c", str(path), "--area", "near")).exit_code == 2
