"""Rules as pure functions of config + call + clock: hours, templates, classes, fraud guards."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config
from textback.config import ConfigError, parse
from textback.core.hours import Hours, Window
from textback.core.rules import RecentTexts, decide
from textback.core.tracker import CallFinished

import yaml

NY = ZoneInfo("America/New_York")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
SPLIT = Hours("America/New_York", (Window(WEEKDAYS, "07:00", "12:00"), Window(WEEKDAYS, "13:00", "17:00")))


def at(*args) -> float:
    return datetime(*args, tzinfo=NY).timestamp()


@pytest.mark.parametrize("moment, is_open", [
    ((2026, 11, 23, 6, 59), False), ((2026, 11, 23, 7, 0), True), ((2026, 11, 23, 11, 59), True),
    ((2026, 11, 23, 12, 30), False), ((2026, 11, 23, 13, 0), True), ((2026, 11, 23, 17, 0), False),
    ((2026, 11, 28, 10, 0), False),  # Saturday
])
def test_split_shifts(moment, is_open):
    assert SPLIT.is_open(at(*moment)) is is_open


def test_windows_keep_wall_clock_time_across_dst():
    # 2026-03-09 is the Monday after the spring-forward change; 7:00 is still opening time.
    assert not SPLIT.is_open(at(2026, 3, 9, 6, 59))
    assert SPLIT.is_open(at(2026, 3, 9, 7, 0))
    assert SPLIT.next_opening(at(2026, 3, 6, 18, 0)) == at(2026, 3, 9, 7, 0)
    assert SPLIT.next_opening(at(2026, 10, 30, 18, 0)) == at(2026, 11, 2, 7, 0)  # fall back


def test_holidays_by_date_and_by_calendar():
    listed = Hours("America/New_York", SPLIT.windows, frozenset({datetime(2026, 12, 24).date()}))
    assert not listed.is_open(at(2026, 12, 24, 10, 0))
    calendar = Hours("America/New_York", SPLIT.windows, calendar="US")
    assert not calendar.is_open(at(2026, 11, 26, 10, 0))  # Thanksgiving
    assert calendar.is_open(at(2026, 11, 27, 10, 0))
    assert calendar.next_opening(at(2026, 11, 25, 18, 0)) == at(2026, 11, 27, 7, 0)


def config_with(tmp_path, **overrides):
    raw = base_config(tmp_path, **{
        "hours": {"windows": [{"days": list(WEEKDAYS), "start": "07:00", "end": "12:00"},
                              {"days": list(WEEKDAYS), "start": "13:00", "end": "17:00"}]},
        "text.after_hours_template": "{business_name}: we're closed. Back {next_opening|soon}.",
        "text.client_template": "Hi {caller_name|there}, {business_name} here. We'll call you back.",
        "contacts": [{"number": "+12125550150", "name": "Jane", "class": "client"},
                     {"number": "+12125550151", "class": "vendor"},
                     {"number": "+12125550152", "class": "blocked"}],
        **overrides})
    return parse(yaml.safe_dump(raw), base=tmp_path).config


def missed(caller=HOMEOWNER, when=at(2026, 11, 23, 10, 0)) -> CallFinished:
    return CallFinished("1.1", BUSINESS_NUMBER, caller, "", "PJSIP/carrier-1", when - 20, when,
                        "missed", "no_answer")


def test_in_hours_text_with_the_stop_footer(tmp_path):
    d = decide(config_with(tmp_path), missed())
    assert d.send and d.reason == "missed_call_text"
    assert d.body == "Hi, this is Acme Remodeling. Sorry we missed your call! Reply STOP to opt out."


def test_after_hours_text_names_the_next_opening(tmp_path):
    d = decide(config_with(tmp_path), missed(when=at(2026, 11, 27, 19, 30)))  # Friday evening
    assert d.reason == "after_hours_text"
    assert d.body.startswith("Acme Remodeling: we're closed. Back Monday 7:00 AM.")


@pytest.mark.parametrize("dialplan_hours, when, reason", [
    ("closed", at(2026, 11, 23, 10, 0), "after_hours_text"),  # the AGI saw a holiday the clock does not know
    ("open", at(2026, 11, 23, 17, 0, 20), "missed_call_text"),  # rang at 16:59:50, ended after closing
    ("", at(2026, 11, 23, 17, 0, 20), "after_hours_text"),  # no AGI: the hours at hangup decide
])
def test_the_routing_agis_answer_picks_the_text(tmp_path, dialplan_hours, when, reason):
    call = replace(missed(when=when), dialplan_hours=dialplan_hours)
    assert decide(config_with(tmp_path), call).reason == reason


def test_windows_and_numbers_name_their_templates(tmp_path):
    from lab.configs import RING_GROUP_NUMBER

    config = config_with(tmp_path, **{
        "text.templates": {"saturday": "{business_name}: our Saturday crew will call you back.",
                           "ads": "Thanks for calling {business_name} about our kitchen offer!",
                           "ads_closed": "{business_name}: the kitchen team is back {next_opening|soon}."},
        "hours": {"windows": [{"days": list(WEEKDAYS), "start": "07:00", "end": "17:00"},
                              {"days": ["sat"], "start": "09:00", "end": "13:00", "template": "saturday"}]},
        "numbers": [{"number": BUSINESS_NUMBER, "owner": "dana"},
                    {"number": RING_GROUP_NUMBER, "owner": "dana", "template": "ads",
                     "after_hours_template": "ads_closed"}]})
    saturday = decide(config, missed(when=at(2026, 11, 28, 10, 0)))
    assert (saturday.reason, saturday.template) == ("missed_call_text", "saturday")
    assert saturday.body.startswith("Acme Remodeling: our Saturday crew")
    weekday = decide(config, missed(when=at(2026, 11, 23, 10, 0)))
    assert (weekday.template, weekday.body[:9]) == ("missed_call", "Hi, this ")
    ads = replace(missed(when=at(2026, 11, 23, 10, 0)), did=RING_GROUP_NUMBER)
    assert decide(config, ads).template == "ads"
    ads_saturday = replace(missed(when=at(2026, 11, 28, 10, 0)), did=RING_GROUP_NUMBER)
    assert decide(config, ads_saturday).template == "ads"  # the number's own choice beats the business's window
    ads_night = replace(missed(when=at(2026, 11, 23, 20, 0)), did=RING_GROUP_NUMBER)
    night = decide(config, ads_night)
    assert (night.reason, night.template) == ("after_hours_text", "ads_closed")
    assert night.body.startswith("Acme Remodeling: the kitchen team is back Tuesday 7:00 AM.")


def test_a_number_with_its_own_hours(tmp_path):
    from lab.configs import RING_GROUP_NUMBER

    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    emergency = {"windows": [{"days": every_day, "start": "07:00", "end": "22:00"},
                             {"days": every_day, "start": "22:00", "end": "24:00", "template": "night"}]}
    config = config_with(tmp_path, **{
        "text.templates": {"emergency": "{business_name} emergency line: help is on the way.",
                           "night": "{business_name} night desk: the on-call plumber will call you."},
        "numbers": [{"number": BUSINESS_NUMBER, "owner": "dana"},
                    {"number": RING_GROUP_NUMBER, "owner": "dana", "hours": emergency,
                     "template": "emergency"}]})
    sunday_evening, sunday_late = at(2026, 11, 29, 20, 0), at(2026, 11, 29, 23, 0)
    assert decide(config, missed(when=sunday_late)).reason == "after_hours_text"
    emergency_line = replace(missed(when=sunday_evening), did=RING_GROUP_NUMBER)
    assert (decide(config, emergency_line).reason, decide(config, emergency_line).template) == (
        "missed_call_text", "emergency")
    late = decide(config, replace(emergency_line, ended_at=sunday_late))
    assert late.template == "night"  # a window of the number's own hours beats its template


def test_client_gets_the_client_text_with_name_or_fallback(tmp_path):
    d = decide(config_with(tmp_path), missed("+12125550150"))
    assert d.reason == "client_text" and d.body.startswith("Hi Jane, Acme Remodeling here.")
    nameless = config_with(tmp_path, contacts=[{"number": "+12125550150", "class": "client"}])
    assert decide(nameless, missed("+12125550150")).body.startswith("Hi there, Acme")


@pytest.mark.parametrize("caller, reason", [
    ("+12125550151", "caller_is_vendor"), ("+12125550152", "caller_is_blocked"),
    ("+18005550100", "not_textable"), ("+19005550100", "not_textable"),
    ("+447400123456", "country_not_allowed"), ("anonymous", "no_callback_number"),
])
def test_calls_that_get_no_text(tmp_path, caller, reason):
    d = decide(config_with(tmp_path), missed(caller))
    assert (d.send, d.reason) == (False, reason)


def test_allowed_countries_can_be_widened(tmp_path):
    config = config_with(tmp_path, **{"fraud.allowed_countries": ["US", "GB"]})
    assert decide(config, missed("+447400123456")).send


def test_landlines_only_when_the_gateway_can_read_texts_aloud(tmp_path):
    config = config_with(tmp_path, **{"fraud.allowed_countries": ["US", "GB"]})
    assert decide(config, missed("+442079460018")).reason == "not_textable"
    voice = config_with(tmp_path, **{"fraud.allowed_countries": ["US", "GB"], "text.allow_landlines": True})
    assert decide(voice, missed("+442079460018")).send
    assert decide(voice, missed("+18005550100")).reason == "not_textable"


@pytest.mark.parametrize("recent, reason", [
    (RecentTexts(last_hour=60), "fraud_rate_cap"),
    (RecentTexts(last_day=300), "fraud_rate_cap"),
    (RecentTexts(same_prefix_last_hour=5), "fraud_prefix_burst"),
])
def test_fraud_guards(tmp_path, recent, reason):
    assert decide(config_with(tmp_path), missed(), recent).reason == reason
    assert decide(config_with(tmp_path), missed(), RecentTexts(59, 299, 4)).send


def test_a_first_text_must_name_the_business(tmp_path):
    raw = base_config(tmp_path, **{"text.template": "Sorry we missed you!"})
    with pytest.raises(ConfigError) as caught:
        parse(yaml.safe_dump(raw), base=tmp_path)
    assert "must name the business" in caught.value.problems[0][1]


def test_check_reports_each_template_with_encoding_and_warnings(tmp_path):
    from textback.checks import template_report

    config = config_with(tmp_path, **{
        "text.template": "Hi, it’s {business_name} 🙂 " + "We will call you back soon. " * 6,
        "text.templates": {"saturday": "{business_name}: the Saturday crew will call you."}})
    report = "\n".join(template_report(config))
    assert "text.templates.saturday: 72 characters, GSM-7, 1 segment(s)" in report
    assert "text.template:" in report and "UCS-2" in report
    assert "'’' '🙂' force UCS-2" in report
    assert "warning: 4 segments" in report
    assert "text.after_hours_template:" in report and "GSM-7, 1 segment(s)" in report


def test_quiet_hours_are_off_by_default_and_delay_when_on(tmp_path):
    late = missed(when=at(2026, 11, 23, 21, 30))
    assert decide(config_with(tmp_path), late).due_at == late.ended_at + 30
    quiet = config_with(tmp_path, **{"quiet_hours.enabled": True})
    assert decide(quiet, late).due_at == at(2026, 11, 24, 8, 0)
    assert decide(quiet, missed(when=at(2026, 11, 23, 10, 0))).due_at == at(2026, 11, 23, 10, 0) + 30


def test_explain_says_what_would_happen(tmp_path):
    from click.testing import CliRunner

    from textback.cli import main

    config = base_config(tmp_path, **{
        "hours": {"windows": [{"days": list(WEEKDAYS), "start": "07:00", "end": "17:00"}],
                  "holiday_calendar": "US"},
        "text.after_hours_template": "{business_name}: closed, back {next_opening|soon}.",
        "contacts": [{"number": "+12125550151", "name": "Lumber Supply", "class": "vendor"}]})
    config["numbers"][0]["ring"] = {"targets": "PJSIP/office1&PJSIP/office2", "timeout_seconds": 25,
                                    "after_hours_targets": "PJSIP/carrier/+19175550199"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    out = CliRunner().invoke(main, ["explain", "-c", str(path), "--caller", "212-555-0123",
                                    "--at", "2026-12-24 19:30"]).output
    assert "closed; opens Mon 2026-12-28 07:00" in out  # Christmas Day is a US holiday
    monday = CliRunner().invoke(main, ["explain", "-c", str(path), "--caller", "212-555-0123",
                                       "--at", "2026-12-21 10:00"]).output
    assert "open (window mon,tue,wed,thu,fri 07:00-17:00)" in monday
    assert "template   after_hours" in out and "back Monday 7:00 AM" in out
    assert "route      r1-12125550100: the AGI rings PJSIP/carrier/+19175550199 for 25 s" in out
    vendor = CliRunner().invoke(main, ["explain", "-c", str(path), "--caller", "+12125550151",
                                       "--at", "2026-12-21 10:00"]).output
    assert "vendor (Lumber Supply)" in vendor and "text       no: caller_is_vendor" in vendor
    assert "the AGI rings PJSIP/office1&PJSIP/office2 for 25 s" in vendor
    unrouted = CliRunner().invoke(main, ["explain", "-c", str(path), "--caller", "+12125550123",
                                         "--number", "+12125550101"]).output
    assert "route      r2-12125550101: no `ring` section" in unrouted
    bad = CliRunner().invoke(main, ["explain", "-c", str(path), "--caller", "x", "--at", "soon"])
    assert bad.exit_code == 2
