"""The scorecard's intake views: the funnel by project type and in / out of the service area,
from the store (known answers on seeded data), in `textback report` and on the web page."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from textback.cli import main
from textback.config import load
from textback.core.scorecard import NOT_KNOWN, by_intake
from textback.store import CallRow, PlannedText, Store
from textback.web.reports import month_period
from tests.test_web_inbox import signed_in
from tests.web_helpers import client, set_passwords, web_config, web_daemon

AREA = {"service_area": {"zip_prefixes": ["112"]}}
REPLIES = {"+12125550111": "Kitchen, around 80k, we're in 11215",
           "+12125550112": "kitchen and bath please, 90210",
           "+12125550113": "Is this the right number?"}


async def seed(store: Store, config) -> dict[str, int]:
    """Four missed calls, each texted; three replies; one won kitchen in the area."""
    now, ids = time.time(), {}
    for i, caller in enumerate([*REPLIES, "+12125550114"]):
        row = CallRow(f"1.{i}", BUSINESS_NUMBER, caller, caller, "", now - 60, None, now - 50,
                      "missed", "no_answer", "missed_call_text")
        outbox_id = await store.record_call(row, PlannedText("dana", "Hi", now - 50))
        [item] = [x for x in await store.due(now + 1) if x.id == outbox_id]
        await store.claim_all([item])
        await store.mark_all_sent([(item, f"id{i}")], "log")
    for caller, text in REPLIES.items():
        record = await store.record_inbound(caller, BUSINESS_NUMBER, text, "log", None, "dana",
                                            intake=config.extract_intake(text, time.time()))
        ids[caller] = record.conversation_id
    await store.record_outcome(ids["+12125550111"], "won", 82000, "test")
    return ids


def test_groups_sum_the_funnel_and_a_conversation_of_two_projects_counts_in_both():
    call = lambda cid: {"business_number": "+1", "outcome": "missed", "reason": "no_answer",  # noqa: E731
                        "conversation_id": cid, "started_at": 10, "text_status": "sent",
                        "text_at": 20, "text_template": "default"}
    rows = {"calls": [call(1), call(2), call(3), {**call(None), "text_status": None}],
            "messages": [], "outcomes": [{"conversation_id": 2, "stage": "won", "value": 5.0,
                                          "at": 30}],
            "replies": [{"conversation_id": 2, "created_at": 25}], "opt_outs": []}
    views = by_intake(rows, {1: ("kitchen", "in"), 2: ("kitchen,bath", "out")})
    project = {g["group"]: g for g in views["project"]}
    assert (project["kitchen"]["missed"], project["kitchen"]["won"]) == (2, 1)
    assert (project["bath"]["missed"], project["bath"]["won_value"]) == (1, 5.0)
    assert project[NOT_KNOWN]["missed"] == 2  # conversation 3 and the withheld number
    area = {g["group"]: g["missed"] for g in views["area"]}
    assert area == {"in area": 1, "out of area": 1, NOT_KNOWN: 2}


async def test_the_views_in_the_store_and_in_the_report(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path, **AREA))
    config = load(path).config
    store = await Store.open(tmp_path / "textback.db")
    await seed(store, config)
    month = datetime.now(ZoneInfo("America/New_York")).strftime("%Y-%m")
    views = await store.scorecard_by_intake(*month_period(month, "America/New_York"))
    await store.close()
    project = {g["group"]: (g["missed"], g["replies"], g["won"], g["won_value"])
               for g in views["project"]}
    assert project == {"kitchen": (2, 2, 1, 82000), "bath": (1, 1, 0, 0), NOT_KNOWN: (2, 1, 0, 0)}
    area = {g["group"]: (g["missed"], g["won"]) for g in views["area"]}
    assert area == {"in area": (1, 1), "out of area": (1, 0), NOT_KNOWN: (2, 0)}
    result = await asyncio.to_thread(CliRunner().invoke, main,
                                     ["report", "-c", str(path), "--month", month])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "By project type (conversations with a missed call)" in lines
    assert "  kitchen               2      2       2      1    1  82,000" in lines
    assert "  out of area           1      1       1      0    0  0" in lines

    as_json = await asyncio.to_thread(CliRunner().invoke, main, [
        "report", "-c", str(path), "--month", month, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["numbers"][0]["missed"] == 4
    assert {g["group"]: (g["missed"], g["won_value"]) for g in data["intake"]["project"]} == {
        "kitchen": (2, 82000), "bath": (1, 0), NOT_KNOWN: (2, 0)}
    assert {g["group"]: g["missed"] for g in data["intake"]["area"]} == {
        "in area": 1, "out of area": 1, NOT_KNOWN: 2}

    as_csv = await asyncio.to_thread(CliRunner().invoke, main, [
        "report", "-c", str(path), "--month", month, "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.reader(io.StringIO(as_csv.output)))
    gap = rows.index([])
    assert rows[0][0] == "period" and len(rows[1:gap]) == 1  # the scorecard: one number
    header, *groups = rows[gap + 1:]
    assert header == ["period", "view", "group", "missed", "texted", "replies", "booked",
                      "qualified", "won", "won_value", "reply_rate"]
    by_group = {(row[1], row[2]): row for row in groups}
    assert by_group[("project", "kitchen")][3:10] == ["2", "2", "2", "1", "1", "1", "82000.0"]
    assert by_group[("area", "in area")][:4] == [month, "area", "in area", "1"]
    assert set(by_group) == {("project", "kitchen"), ("project", "bath"), ("project", NOT_KNOWN),
                             ("area", "in area"), ("area", "out of area"), ("area", NOT_KNOWN)}


async def test_the_views_on_the_scorecard_page(tmp_path):
    path = web_config(tmp_path, **AREA)
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        await seed(daemon.store, daemon.config)
        await signed_in(browser, "dana")
        status, page, _ = await browser.get("/scorecard")
        assert status == 200
        text = html.unescape(page)
        assert 'id="by-project"' in page and 'id="by-area"' in page
        assert ("<tr><th>kitchen</th> <td>2</td> <td>2</td> <td>1</td> <td>1</td> "
                "<td>$82,000</td></tr>") in text
        assert "<tr><th>in area</th> <td>1</td>" in text
