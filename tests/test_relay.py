"""The owner's own phone, the pure parts: the alert text, what an answer means, the owner's
quiet hours, and the config keys (owners[].alerts) that `textback check` validates."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, RING_GROUP_NUMBER, base_config, write_config
from textback.cli import main
from textback.config import ConfigError, load
from textback.core.relay import (ALERT_MAX_SEGMENTS, HELP_TEXT, OWNER_MOBILE, START_TEXT,
                                 STOP_TEXT, Answer, alert_text,
                                 failure_reason, not_sent, parse_answer, parse_window)
from textback.core.replies import parse_command
from textback.core.rules import decide
from textback.core.segments import count_segments
from textback.core.tracker import CallFinished
from textback.core.views import call_title

EASTERN = ZoneInfo("America/New_York")
MOBILE = "+19175550188"


def test_the_alert_reads_as_the_issue_shows_it():
    assert alert_text("+12125550123", "Bob", "We need a kitchen quote, can you come?", 12) == (
        '(212) 555-0123 Bob: "We need a kitchen quote, can you come?" Reply to answer. #12')
    assert alert_text("+12125550123", "", "Hi", 7) == '(212) 555-0123: "Hi" Reply to answer. #7'


def test_a_long_reply_is_cut_to_fit_and_says_so():
    words = "We need a kitchen quote, can you come out this week? " * 10
    text = alert_text("+12125550123", "Bob", words, 12)
    assert text.startswith('(212) 555-0123 Bob: "We need a kitchen quote, can')
    assert text.endswith('…" Reply to answer. #12')
    assert count_segments(text).segments == ALERT_MAX_SEGMENTS
    longer = alert_text("+12125550123", "Bob", words + "x", 12)
    assert longer == text  # as much as fits, no more


def test_the_callers_name_and_words_never_carry_a_control_character():
    text = alert_text("+12125550123", "Bob\r\nX-Evil: 1\x1b[31m", "line one\nline two\x00", 3)
    assert all(ch.isprintable() for ch in text)
    assert '"line one line two" Reply' in text
    assert alert_text("+12125550123", "Bob", "", 3).endswith('"(empty text)" Reply to answer. #3')


def test_the_intake_labels_lead_the_alert_in_gsm_7_and_it_still_fits():
    labels = "Kitchen · ~$75k · 11215 (in area)"
    text = alert_text("+12125550123", "Bob", "We need a kitchen quote", 12, labels)
    assert text == ('Kitchen, ~$75k, 11215 (in area). (212) 555-0123 Bob: "We need a kitchen quote"'
                    ' Reply to answer. #12')
    assert count_segments(text).encoding == "GSM-7"
    words = "We need a kitchen quote, can you come out this week? " * 10
    long = alert_text("+12125550123", "Bob", words, 12, labels)
    assert long.startswith('Kitchen, ~$75k, 11215 (in area). (212) 555-0123 Bob: "We need a')
    assert long.endswith('…" Reply to answer. #12')
    assert count_segments(long).segments == ALERT_MAX_SEGMENTS
    hostile = alert_text("+12125550123", "", "Hi", 3, "Kitchen\r\nX-Evil: 1 · " + "Tue " * 40)
    assert all(ch.isprintable() for ch in hostile) and count_segments(hostile).segments <= 2
    assert hostile.startswith("Kitchen X-Evil: 1, Tue") and hostile.endswith('"Hi" Reply to answer. #3')
    assert alert_text("+12125550123", "", "Hi", 7, "") == '(212) 555-0123: "Hi" Reply to answer. #7'
    # The caller's bare area code is what the number says; it takes no room.
    assert alert_text("+12125550123", "", "Hi", 7, "area 212") == alert_text(
        "+12125550123", "", "Hi", 7)
    assert alert_text("+12125550123", "", "Hi", 7, "Roof · area 212").startswith("Roof. (212)")


@pytest.mark.parametrize("body, answer", [
    ("Tuesday at 10 works", Answer(None, text="Tuesday at 10 works")),
    ("#12 Tuesday at 10 works", Answer(12, text="Tuesday at 10 works")),
    ("  #12: Tuesday", Answer(12, text="Tuesday")),
    ("#12", Answer(12)),
    ("#won 82000", Answer(None, command="won", argument="82000")),
    ("#12 #WON 82000", Answer(12, command="won", argument="82000")),
    ("#assign sam", Answer(None, command="assign", argument="sam")),
    ("#12 #spam", Answer(12, command="spam")),
    ("#1st floor is fine", Answer(None, text="#1st floor is fine")),  # no code: a word follows
    ("#wonderful news", Answer(None, text="#wonderful news")),
    ("We can #book you Tuesday", Answer(None, text="We can #book you Tuesday")),
])
def test_what_an_answer_means(body, answer):
    assert parse_answer(body) == answer


def test_what_textback_texts_the_owner_itself_takes_one_segment():
    for text in (HELP_TEXT, STOP_TEXT, START_TEXT):
        assert count_segments(text).segments == 1, text


def test_email_and_texts_share_one_command_parser():
    assert parse_command("#Booked") == ("booked", "")
    assert parse_command("#won 82,000") == ("won", "82,000")
    assert parse_command("#bookedx") is None


def test_why_an_answer_did_not_go_in_a_few_words():
    assert not_sent("+12125550123", failure_reason("failed", "twilio", "HTTP 400: code 30007")) == (
        "textback: your answer to (212) 555-0123 was not sent: their carrier filtered the message.")
    assert failure_reason("failed", "asterisk", "MessageSend: Error").startswith(
        "the SMS gateway refused it")
    assert failure_reason("expired", "twilio", "30007") == (
        "it could not be sent in time. Call them instead.")


def at(*when: int) -> float:
    return datetime(*when, tzinfo=EASTERN).timestamp()


def test_quiet_hours_over_midnight_hold_until_they_end():
    window = parse_window("21:00-07:00")
    assert window.held_until(at(2026, 12, 7, 20, 59), "America/New_York") is None
    assert window.held_until(at(2026, 12, 7, 21, 0), "America/New_York") == at(2026, 12, 8, 7, 0)
    assert window.held_until(at(2026, 12, 8, 3, 0), "America/New_York") == at(2026, 12, 8, 7, 0)
    assert window.held_until(at(2026, 12, 8, 7, 0), "America/New_York") is None
    # the morning after the clocks spring forward is still 07:00 local
    assert window.held_until(at(2027, 3, 13, 23, 0), "America/New_York") == at(2027, 3, 14, 7, 0)


def test_quiet_hours_within_a_day():
    window = parse_window("12:00-13:30")
    assert window.held_until(at(2026, 12, 7, 12, 15), "America/New_York") == at(2026, 12, 7, 13, 30)
    assert window.held_until(at(2026, 12, 7, 13, 30), "America/New_York") is None
    assert str(window) == "12:00-13:30"


@pytest.mark.parametrize("value", ["9pm-7am", "21:00-21:00", "25:00-07:00", "21:00"])
def test_a_window_that_is_not_one_is_refused(value):
    with pytest.raises(ValueError):
        parse_window(value)


def problems_of(tmp_path, config) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load(write_config(tmp_path, config))
    return caught.value.problems


def with_alerts(tmp_path, *alerts: dict):
    config = base_config(tmp_path)
    config["owners"] = [{"id": f"o{i}", "name": f"Owner {i}", "email": f"o{i}@acme.example",
                         "alerts": a} for i, a in enumerate(alerts)]
    config["numbers"] = [{"number": BUSINESS_NUMBER, "owner": "o0"}]
    return config


def test_owner_alerts_load_with_their_defaults(tmp_path):
    config = with_alerts(tmp_path, {"channels": ["email", "sms"], "sms": "(917) 555-0188",
                                    "quiet_hours": "21:00-07:00"}, {})
    loaded = load(write_config(tmp_path, config)).config
    texting, mailing = loaded.owners
    assert texting.alerts.sms == MOBILE and texting.alerts.chosen(None) == {"email", "sms"}
    assert str(texting.alerts.quiet_window()) == "21:00-07:00"
    assert mailing.alerts.channels == ["email", "push"] and "sms" not in mailing.alerts.chosen(None)
    assert texting.alerts.chosen(["email"]) == {"email"}  # the owner turned texts off in Settings
    assert loaded.owner_by_mobile(MOBILE) is texting and loaded.owner_by_mobile(None) is None


def test_any_mix_of_channels_and_never_none(tmp_path):
    config = with_alerts(tmp_path, {"channels": ["sms"], "sms": MOBILE}, {"channels": ["push"]})
    texting, pushing = load(write_config(tmp_path, config)).config.owners
    assert texting.alerts.chosen(None) == {"sms"} and pushing.alerts.chosen(None) == {"push"}
    assert texting.alerts.chosen(["push", "sms"]) == {"push", "sms"}
    # A stored choice of texts only, and the config no longer has a mobile to text: email.
    assert pushing.alerts.chosen(["sms"]) == {"email"}


@pytest.mark.parametrize("alerts, key, words", [
    ({"channels": ["email", "sms"]}, "owners[0].alerts", "set `sms`"),
    ({"channels": ["sms"]}, "owners[0].alerts", "set `sms`"),
    ({"channels": []}, "owners[0].alerts.channels", "at least 1 item"),
    ({"channels": ["push", "push"]}, "owners[0].alerts", "listed twice"),
    ({"channels": ["email", "fax"]}, "owners[0].alerts.channels[1]", "'email', 'sms' or 'push'"),
    ({"sms": "not a number"}, "owners[0].alerts.sms", "not a valid phone number"),
    ({"quiet_hours": "late"}, "owners[0].alerts.quiet_hours", "HH:MM-HH:MM"),
    ({"sms": MOBILE, "sms_from": RING_GROUP_NUMBER}, "owners[0].alerts.sms_from",
     "not one of `numbers`"),
    ({"sms": BUSINESS_NUMBER}, "owners[0].alerts.sms", "one of the business `numbers`"),
])
def test_a_bad_alerts_key_is_named_with_its_line(tmp_path, alerts, key, words):
    [(where, message)] = problems_of(tmp_path, with_alerts(tmp_path, alerts))
    assert where.startswith(f"{key} (line "), where
    assert words in message


def test_two_owners_cannot_share_a_mobile(tmp_path):
    [(where, message)] = problems_of(tmp_path, with_alerts(tmp_path, {"sms": MOBILE},
                                                           {"sms": "+1 917 555 0188"}))
    assert where.startswith("owners[1].alerts.sms (line ")
    assert "owners[0]" in message


def test_textback_check_names_the_key_and_line(tmp_path):
    path = write_config(tmp_path, with_alerts(tmp_path, {"quiet_hours": "9pm-7am"}))
    result = CliRunner().invoke(main, ["check", "-c", str(path)])
    assert result.exit_code == 2
    assert "owners[0].alerts.quiet_hours (line " in result.output


def test_a_call_from_an_owners_mobile_is_never_a_lead(tmp_path):
    config = load(write_config(tmp_path, with_alerts(tmp_path, {"sms": MOBILE}))).config
    call = CallFinished(call_id="1.1", did=BUSINESS_NUMBER, caller_id=MOBILE, caller_name="",
                        trunk_channel="PJSIP/carrier-1", started_at=at(2026, 12, 7, 10, 0),
                        ended_at=at(2026, 12, 7, 10, 1), outcome="missed", reason="no_answer")
    decision = decide(config, call)
    assert (decision.send, decision.reason, decision.owner_id) == (False, OWNER_MOBILE, None)
    assert call_title("missed", "no_answer", decision.reason) == (
        "Missed call: nobody picked up. Not texted: an owner's own mobile.")
