"""textback.core.delivery: deadlines, Retry-After, pacing and the owner's notice (pure)."""

from __future__ import annotations

import calendar

import pytest

from textback.core.delivery import (Pacer, Undelivered, deadline, parse_retry_after,
                                    undelivered_notice)

NOW = calendar.timegm((2015, 10, 21, 7, 0, 0))  # Wed, 21 Oct 2015 07:00:00 GMT


def test_a_text_may_wait_max_age_after_it_was_due_and_a_confirmation_five_minutes():
    assert deadline("auto", 1000.0, 3600) == 4600.0
    assert deadline("owner", 1000.0, 3600) == 4600.0
    assert deadline("optout_confirmation", 1000.0, 3600) == 1300.0
    assert deadline("optout_confirmation", 1000.0, 120) == 1120.0  # never later than the others


@pytest.mark.parametrize("value, seconds", [
    ("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("99999999", 3600.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 1680.0),       # IMF-fixdate
    ("Wednesday, 21-Oct-15 07:28:00 GMT", 1680.0),   # obsolete RFC 850 form
    ("Wed Oct 21 07:28:00 2015", 1680.0),            # obsolete asctime form, GMT
    ("Wed, 21 Oct 2015 06:00:00 GMT", 0.0),          # in the past: now
])
def test_retry_after_takes_both_rfc_forms(value, seconds):
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "١٢", "12 s",
                                   "Wed, 32 Oct 2015 07:28:00 GMT", "Mon, 99 Foo"])
def test_a_garbage_retry_after_counts_as_absent(value):
    assert parse_retry_after(value, NOW) is None


def test_the_pacer_spaces_sends_and_a_hold_stops_them_all():
    pacer = Pacer(per_second=4)
    assert [pacer.reserve(10.0) for _ in range(3)] == [10.0, 10.25, 10.5]
    pacer.hold(20.0)
    assert pacer.reserve(11.0) == 20.0 and pacer.reserve(11.0) == 20.25
    unlimited = Pacer()
    assert [unlimited.reserve(10.0) for _ in range(3)] == [10.0, 10.0, 10.0]
    unlimited.hold(12.0)
    unlimited.hold(11.0)  # a shorter hold never shortens a longer one
    assert unlimited.reserve(10.0) == 12.0


def undelivered(**changes) -> Undelivered:
    fields = dict(kind="auto", state="expired", caller="+12125550123", caller_name="Jane\nDoe",
                  business_number="+12125550100", body="Sorry we missed your call!",
                  error="HTTP 503", first_due_at=NOW, call_at=NOW - 60, call_reason="no_answer")
    return Undelivered(**{**fields, **changes})


def test_the_owner_is_told_who_called_when_and_why_nothing_was_texted():
    subject, body = undelivered_notice(undelivered(), "America/New_York")
    assert subject == "Call back +12125550123: the text to them was not sent"
    assert body.splitlines()[:3] == [
        "+12125550123 (Jane Doe) called +12125550100 on Wed 21 Oct 02:59 EDT: nobody picked up.",
        "The text to them could not be sent in time (due Wed 21 Oct 03:00 EDT).",
        "Please call them back."]
    assert "Last error: HTTP 503" in body


def test_each_kind_of_text_gets_its_own_notice():
    reply, _ = undelivered_notice(undelivered(kind="owner", call_at=None), "UTC")
    assert reply == "Not sent to +12125550123: your reply"
    stop, body = undelivered_notice(undelivered(kind="optout_confirmation", call_at=None), "UTC")
    assert stop == "+12125550123 opted out; no confirmation was texted"
    assert "five minutes" in body and "suppression list" in body
    maybe, body = undelivered_notice(undelivered(state="unknown"), "UTC")
    assert maybe == "Call back +12125550123: the text to them may not have been sent"
    assert "may or may not have reached them" in body
