"""The self-test's pure parts: its schedule, its report, its configuration."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from lab.configs import base_config, write_config
from textback.config import ConfigError, load
from textback.core.selftest import (FAIL, NOT_RUN, PASS, SKIPPED, Report, StepResult, complete,
                                    expected_reason, parse_schedule)

NEW_YORK = ZoneInfo("America/New_York")


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=NEW_YORK)


@pytest.mark.parametrize("now, expected", [
    (at(2026, 11, 30, 7, 0), at(2026, 11, 30, 7, 30)),   # Monday before 07:30: today
    (at(2026, 11, 30, 7, 30), at(2026, 12, 7, 7, 30)),   # exactly then: it ran, next week
    (at(2026, 12, 2, 12, 0), at(2026, 12, 7, 7, 30)),    # Wednesday: next Monday
])
def test_a_weekly_schedule_runs_on_its_day_at_its_local_time(now, expected):
    assert parse_schedule("mon 07:30").next_after(now) == expected


def test_the_local_time_holds_across_a_dst_change():
    # 2026-03-08 is the spring-forward Sunday in New York: 07:30 EDT is 11:30 UTC, not 12:30.
    run = parse_schedule("mon 07:30").next_after(at(2026, 3, 5, 9, 0))
    assert run == at(2026, 3, 9, 7, 30) and run.utcoffset().total_seconds() == -4 * 3600


def test_a_time_the_spring_forward_skips_runs_when_the_gap_ends():
    assert parse_schedule("sun 02:30").next_after(at(2026, 3, 8, 1, 0)) == at(2026, 3, 8, 3, 30)


def test_several_days_and_daily():
    assert parse_schedule("mon,thu 07:30").next_after(at(2026, 12, 1, 8, 0)) == at(2026, 12, 3, 7, 30)
    assert parse_schedule("daily 23:59").next_after(at(2026, 12, 1, 23, 59)) == at(2026, 12, 2, 23, 59)


@pytest.mark.parametrize("text, says", [
    ("monday 07:30", "unknown day"), ("mon 7:30", "not a schedule"), ("mon 24:00", "not a schedule"),
    ("07:30", "not a schedule"), ("mon,fri", "not a schedule"),
])
def test_a_wrong_schedule_says_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says):
        parse_schedule(text)


def test_a_run_stopped_by_a_failure_names_it_and_marks_the_rest_not_run():
    results = [StepResult("ami", PASS, 0.01, "logged in"), StepResult("trunk", FAIL, 0.02, "no 'carier'")]
    report = complete(results, 100.0, 101.5)
    assert [s.status for s in report.steps] == [PASS, FAIL] + [NOT_RUN] * 6
    assert not report.passed and report.failed_step.name == "trunk"
    assert report.subject("Acme") == "textback self-test FAILED at trunk (Acme)"
    text = report.text("America/New_York", at(2026, 11, 30, 7, 30))
    assert "FAILED in 1.5 s" in text and "stopped at step 'trunk'" in text
    assert "FAIL       0.02 s  2. trunk" in text and "NOT RUN            3. call" in text


def test_skipped_steps_do_not_fail_a_run_and_the_report_survives_the_store():
    steps = [StepResult(name, PASS, 0.1, "") for name in
             ("ami", "trunk", "call", "missed", "template", "gateway")]
    steps += [StepResult("reply", SKIPPED, 0.0, "not asked for"),
              StepResult("reply_mail", SKIPPED, 0.0, "")]
    report = complete(steps, 1.0, 2.0)
    assert report.passed and report.failed_step is None
    assert report.subject("Acme") == "textback self-test passed (Acme)"
    row = {"started_at": 1.0, "finished_at": 2.0, "steps": report.steps_json()}
    assert Report.from_row(row) == report
    assert json.loads(report.steps_json())[6] == {"name": "reply", "status": SKIPPED,
                                                  "seconds": 0.0, "detail": "not asked for"}


def test_the_expected_reason_is_not_dialled_unless_phones_ring():
    assert expected_reason(False) == "not_dialled" and expected_reason(True) is None


def selftest_problems(tmp_path, selftest, **more):
    config = base_config(tmp_path, admin_email="it@acme.example", selftest=selftest, **more)
    with pytest.raises(ConfigError) as caught:
        load(write_config(tmp_path, config))
    return caught.value.problems


def test_a_wrong_selftest_section_is_named_by_its_yaml_path_and_line(tmp_path):
    problems = dict(selftest_problems(tmp_path, {
        "recipient": "12", "schedule": "monday 7:30", "ring_phone": True}))
    keys = {where.split(" (line")[0]: message for where, message in problems.items()}
    assert set(keys) == {"selftest.recipient", "selftest.schedule", "selftest.ring_phone"}
    assert "not a schedule" in keys["selftest.schedule"]
    assert "unknown key" in keys["selftest.ring_phone"]
    assert all("(line " in where for where in problems)


def test_the_selftest_needs_a_business_number_an_admin_and_a_place_to_call(tmp_path):
    [(_, message)] = selftest_problems(tmp_path, {"recipient": "+12125550177",
                                                  "number": "+12125550199"})
    assert "selftest.number: +12125550199 is not one of `numbers`" in message
    [(_, message)] = selftest_problems(tmp_path, {"recipient": "+12125550177"},
                                       **{"inbound": {"contexts": ["from-pstn"]}})
    assert "name the inbound `context`" in message
    config = base_config(tmp_path, selftest={"recipient": "+12125550177"})
    with pytest.raises(ConfigError, match="set admin_email"):
        load(write_config(tmp_path, config))


def test_the_selftest_ami_secret_is_read_and_masked(tmp_path):
    (tmp_path / "selftest.secret").write_text("originate-only-secret\n")
    config = base_config(tmp_path, admin_email="it@acme.example", selftest={
        "recipient": "(212) 555-0177", "schedule": "mon 07:30",
        "ami": {"username": "textback-selftest", "secret": {"file": "selftest.secret"}}})
    loaded = load(write_config(tmp_path, config))
    assert loaded.config.selftest.recipient == "+12125550177"
    assert loaded.secrets.selftest_ami.get_secret_value() == "originate-only-secret"
    assert "originate-only-secret" not in loaded.secrets.redactor().url(
        "login with originate-only-secret")
    assert loaded.config.selftest_number().number == "+12125550100"


def test_the_example_selftest_section_is_valid_once_uncommented(tmp_path, monkeypatch):
    import yaml

    text = open("config.example.yaml").read()
    start = text.index("#selftest:")
    block = text[start:text.index("\n\n", start)]
    section = yaml.safe_load("\n".join(line[1:] for line in block.splitlines()))
    example = yaml.safe_load(text)
    (tmp_path / "ami.secret").write_text("x")
    (tmp_path / "ami-selftest.secret").write_text("y")
    monkeypatch.setenv("TEXTBACK_SMTP_PASSWORD", "z")
    loaded = load(write_config(tmp_path, {**example, **section}))
    assert loaded.config.selftest.schedule == "mon 07:30"
    assert loaded.secrets.selftest_ami.get_secret_value() == "y"
