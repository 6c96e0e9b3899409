"""The AMI edge against a hostile peer on loopback: malformed framing, split UTF-8, header injection.

Asterisk itself never sends these, so this peer is a plain TCP server that
speaks the AMI wire format badly on purpose. The well-behaved paths are
tested against the real Asterisk in the lab tests.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, strategies as st
from pydantic import SecretStr

from ami_listener.connection import AmiConnection, AmiError, LoginRefused, try_login
from tests.replay import frame, load_trace

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


async def serve(script):
    """Start a one-connection AMI peer that answers Login, then runs `script(writer)`."""
    async def handle(reader, writer):
        writer.write(BANNER)
        login = await reader.readuntil(b"\r\n\r\n")
        action_id = next(line.split(b": ", 1)[1] for line in login.split(b"\r\n")
                         if line.lower().startswith(b"actionid"))
        writer.write(b"Response: Success\r\nActionID: " + action_id +
                     b"\r\nMessage: Authentication accepted\r\n\r\n")
        await writer.drain()
        await script(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def connect(port, events):
    ami = AmiConnection("127.0.0.1", port, "u", SecretStr("s"), on_event=events.append,
                        ping_interval=0.2, ping_timeout=0.3, reconnect_max=0.5)
    ami.start()
    await ami.wait_logged_in(3)
    return ami


@contextlib.asynccontextmanager
async def events_from(script, count: int):
    """Serve `script`, connect, and wait for `count` events; yields (connection, events)."""
    server, port = await serve(script)
    events = []
    ami = await connect(port, events)
    try:
        for _ in range(100):
            if len(events) >= count:
                break
            await asyncio.sleep(0.02)
        yield ami, events
    finally:
        await ami.close()
        server.close()


async def test_malformed_blocks_are_skipped_and_split_utf8_survives():
    async def script(reader, writer):
        writer.write(b"garbage without colon\r\n\r\n")
        event = "Event: UserEvent\r\nUserEvent: X\r\nBody: caf\u00e9 \u2014 ok\r\n\r\n".encode()
        cut = event.index(b"\xc3") + 1  # split inside the two bytes of é
        writer.write(event[:cut])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(event[cut:])
        await writer.drain()
        await asyncio.sleep(5)

    async with events_from(script, 1) as (ami, events):
        assert events[0]["Body"] == "caf\u00e9 \u2014 ok"
        assert ami.malformed == 1


async def test_a_peer_that_stops_answering_is_dropped_and_reconnected():
    connections = []

    async def silent(reader, writer):
        connections.append(writer)
        await asyncio.sleep(30)  # reads nothing, answers no Ping: a half-open link

    server, port = await serve(silent)
    ami = await connect(port, [])
    try:
        for _ in range(200):
            if len(connections) >= 2 and ami.logged_in:
                break
            await asyncio.sleep(0.02)
        assert len(connections) >= 2, "the dead link was never replaced"
    finally:
        await ami.close()
        server.close()


async def test_close_ends_the_keepalive_before_it_returns():
    """No Ping task outlives its connection (it would send on a link being closed, and asyncio
    would report a task destroyed while pending at exit)."""
    async def silent(reader, writer):
        await asyncio.sleep(30)

    server, port = await serve(silent)
    ami = await connect(port, [])
    keepalive = ami._keepalive  # noqa: SLF001 - the task close must end
    try:
        assert keepalive is not None and not keepalive.done()
    finally:
        await ami.close()
        server.close()
    assert keepalive.done()


async def test_a_peer_that_keeps_sending_is_kept_while_its_ping_answer_waits_behind(caplog):
    """A Ping unanswered in time on a link that kept delivering events is not a dead link:
    the answer is queued behind them (a burst, a busy host). Aborting would lose them. The
    spell is logged once, however many Pings it lasts."""
    connections = []

    async def busy(reader, writer):
        connections.append(writer)
        for n in range(80):  # 1.6 s of events, never a Pong: 3 Pings of 0.3 s go unanswered
            writer.write(f"Event: UserEvent\r\nUserEvent: Tick\r\nN: {n}\r\n\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.02)
        await asyncio.sleep(30)  # then silent: a dead link, which must still be dropped

    server, port = await serve(busy)
    events, told = [], []
    ami = AmiConnection("127.0.0.1", port, "u", SecretStr("s"), on_event=events.append,
                        on_behind=lambda: told.append(1), ping_interval=0.2, ping_timeout=0.3,
                        reconnect_max=0.5)
    ami.start()
    await ami.wait_logged_in(3)
    try:
        for _ in range(200):
            if len(events) >= 80:
                break
            await asyncio.sleep(0.02)
        assert [e["N"] for e in events] == [str(n) for n in range(80)]
        assert len(connections) == 1 and ami.behind >= 2 and len(told) == ami.behind
        spells = [r for r in caplog.records if "faster than textback reads" in r.getMessage()]
        assert len(spells) == 1
        for _ in range(200):
            if len(connections) >= 2:
                break
            await asyncio.sleep(0.02)
        assert len(connections) >= 2, "the link gone silent was never replaced"
    finally:
        await ami.close()
        server.close()


async def test_line_breaks_in_action_values_are_refused():
    async def idle(reader, writer):
        await asyncio.sleep(5)

    server, port = await serve(idle)
    ami = await connect(port, [])
    try:
        with pytest.raises(ValueError, match="line break"):
            await ami.action({"Action": "MessageSend", "Body": "hi\r\nAction: Originate"})
    finally:
        await ami.close()
        server.close()


async def test_try_login_reports_a_non_asterisk_port():
    async def http(reader, writer):
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(Exception, match="not an Asterisk manager port"):
            await try_login("127.0.0.1", port, "u", SecretStr("s"))
    finally:
        server.close()


async def test_try_login_reports_refusal():
    async def refuse(reader, writer):
        writer.write(BANNER)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"Response: Error\r\nMessage: Authentication failed\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(LoginRefused, match="Authentication failed"):
            await try_login("127.0.0.1", port, "u", SecretStr("s"))
    finally:
        server.close()


async def test_a_peer_that_accepts_tcp_but_never_answers_the_login_is_retried(caplog):
    """No banner, or a banner and then silence: without a timeout the daemon would wait forever."""
    for greeting, said in ((b"", "no banner"), (BANNER, "no answer to the Login")):
        connections = []

        async def mute(reader, writer, greeting=greeting):
            connections.append(writer)
            writer.write(greeting)
            await asyncio.sleep(30)

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ami = AmiConnection("127.0.0.1", port, "u", SecretStr("s"), on_event=lambda e: None,
                            login_timeout=0.2, reconnect_max=0.2)
        ami.start()
        try:
            for _ in range(200):
                if len(connections) >= 3:
                    break
                await asyncio.sleep(0.02)
            assert len(connections) >= 3, "the silent peer was never dropped and retried"
            assert not ami.logged_in
            assert f"accepted the connection but sent {said} within 0.2 s; reconnecting" in caplog.text
            assert "Traceback" not in caplog.text
        finally:
            await ami.close()
            server.close()
        caplog.clear()


async def test_repeated_id_headers_drop_one_message_not_the_rest_of_the_read(caplog):
    async def script(reader, writer):
        good = b"Event: Newchannel\r\nUniqueid: %d\r\nLinkedid: %d\r\n\r\n"
        writer.write(good % (1, 1)
                     + b"Event: Hangup\r\nEvent: Newchannel\r\nUniqueid: 2\r\n\r\n"
                     + b"Response: Success\r\nActionID: 7\r\nActionID: 8\r\n\r\n"
                     + b"Event: Hangup\r\nUniqueid: 3\r\nUniqueid: 4\r\nLinkedid: 3\r\n\r\n"
                     + b"Event: VarSet\r\nChanVariable: A=1\r\nChanVariable: B=2\r\nUniqueid: 5\r\n\r\n"
                     + good % (6, 6))
        await writer.drain()
        await asyncio.sleep(5)

    async with events_from(script, 3) as (ami, events):
        assert [(e["Event"], e["Uniqueid"]) for e in events] == [
            ("Newchannel", "1"), ("VarSet", "5"), ("Newchannel", "6")]
        assert events[1]["ChanVariable"] == ["A=1", "B=2"]  # headers that may repeat still do
        assert ami.malformed == 3
        assert "repeated ActionID" in caplog.text and "repeated Event" in caplog.text
        assert "Traceback" not in caplog.text


async def test_try_login_reports_an_over_long_answer():
    async def flood(reader, writer):
        writer.write(BANNER)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"Response: Success\r\nMessage: " + b"x" * 70000 + b"\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(AmiError, match="over-long banner or Login answer"):
            await try_login("127.0.0.1", port, "u", SecretStr("s"))
    finally:
        server.close()


def test_an_events_fields_are_its_headers_as_written():
    """ami_listener.connection.event_fields reads panoramisk's Message by its internals; an upgrade
    that changes them must fail here, not lose headers."""
    from panoramisk.message import Message

    from ami_listener.connection import event_fields

    message = Message.from_line("Event: Newchannel\r\nChannel: PJSIP/carrier-00000001\r\n"
                                "CallerIDNum: +12125550123\r\nChanVariable: A=1\r\n"
                                "ChanVariable: TEXTBACK_ROUTE=office\r\nExten: ")
    assert event_fields(message) == dict(message.items()) == {
        "Event": "Newchannel", "Channel": "PJSIP/carrier-00000001", "CallerIDNum": "+12125550123",
        "ChanVariable": ["A=1", "TEXTBACK_ROUTE=office"], "Exten": "", "content": ""}


async def test_every_event_reaches_the_handler_and_fullybooted_reaches_panoramisk_too():
    from panoramisk.message import Message
    from pydantic import SecretStr

    from ami_listener.connection import AmiConnection

    events, booted = [], []
    connection = AmiConnection("127.0.0.1", 1, "u", SecretStr("x"), on_event=events.append)
    connection._manager.register_event("FullyBooted", lambda manager, message: booted.append(message))
    for block in ("Event: FullyBooted\r\nStatus: Fully Booted", "Event: Newchannel\r\nUniqueid: 1"):
        connection._manager.dispatch(Message.from_line(block))
    assert [e["Event"] for e in events] == ["FullyBooted", "Newchannel"]
    assert [m["Event"] for m in booted] == ["FullyBooted"]
    await connection.close()


def ast_escape_c(text: str) -> str:
    """Asterisk's ast_escape_c (main/utils.c), as the model the edge's unescaping must invert."""
    table = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
             "\v": "\\v", "\\": "\\\\", "'": "\\'", '"': '\\"', "?": "\\?"}
    return "".join(table.get(ch, ch) for ch in text)


@given(st.text(st.characters(blacklist_characters="\x00"), max_size=40))
def test_escaped_names_and_channel_variables_come_back_as_they_were_set(name):
    from ami_listener.connection import unescaped_names

    escaped = ast_escape_c(name)
    fields = unescaped_names({"Event": "BridgeEnter", "CallerIDName": escaped, "ConnectedLineName": escaped,
                              "DestCallerIDName": escaped, "LocalTwoConnectedLineName": escaped,
                              "ChanVariable": [f"A={escaped}", "B=plain"], "DestChanVariable": f"C={escaped}",
                              "AppData": escaped, "Exten": escaped})
    assert fields == {"Event": "BridgeEnter", "CallerIDName": name, "ConnectedLineName": name,
                      "DestCallerIDName": name, "LocalTwoConnectedLineName": name,
                      "ChanVariable": [f"A={name}", "B=plain"], "DestChanVariable": f"C={name}",
                      "AppData": escaped, "Exten": escaped}  # written raw: left as they came


def test_names_asterisk_writes_raw_are_left_as_they_came():
    from ami_listener.connection import unescaped_names

    raw = "Pat O\\'Brien"
    assert unescaped_names({"Event": "OriginateResponse", "CallerIDName": raw})["CallerIDName"] == raw
    assert unescaped_names({"Event": "Status", "EffectiveConnectedLineName": raw,
                            "ConnectedLineName": raw}) == {
        "Event": "Status", "EffectiveConnectedLineName": raw, "ConnectedLineName": "Pat O'Brien"}
    assert unescaped_names({"Event": "Newchannel", "CallerIDName": "C:\\dir"})["CallerIDName"] == "C:\\dir"


def test_a_repeated_event_name_in_a_one_shot_answer_is_no_crash():
    """one_shot (textback init's endpoint listing) keeps a repeated id as a list: it matches no
    ActionID and no event name, and reading its fields does not fail."""
    from panoramisk.message import Message

    from ami_listener.connection import _settle_repeats, event_fields

    message = Message.from_line("Event: EndpointList\r\nEvent: X\r\nObjectName: a\r\nObjectName: b\r\n"
                                "CallerIDName: O\\'Brien")
    assert _settle_repeats(message) == (["Event"], ["ObjectName"])
    assert event_fields(message) == {"Event": ["EndpointList", "X"], "ObjectName": "a",
                                     "CallerIDName": "O'Brien", "content": ""}


async def test_ready_waits_for_fullybooted_even_when_it_shares_the_logins_packet():
    """A booting Asterisk answers the login before FullyBooted; a booted one sends it with the
    login's answer, in the same packet. Either way `ready` follows the event, once per login."""
    readies = []

    async def booting(reader, writer):
        await asyncio.sleep(0.3)
        writer.write(b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    server, port = await serve(booting)
    ami = AmiConnection("127.0.0.1", port, "u", SecretStr("s"), on_event=lambda e: None,
                        on_ready=lambda: readies.append("ready"), boot_wait=5)
    ami.start()
    try:
        await ami.wait_logged_in(3)
        assert ami.logged_in and not ami.ready and readies == []
        for _ in range(100):
            if ami.ready:
                break
            await asyncio.sleep(0.02)
        assert ami.ready and readies == ["ready"]
    finally:
        await ami.close()
        server.close()

    async def handle(reader, writer):  # the login's answer and FullyBooted in one write
        writer.write(BANNER)
        login = await reader.readuntil(b"\r\n\r\n")
        action_id = next(line.split(b": ", 1)[1] for line in login.split(b"\r\n")
                         if line.lower().startswith(b"actionid"))
        writer.write(b"Response: Success\r\nActionID: " + action_id + b"\r\nMessage: Authentication"
                     b" accepted\r\n\r\nEvent: FullyBooted\r\nStatus: Fully Booted\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    readies.clear()
    ami = AmiConnection("127.0.0.1", server.sockets[0].getsockname()[1], "u", SecretStr("s"),
                        on_event=lambda e: None, on_ready=lambda: readies.append("ready"), boot_wait=5)
    ami.start()
    try:
        await ami.wait_logged_in(3)
        await asyncio.sleep(0.1)
        assert ami.ready and readies == ["ready"]
    finally:
        await ami.close()
        server.close()


async def test_without_fullybooted_ready_comes_after_boot_wait_with_a_warning(caplog):
    """A user without `read = system` never hears FullyBooted: texts still go, after boot_wait."""
    server, port = await serve(lambda reader, writer: asyncio.sleep(5))
    ami = AmiConnection("127.0.0.1", port, "u", SecretStr("s"), on_event=lambda e: None,
                        boot_wait=0.4)
    ami.start()
    try:
        await ami.wait_logged_in(3)
        assert not ami.ready
        await asyncio.sleep(0.6)
        assert ami.ready
        assert "no FullyBooted within" in caplog.text
        assert "lacks `read = system`" in caplog.text
    finally:
        await ami.close()
        server.close()


def _recorded_newchannel_with_its_uniqueid_twice(uniqueid: str) -> bytes:
    """The lab's recorded Newchannel of a ringing call, given `uniqueid` and a second Uniqueid
    line (what a buggy peer or a broken proxy sends): the edge must drop it."""
    newchannel = next(e for e in load_trace("noanswer") if e["Event"] == "Newchannel")
    newchannel = {**newchannel, "Uniqueid": uniqueid, "Linkedid": uniqueid}
    block = frame(newchannel)
    return block.replace(b"Linkedid:", f"Uniqueid: {uniqueid}\r\nLinkedid:".encode(), 1)


async def test_a_dropped_message_of_a_logged_in_link_is_told_to_on_dropped():
    """Dropped before the login: nobody told (the login's listing covers it); after: told why."""
    async def peer(reader, writer):
        writer.write(BANNER + b"Event: Newchannel\r\nUniqueid: 0\r\nUniqueid: 9\r\n\r\n")
        login = await reader.readuntil(b"\r\n\r\n")
        action_id = next(line.split(b": ", 1)[1] for line in login.split(b"\r\n")
                         if line.lower().startswith(b"actionid"))
        writer.write(b"Response: Success\r\nActionID: " + action_id + b"\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(_recorded_newchannel_with_its_uniqueid_twice("1795721260.0"))
        await writer.drain()
        await asyncio.sleep(5)

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    dropped: list[str] = []
    ami = AmiConnection("127.0.0.1", server.sockets[0].getsockname()[1], "u", SecretStr("s"),
                        on_event=lambda e: None, on_dropped=dropped.append)
    try:
        ami.start()
        await ami.wait_logged_in(3)
        for _ in range(100):
            if dropped:
                break
            await asyncio.sleep(0.02)
        assert ami.malformed == 2
        assert dropped == ["repeated Uniqueid"]
    finally:
        await ami.close()
        server.close()


async def test_a_dropped_newchannel_makes_the_daemon_list_the_channels_at_once(offline_daemon):
    """The call's Newchannel arrives with its Uniqueid twice and is dropped. The daemon asks
    CoreShowChannels again at once (the login's listing was empty: the call had not begun) and
    tracks the call from the lab's recorded listing, without waiting for the next login."""
    listing = [e for e in load_trace("mid_call_ringing") if e["Event"].startswith("CoreShowChannel")]
    ringing = listing[0]["Linkedid"]
    asked: list[str] = []

    async def peer(reader, writer):
        writer.write(BANNER)
        while True:
            block = (await reader.readuntil(b"\r\n\r\n")).decode()
            fields = dict(line.split(": ", 1) for line in block.strip().split("\r\n"))
            action_id = fields.get("ActionID", "")
            if fields["Action"] != "CoreShowChannels":
                writer.write(frame({"Response": "Success", "ActionID": action_id}))
            else:
                asked.append(action_id)
                writer.write(frame({"Response": "Success", "ActionID": action_id,
                                     "EventList": "start", "Message": "Channels will follow"}))
                if len(asked) == 1:  # the login's listing: no call yet; then the call begins
                    writer.write(frame({"Event": "CoreShowChannelsComplete", "ActionID": action_id,
                                         "EventList": "Complete", "ListItems": "0"}))
                    writer.write(_recorded_newchannel_with_its_uniqueid_twice(ringing))
                else:
                    for event in listing:
                        writer.write(frame({**event, "ActionID": action_id}))
            await writer.drain()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    daemon = await offline_daemon()
    daemon.ami = AmiConnection("127.0.0.1", server.sockets[0].getsockname()[1], "u", SecretStr("s"),
                               on_event=daemon.on_event, on_login=daemon.on_login,
                               on_dropped=daemon.on_ami_dropped)
    try:
        daemon.ami.start()
        for _ in range(100):
            if daemon.tracker.is_tracking(ringing):
                break
            await asyncio.sleep(0.02)
        assert len(asked) == 2 and daemon.ami.logins == 1
        assert daemon.tracker.is_tracking(ringing)
    finally:
        await daemon.settle()
        await daemon.ami.close()
        server.close()
