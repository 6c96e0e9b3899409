"""Ownership strategies: fixed, round robin, on-call schedule (pure)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from textback.config import NumberConfig
from textback.core.ownership import choose_owner

NY = ZoneInfo("America/New_York")
MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=NY)
SATURDAY_9 = datetime(2026, 11, 28, 9, 0, tzinfo=NY)


def number(**changes) -> NumberConfig:
    return NumberConfig(number="+12125550100", owner="dana", **changes)


def test_fixed():
    assert choose_owner(number(), MONDAY_9, 7) == ("dana", "fixed owner")


def test_round_robin_takes_turns():
    n = number(assignment="round_robin", owners=["dana", "sam", "lee"])
    assert [choose_owner(n, MONDAY_9, turn)[0] for turn in range(5)] == [
        "dana", "sam", "lee", "dana", "sam"]


def test_schedule_picks_the_shift_and_falls_back_to_the_owner():
    n = number(assignment="schedule", schedule=[
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "12:00", "owner": "sam"},
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "12:00", "end": "17:00", "owner": "lee"},
    ])
    assert choose_owner(n, MONDAY_9, 0)[0] == "sam"
    assert choose_owner(n, MONDAY_9.replace(hour=12), 0)[0] == "lee"
    assert choose_owner(n, MONDAY_9.replace(hour=17), 0)[0] == "dana"
    assert choose_owner(n, SATURDAY_9, 0)[0] == "dana"


@pytest.mark.parametrize("changes", [
    {"assignment": "round_robin"},
    {"assignment": "schedule"},
    {"assignment": "schedule", "schedule": [{"days": ["mon"], "start": "17:00", "end": "08:00",
                                             "owner": "sam"}]},
])
def test_incomplete_strategies_are_config_errors(changes):
    with pytest.raises(ValueError):
        number(**changes)
