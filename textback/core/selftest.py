"""The self-test's steps, their report, and its schedule: values in, values out, no I/O.

A self-test walks the path a real missed call takes, one step after another,
and stops at the first that fails: the steps after it are "not run", so the
report names the one place to look. A step the config does not ask for (the
reply path without `selftest.expect_reply_minutes`) is "skipped" and does not
fail the run. The I/O that performs each step is textback.workers.selftest.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

# (name, what it proves), in the order they run.
STEPS: tuple[tuple[str, str], ...] = (
    ("ami", "AMI login and event flow"),
    ("trunk", "the inbound trunk exists on the PBX"),
    ("call", "test call placed through AMI Originate"),
    ("missed", "the tracker calls it missed, with the right reason"),
    ("template", "the rules choose the right template"),
    ("gateway", "the gateway accepts the text"),
    ("reply", "a reply comes back and reaches the admin by email"),
    ("reply_mail", "the reply-mail listener accepts a reply and refuses a forged one"),
)
TITLES = dict(STEPS)

PASS, FAIL, SKIPPED, NOT_RUN = "pass", "fail", "skipped", "not run"

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SCHEDULE = re.compile(r"^\s*(?P<days>[a-z,]+)\s+(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)\s*$")


@dataclass(frozen=True)
class StepResult:
    name: str
    status: str  # PASS, FAIL, SKIPPED or NOT_RUN
    seconds: float  # how long the step took; 0 when it did not run
    detail: str


@dataclass(frozen=True)
class Report:
    started_at: float
    finished_at: float
    steps: tuple[StepResult, ...]

    @property
    def passed(self) -> bool:
        return all(step.status in (PASS, SKIPPED) for step in self.steps)

    @property
    def failed_step(self) -> StepResult | None:
        return next((step for step in self.steps if step.status == FAIL), None)

    def subject(self, business: str) -> str:
        failed = self.failed_step
        if failed is None:
            return f"textback self-test passed ({business})"
        return f"textback self-test FAILED at {failed.name} ({business})"

    def text(self, zone_name: str, started: datetime) -> str:
        """The report as the admin reads it: one line a step, with its status and its time."""
        lines = [f"textback self-test of {started:%a %d %b %Y %H:%M:%S %Z}: "
                 f"{'passed' if self.passed else 'FAILED'} "
                 f"in {self.finished_at - self.started_at:.1f} s", ""]
        for number, step in enumerate(self.steps, 1):
            took = f"{step.seconds:6.2f} s" if step.status in (PASS, FAIL) else " " * 8
            lines.append(f"{step.status.upper():<8} {took}  {number}. {step.name}: {TITLES[step.name]}")
            if step.detail:
                lines.append(f"{'':19}{step.detail}")
        failed = self.failed_step
        if failed is not None:
            lines += ["", f"The self-test stopped at step {failed.name!r}; the steps after it did "
                          f"not run. Real missed calls may not be texted until it passes again."]
        lines += ["", f"Times are {zone_name}. Run `textback selftest` to try again."]
        return "\n".join(lines)

    def steps_json(self) -> str:
        return json.dumps([asdict(step) for step in self.steps])

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Report":
        steps = tuple(StepResult(**step) for step in json.loads(row["steps"]))
        return cls(row["started_at"], row["finished_at"], steps)


def complete(results: list[StepResult], started_at: float, finished_at: float) -> Report:
    """The report of a run that ended after `results`: every step not reached is NOT_RUN."""
    done = {result.name for result in results}
    rest = [StepResult(name, NOT_RUN, 0.0, "") for name, _ in STEPS if name not in done]
    return Report(started_at, finished_at, tuple(results + rest))


def expected_reason(ring_phones: bool) -> str | None:
    """The reason a self-test call must get: the shipped dialplan rings nobody for it, so
    `not_dialled`; with ring_phones the phones really ring, and any missed reason will do."""
    return None if ring_phones else "not_dialled"


@dataclass(frozen=True)
class Schedule:
    days: frozenset[int]  # 0 = Monday
    hour: int
    minute: int

    def next_after(self, moment: datetime) -> datetime:
        """The first scheduled local time strictly after `moment` (an aware datetime).

        Wall-clock times: "mon 07:30" stays 07:30 across a DST change; a time the
        change skips runs at the first moment after the gap.
        """
        zone = moment.tzinfo
        day = moment.date()
        for offset in range(8):
            candidate_day = day + timedelta(days=offset)
            if candidate_day.weekday() not in self.days:
                continue
            naive = datetime(candidate_day.year, candidate_day.month, candidate_day.day,
                             self.hour, self.minute)
            candidate = _after_gap(naive.replace(tzinfo=zone))  # fold 0: a repeated hour's first pass
            if candidate > moment:
                return candidate
        raise AssertionError("a weekly schedule always has a next run within 8 days")


def _after_gap(candidate: datetime) -> datetime:
    """A wall time that a spring-forward skips does not exist: move it to the end of the gap."""
    round_trip = candidate.astimezone(timezone.utc).astimezone(candidate.tzinfo)
    if round_trip.replace(tzinfo=None) != candidate.replace(tzinfo=None):
        return round_trip
    return candidate


def parse_schedule(text: str) -> Schedule:
    """'mon 07:30', 'mon,thu 07:30' or 'daily 07:30' (local time); ValueError says what is wrong."""
    match = _SCHEDULE.match(text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not a schedule: write days and a 24-hour time, "
                         f"e.g. 'mon 07:30', 'mon,thu 07:30' or 'daily 07:30'")
    names = match["days"].split(",")
    if names == ["daily"]:
        days = frozenset(range(7))
    else:
        unknown = [name for name in names if name not in DAYS]
        if unknown:
            raise ValueError(f"unknown day(s) {', '.join(repr(u) for u in unknown)} in {text!r}; "
                             f"use {', '.join(DAYS)} or daily")
        days = frozenset(DAYS.index(name) for name in names)
    return Schedule(days, int(match["hour"]), int(match["minute"]))
