"""The calls, scorecard and admin pages: the same figures as `textback report`, admin only where due."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from markupsafe import escape

from lab.configs import BUSINESS_NUMBER
from lab.harness import eventually
from tests.hooks_receiver import Receiver, endpoint, new_secret
from tests.providers.common import serving
from textback.store import CallRow, PlannedText, Store
from textback.core import views
from tests.test_web_inbox import act, signed_in
from tests.web_helpers import client, form_value, homeowner_writes, run_cli, set_passwords, web_config, web_daemon


def missed(linkedid: str, caller: str, decision: str = "missed_call_text") -> CallRow:
    now = time.time()
    return CallRow(linkedid, BUSINESS_NUMBER, caller, caller, "", now - 30, None, now - 20,
                   "missed", "no_answer", decision)


async def test_the_scorecard_page_and_csv_show_what_textback_report_prints(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        await daemon.store.record_call(missed("1.1", "+12125550123"), PlannedText("dana", "Sorry", 0))
        [item] = await daemon.store.due(time.time())
        assert await daemon.store.claim_all([item])  # no AMI: the gateway waits, the test sends it
        await daemon.store.mark_all_sent([(item, "1-1")], "asterisk")
        await homeowner_writes(daemon, "Kitchen please")
        [row] = await daemon.store.inbox()
        await signed_in(browser)
        await act(browser, row["id"], "outcome", stage="won", amount="82000")
        month = datetime.now(ZoneInfo("America/New_York")).strftime("%Y-%m")
        status, html, _ = await browser.get(f"/scorecard?month={month}")
        assert status == 200 and "<svg" in html and "won $82,000" in html
        # one conversation all the way: each stage is all of the one before, won implies qualified
        funnel_rows = re.findall(r"<tr><th>(\w+)</th><td>(\S+)</td><td>(\S*)</td></tr>", html)
        assert funnel_rows == [("missed", "1", ""), ("texted", "1", "100%"), ("replied", "1", "100%"),
                               ("booked", "1", "100%"), ("qualified", "1", "100%"),
                               ("won", "1", "100%")]
        assert html.count('class="conversion">100%</text>') == 5
        status, body, response = await browser.get(f"/scorecard.csv?month={month}")
        assert status == 200 and response.headers["Content-Type"].startswith("text/csv")
        report = await asyncio.to_thread(run_cli, "report", "-c", str(path), "--month", month,
                                         "--format", "csv")
        assert report.exit_code == 0, report.output
        assert list(csv.reader(io.StringIO(body))) == list(csv.reader(io.StringIO(report.output)))
        assert "82000.0" in body
        assert (await browser.get("/scorecard?month=2026-13"))[0] == 400


async def test_the_calls_page_filters_and_says_why_no_text_went(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        await daemon.store.record_call(missed("1.1", "+12125550123"), PlannedText("dana", "Sorry", 0))
        await daemon.store.record_call(missed("1.2", "+12125550124", "opted_out"), owner_id="dana")
        await signed_in(browser)
        html = (await browser.get("/calls"))[1]
        assert "(212) 555-0123" in html and "Not texted: they opted out (STOP)." in html
        html = (await browser.get("/calls?decision=opted_out"))[1]
        assert "(212) 555-0124" in html and "(212) 555-0123" not in html
        assert (await browser.get("/calls?from=yesterday"))[0] == 400


async def test_admin_pages_are_for_admins_and_the_opt_out_list_follows_textback_optout(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as owner, client() as admin:
        await signed_in(owner, "sam")
        assert (await owner.get("/admin"))[0] == 403
        csrf = form_value((await owner.get("/"))[1], "csrf")
        status, _, _ = await owner.post("/admin/optout", {"csrf": csrf, "number": "2125550199",
                                                          "action": "add"})
        assert status == 403 and await daemon.store.suppressions() == []
        await signed_in(admin, "dana")
        html = (await admin.get("/admin"))[1]
        assert "Sam Ortiz (sam)" in html and "never" not in html.split("Sam Ortiz")[1][:200]
        csrf = form_value(html, "csrf")
        status, _, response = await admin.post("/admin/optout", {
            "csrf": csrf, "number": "(212) 555-0199", "action": "add"})
        assert response.headers["Location"] == "/admin?said=optout_added"
        [row] = await daemon.store.suppressions()
        assert (row["number"], row["source"]) == ("+12125550199", "web:dana")
        assert (await admin.post("/admin/optout", {"csrf": csrf, "number": "12",
                                                   "action": "add"}))[0] == 400
        await admin.post("/admin/optout", {"csrf": csrf, "number": "+12125550199", "action": "remove"})
        assert await daemon.store.suppressions() == []


HOSTILE = '<script>alert(1)</script>'
HOSTILE_NAME = '<img src=x onerror=alert(2)>'  # no slash: it is also a file name


async def test_the_admin_page_lists_open_incidents_first_then_the_recovered_ones(tmp_path, monkeypatch):
    """The same rows as `textback status`: an incident the daemon itself opens (the routing
    table's directory is a file) and, below it, the ones that recovered; all text escaped."""
    monkeypatch.setattr("textback.workers.ops.INCIDENT_CHECK_SECONDS", 0.2)
    blocked = tmp_path / f"{HOSTILE_NAME}-not-a-directory"
    blocked.write_text("")
    path = web_config(tmp_path, **{"agi.routing_file": str(blocked / "routing.json")})
    await set_passwords(path)
    store = await Store.open(tmp_path / "textback.db")
    now = time.time()
    for kind, summary, opened, closed in (("mail_refused", f"550 {HOSTILE}", now - 7200, now - 3600),
                                          ("gateway_failing", "3 sends in a row failed", now - 600,
                                           now - 300)):
        await store.close_incident(await store.open_incident(kind, summary, opened), closed)
    await store.close()
    async with web_daemon(path) as daemon, client() as admin:
        async def routing_incident():
            return [row["kind"] for row in await daemon.store.open_incidents()] == ["routing_table"]
        await eventually(routing_incident, 10, "the routing-table incident")
        await signed_in(admin, "dana")
        status, html, _ = await admin.get("/admin")
    assert status == 200
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert HOSTILE_NAME not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    section = html.split('id="incidents"')[1].split("</section>")[0]
    routing = section.index("the routing table cannot be written")
    gateway = section.index("the SMS gateway keeps failing")
    relay = section.index("the SMTP relay refuses mail")
    assert routing < section.index("Recovered") < gateway < relay  # open, then latest recovery first
    assert "-not-a-directory/routing.json" in section[routing:gateway]
    tz = ZoneInfo("America/New_York")
    for at in (now - 7200, now - 3600, now - 600, now - 300):
        assert datetime.fromtimestamp(at, tz).strftime("%a %d %b %H:%M") in section


async def test_the_admin_page_shows_the_webhook_delivery_log_as_textback_webhooks_log(tmp_path):
    """Newest first, the same rows and columns as the CLI; the endpoint's URL and secret never."""
    up, down = Receiver(new_secret()), Receiver(new_secret(), down=lambda: True, retry_after="3600")
    async with serving(up.app()) as up_url, serving(down.app()) as down_url:
        path = web_config(tmp_path, webhooks={"endpoints": [
            endpoint(tmp_path, "crm", f"{up_url}/hook?key=s3cr3t-in-url", up.secret),
            endpoint(tmp_path, "backup", f"{down_url}/hook", down.secret)]})
        await set_passwords(path)
        async with web_daemon(path) as daemon, client() as admin:
            await daemon.store.record_call(missed("1.1", "+12125550123"), owner_id="dana")
            await daemon.store.record_outcome(1, "spam", None, "cli")

            async def tried_everywhere():
                rows = {(r["endpoint"], r["type"]): r for r in await daemon.store.delivery_log()}
                return (len(rows) == 4 and rows["crm", "outcome.changed"]["state"] == "delivered"
                        and rows["backup", "call.missed"]["last_status"] == 503)
            await eventually(tried_everywhere, 15, "deliveries to both endpoints")
            await signed_in(admin, "dana")
            html = (await admin.get("/admin"))[1]
            cli = await asyncio.to_thread(run_cli, "webhooks", "log", "-c", str(path), "--json")
    assert cli.exit_code == 0, cli.output
    logged = json.loads(cli.output)
    section = html.split('id="deliveries"')[1].split("</section>")[0]
    shown = [[cell.strip() for cell in re.findall(r"<td>(.*?)</td>", row)]
             for row in re.findall(r'<tr class="delivery[^"]*">(.*?)</tr>', section)]
    tz = "America/New_York"
    assert shown == [[views.when(r["created_at"], tz), r["endpoint"], r["type"], r["event_id"],
                      r["state"], str(r["attempts"]),
                      "-" if r["last_status"] is None else str(r["last_status"]),
                      str(escape(r["last_error"]))] for r in logged]
    assert [row[2] for row in shown] == ["outcome.changed", "outcome.changed", "call.missed",
                                         "call.missed"]
    assert any(row[1] == "backup" and row[6] == "503" and row[7].startswith("HTTP 503")
               for row in shown)
    assert any(row[1] == "crm" and row[4] == "delivered" for row in shown)
    for secret in ("s3cr3t-in-url", up_url, down_url, up.secret, down.secret, up.secret[6:]):
        assert secret not in html
