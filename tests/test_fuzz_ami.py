"""Hostile AMI frames, as property tests: the read handler and the tracker never fall over.

The frames go over a real socket pair into the AMI edge's protocol. Every
recorded event among them must come out, in order, whatever junk, repeated
headers, odd UTF-8 or TCP chunking surrounds it; then the tracker eats
everything that came out. `make fuzz` runs these with a larger budget.
"""

from __future__ import annotations

import asyncio
import socket

from hypothesis import given, settings, strategies as st

from ami_listener.connection import _Protocol
from tests.budget import examples
from tests.replay import load_trace, trace_names
from textback.core.tracker import CallTracker

NAMES = ["Event", "Uniqueid", "Linkedid", "Channel", "ActionID", "ChanVariable", "CallerIDNum",
         "Context", "Exten", "DialStatus", "Cause", "BridgeUniqueid", "DestChannel", "Response",
         "DestUniqueid", "DestLinkedid", "Variable", "Value"]
VALUE = st.text(st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=40).filter(
    lambda v: v.strip().lower() != "shutdown")  # a Shutdown event closes the link, by design
RECORDED = [{k: v for k, v in event.items() if not k.startswith("_") and isinstance(v, str)}
            for name in trace_names() for event in load_trace(name)]


class Factory:
    """Stands where panoramisk's Manager sits: takes what the protocol hands on."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.malformed_count = 0

    def dispatch(self, message) -> None:
        self.events.append(dict(message.items()))

    def data_arrived(self) -> None:
        pass  # what the keepalive reads (a link that delivers is alive): tests/test_ami_wire.py

    def malformed(self, block: str, why: str) -> None:
        self.malformed_count += 1

    def repeated(self, message, names: list[str]) -> None:
        pass  # a repeated header that is not an id: tests/test_fuzz_ami_repeats.py

    def connection_lost(self, exc) -> None:
        pass


def frame(headers: list[tuple[str, str]]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers).encode() + b"\r\n"


recorded = st.tuples(st.sampled_from(RECORDED), st.sampled_from([None, "Uniqueid", "Linkedid", "Event"]))
hostile = st.one_of(
    st.lists(st.tuples(st.sampled_from(NAMES), VALUE), max_size=8),
    st.binary(max_size=80).map(lambda b: [("X", b.decode("latin-1").translate({13: None, 10: None}))]),
)


async def deliver(chunks: list[bytes]) -> Factory:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, protocol = await loop.create_connection(_Protocol, sock=ours)
    protocol.factory = factory = Factory()
    theirs.setblocking(False)
    for chunk in chunks + [frame([("Event", "FuzzEnd")])]:
        await loop.sock_sendall(theirs, chunk)
        await asyncio.sleep(0)
    for _ in range(400):
        if factory.events and factory.events[-1].get("Event") == "FuzzEnd":
            break
        await asyncio.sleep(0.005)
    transport.close()
    theirs.close()
    assert factory.events[-1].get("Event") == "FuzzEnd", "the read handler stopped delivering"
    factory.events.pop()
    return factory


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.one_of(recorded.map(lambda r: ("recorded", r)), hostile.map(lambda h: ("hostile", h))),
                max_size=12), st.data())
def test_every_recorded_event_survives_the_junk_around_it(frames, data):
    wire, marks, repeated = b"", [], 0
    for index, (kind, value) in enumerate(frames):
        if kind == "hostile":
            wire += frame(value)
            continue
        event, doubled = value
        headers = [*event.items(), ("FuzzMark", str(index))]
        if doubled is not None and doubled in event:
            headers.append((doubled, "a second one"))  # repeated id header: dropped, one log line
            repeated += 1
        else:
            marks.append(str(index))
        wire += frame(headers)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)]) if b > a]
    factory = asyncio.run(deliver(chunks))
    assert [e["FuzzMark"] for e in factory.events if "FuzzMark" in e] == marks
    assert factory.malformed_count >= repeated
    tracker = CallTracker(["carrier"], ["from-carrier", "textback-inbound"])
    for step, event in enumerate(factory.events):
        tracker.feed(event, 1000.0 + step)
    tracker.expire(10_000.0)
