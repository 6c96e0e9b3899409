"""Repeated headers, as property tests, from the wire through the AMI edge, the tracker and the
daemon's finishing path: a repeat changes nothing and loses no call.

Standard Asterisk repeats only the channel variables, but a buggy peer, or a
value with a line break in an unescaped field (AppData, a UserEvent's
fields), can repeat any header. The edge keeps the first value of each
header that is not an id (Asterisk writes its own fields before any free
text), so each recorded call, with any of its headers repeated with any
value, ends as the same row in the store as the call without repeats.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time

from hypothesis import HealthCheck, given, settings, strategies as st
from pydantic import SecretStr

from ami_listener.connection import LIST_VALUED_SUFFIX, SINGLE_VALUED, AmiConnection, _Protocol
from lab.configs import base_config, write_config
from tests.budget import examples
from tests.replay import TRACES, renamed
from textback.config import load
from textback.daemon import Daemon
from textback.store import Store

# Recorded calls with an inbound caller, one of each way a call ends.
CALLS = ["noanswer", "busy", "voicemail", "caller_hung_up", "ivr_abandoned", "queue_abandoned",
         "unavailable", "answered", "freepbx_ringgroup_answered", "agi_routed_closed", "named_caller"]
ROW = ("caller", "caller_raw", "caller_name", "business_number", "outcome", "reason", "decision", "route")
SKIPPED = {"_t", "content"}  # the trace's time, and panoramisk's body of a Response: Follows
# A value never ends in white space: at the end of a message it would be stripped with the
# message's own, and "Name:" without its space is no header at all (so no repeat).
VALUE = st.text(st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=40).map(
    lambda v: v.rstrip() or "x")
_runs = itertools.count()


def raw_trace(name: str) -> list[dict]:
    """The trace as Asterisk wrote it (tests.replay.load_trace unescapes, the edge must do it)."""
    with open(TRACES / f"{name}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def repeatable(event: dict) -> list[str]:
    """The headers of `event` whose repeat the edge settles by keeping the first value."""
    return [name for name in event if name not in SKIPPED and name.lower() not in SINGLE_VALUED
            and not name.lower().endswith(LIST_VALUED_SUFFIX)]


def wire(event: dict, repeats: list[tuple[str, str, int]]) -> bytes:
    """`event` framed as AMI, each (header, value, gap) repeated `gap` lines after the original."""
    lines = []
    for name, value in event.items():
        if name in SKIPPED:
            continue
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{name}: {item}")
    for name, value, gap in repeats:
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{name}: "))
        lines.insert(min(len(lines), at + 1 + gap), f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def through_the_daemon(workdir, events: list[dict],
                             repeats: dict[int, list[tuple[str, str, int]]]) -> tuple[list[dict], int]:
    """Send `events` over a socket into a real AmiConnection feeding a real (offline) Daemon;
    return the calls the store holds afterwards and how many messages repeated a header."""
    workdir.mkdir()
    daemon = Daemon(load(write_config(workdir, base_config(workdir))))
    daemon.attach(await Store.open(daemon.config.storage.path))
    try:
        connection = AmiConnection("127.0.0.1", 1, "u", SecretStr("x"), on_event=daemon.on_event)
        manager = connection._manager
        manager.connection_lost = lambda exc: None  # never started: nothing to reconnect
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        transport, protocol = await loop.create_connection(_Protocol, sock=ours)
        protocol.factory = manager
        theirs.setblocking(False)
        seen = []
        daemon_on_event = daemon.on_event
        connection._on_event = lambda event: (seen.append(event), daemon_on_event(event))
        for index, event in enumerate(events):
            await loop.sock_sendall(theirs, wire(event, repeats.get(index, [])))
        for _ in range(1000):
            if len(seen) == len(events):
                break
            await asyncio.sleep(0.005)
        transport.close()
        theirs.close()
        assert len(seen) == len(events), "the edge lost events"
        assert all(isinstance(v, str) for e in seen for k, v in e.items()
                   if not k.lower().endswith(LIST_VALUED_SUFFIX))
        daemon.expire_calls(time.time() + 3600)
        await daemon.settle()
        assert daemon.tracker.active_calls == 0
        rows = await daemon.store.calls(0)
        return [{key: row[key] for key in ("linkedid", *ROW)} for row in rows], connection.repeated
    finally:
        await daemon.settle()
        await daemon.store.close()


_expected: dict[str, list[dict]] = {}


def expected(tmp_path, name: str, events: list[dict]) -> list[dict]:
    if name not in _expected:
        _expected[name] = asyncio.run(through_the_daemon(tmp_path / f"plain-{next(_runs)}", events, {}))[0]
        assert _expected[name], f"{name}: no call recorded without repeats"
    return _expected[name]


@st.composite
def call_with_repeats(draw):
    name = draw(st.sampled_from(CALLS))
    events = renamed(raw_trace(name), "x")  # one call id for every example: rows compare equal
    indexes = draw(st.lists(st.integers(0, len(events) - 1), min_size=1, max_size=6, unique=True))
    repeats = {}
    for index in indexes:
        names = repeatable(events[index])
        if names:
            chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
            repeats[index] = [(n, draw(VALUE), draw(st.integers(0, 3))) for n in chosen]
    return name, events, repeats


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(call_with_repeats())
def test_a_repeated_header_changes_nothing_and_loses_no_call(tmp_path, case):
    name, events, repeats = case
    want = expected(tmp_path, name, events)
    rows, repeated = asyncio.run(through_the_daemon(tmp_path / f"run-{next(_runs)}", events, repeats))
    assert rows == want
    assert repeated == len(repeats)


@settings(max_examples=examples(10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(CALLS), st.sampled_from(["CallerIDNum", "CallerIDName", "Exten"]), VALUE)
def test_every_event_repeating_a_caller_header_still_records_the_call(tmp_path, name, header, value):
    """The headers the daemon's finishing path reads, repeated on every event that has them."""
    events = renamed(raw_trace(name), "x")
    want = expected(tmp_path, name, events)
    repeats = {i: [(header, value, 0)] for i, e in enumerate(events) if header in e}
    rows, _ = asyncio.run(through_the_daemon(tmp_path / f"run-{next(_runs)}", events, repeats))
    assert rows == want
