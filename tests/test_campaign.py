"""The 10DLC kit: the campaign form filled from the config, the template warnings of
`textback check`, and the public consent page (no sign-in, no script, no personal data)."""

from __future__ import annotations

import time

from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from textback.core import campaign
from textback.checks import template_report
from textback.cli import main
from textback.config import load
from textback.store import CallRow, PlannedText
from tests.browser import chromium, page_of, screenshot
from tests.web_helpers import BASE, OWNERS, homeowner_writes, web_config, web_daemon

HOMEOWNERS = ("+12125550166", "+12125550123")


def config_of(tmp_path, **overrides):
    return load(write_config(tmp_path, base_config(tmp_path, **overrides))).config


def test_textback_compliance_10dlc_prints_the_form_filled_from_the_config(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path, **{
        "web": {"port": 18099, "public_url": "https://textback.acme.example/"},
        "text.after_hours_template": "{business_name}: we are closed, back {next_opening|soon}.",
        "compliance.campaign.use_case": "Customer Care"}))
    result = CliRunner().invoke(main, ["compliance", "10dlc", "-c", str(path)])
    assert result.exit_code == 0, result.output
    out = result.output
    for field in ("Use case:\n    Customer Care", "Campaign description:", "Message flow",
                  "Opt-in keywords:\n    START, UNSTOP, YES", "Opt-out keywords:\n    CANCEL",
                  "Help keywords:\n    HELP, INFO", "Privacy statement:\n    Acme Remodeling does "
                  "not sell, rent or share mobile numbers"):
        assert field in out
    assert "https://textback.acme.example/consent" in out  # the public page, for the form
    assert "calling Acme Remodeling at +12125550100" in out
    samples = [s.body for s in campaign.samples(load(path).config)]
    assert len(samples) >= 3
    for body in samples:
        assert "Acme Remodeling" in body and "STOP" in body
        assert body in out
    assert "Acme Remodeling: we are closed, back soon. Reply STOP to opt out." in out
    assert "warning" not in out


def test_check_warns_of_what_the_vetting_would_refuse(tmp_path):
    config = config_of(tmp_path, **{
        "text.template": "{business_name}: sorry we missed your call, we ring you back today!",
        "text.reply_stop_footer": False,
        "compliance.help_text": "Reply here or call {business_number}. Reply STOP to opt out.",
        "compliance.campaign.registered_samples": ["Acme Remodeling: short. Reply STOP."]})
    warnings = campaign.template_warnings(config)
    assert warnings == [
        "text.template: gives no way to opt out (\"Reply STOP to opt out\"); turn "
        "text.reply_stop_footer back on or write it in",
        "text.template: 67 characters, longer than every sample registered (at most 35); "
        "register it again",
        "compliance.help_text: does not name the business ('Acme Remodeling'); carriers require "
        "the brand name",
        "compliance.help_text: 57 characters, longer than every sample registered (at most 35); "
        "register it again"]
    report = template_report(config)
    assert all(f"warning: {w}" in report for w in warnings)
    checked = CliRunner().invoke(main, ["check", "-c", str(tmp_path / "config.yaml")])
    assert all(f"warning: {w}" in checked.output for w in warnings)  # `textback check` says so
    assert campaign.template_warnings(config_of(tmp_path)) == []
    no_web = CliRunner().invoke(main, ["compliance", "10dlc", "-c",
                                       str(write_config(tmp_path, base_config(tmp_path)))])
    assert "warning: no `web:` listener, so no public consent page" in no_web.output


async def seed(daemon) -> None:
    now = time.time()
    await daemon.store.record_call(CallRow(
        "c.1", BUSINESS_NUMBER, HOMEOWNERS[0], HOMEOWNERS[0], "Jamie Homeowner", now - 90, None,
        now - 80, "missed", "no_answer", "missed_call_text"), PlannedText("dana", "Hi", now))
    await homeowner_writes(daemon, "Kitchen quote please", sender=HOMEOWNERS[1])


def personal_data() -> list[str]:
    """What must never show on the public page: owners, homeowners, their numbers and words."""
    found = ["Jamie Homeowner", "Kitchen quote please"]
    for owner in OWNERS:
        found += [owner["name"], owner["email"]]
    for number in HOMEOWNERS:
        found += [number, f"({number[2:5]}) {number[5:8]}-{number[8:]}", number[2:]]
    return found


async def test_the_consent_page_is_public_with_a_strict_csp_and_no_personal_data(tmp_path):
    from tests.web_helpers import client

    async with web_daemon(web_config(tmp_path)) as daemon, client() as anonymous:
        await seed(daemon)
        status, html, response = await anonymous.get("/consent")
        assert status == 200 and response.content_type == "text/html"
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "<script" not in html.lower()
        assert "Acme Remodeling does not sell, rent or share mobile numbers" in html
        assert "Reply <b>STOP</b>" in html and "Hi, this is Acme Remodeling." in html
        assert all(value not in html for value in personal_data())


async def test_the_consent_page_in_a_browser_runs_no_script_and_shows_no_personal_data(tmp_path):
    async with web_daemon(web_config(tmp_path)) as daemon, chromium() as browser, \
            page_of(browser) as page:
        await seed(daemon)
        response = await page.goto(f"{BASE}/consent")
        assert response.status == 200
        assert await page.evaluate("() => document.scripts.length") == 0
        assert await page.evaluate(
            "() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes])"
            ".filter(a => a.name.startsWith('on')).length") == 0
        assert await page.evaluate("() => document.querySelectorAll('form, input').length") == 0
        text = await page.inner_text("body")
        assert "Text messages from Acme Remodeling" in text and "Privacy" in text
        assert all(value not in text for value in personal_data())
        assert page.url == f"{BASE}/consent"  # no sign-in redirect
        await screenshot(page, "consent-page")
