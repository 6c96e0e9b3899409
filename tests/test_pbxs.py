"""Several PBXs in one daemon (`pbxs:`): the config's forms and checks, and the daemon with two
AMI peers on loopback, each replaying calls the lab's Asterisk recorded (tests/traces/).

Each PBX has its own connection, tracker, CDR and progress: a call on one is texted through
that PBX's own AMI, and one PBX down stops nothing on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from click.testing import CliRunner

from lab.configs import base_config, write_config
from lab.harness import SMTP_SINK_PORT, eventually
from textback.checks import run_checks
from textback.cli import main
from textback.config import ConfigError, load
from textback.daemon import Daemon
from textback.store import Store
from tests.cancels import LosesItsFirstCancel
from tests.replay import frame, load_trace, renamed

NORTH_NUMBER = "+12125550100"  # the lab's recorded `noanswer` call dials it
SOUTH_NUMBER = "+12125550102"  # the lab's recorded `busy` call dials it
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def pbx(pbx_id: str, port: int, numbers: list[str], secret: str = "ami.secret") -> dict:
    return {"id": pbx_id, "numbers": numbers, "inbound": {"trunks": ["carrier"]},
            "ami": {"host": "127.0.0.1", "port": port, "username": "textback",
                    "secret": {"file": secret}, "ping_interval": 1, "ping_timeout": 1,
                    "reconnect_max_seconds": 1}}


def two_pbx_config(tmp_path, north_port: int = 15038, south_port: int = 15039, **overrides):
    config = base_config(tmp_path, **{
        "numbers": [{"number": NORTH_NUMBER, "owner": "dana"},
                    {"number": SOUTH_NUMBER, "owner": "dana"}],
        "smtp.port": SMTP_SINK_PORT, **overrides})
    del config["ami"], config["inbound"]
    (tmp_path / "south.secret").write_text("the-south-pbx-secret\n")
    config["pbxs"] = [pbx("north", north_port, [NORTH_NUMBER]),
                      pbx("south", south_port, [SOUTH_NUMBER], secret="south.secret")]
    return config


def problems_of(tmp_path, config) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load(write_config(tmp_path, config))
    return caught.value.problems


# -- the config ---------------------------------------------------------------------------

def test_a_pbxs_list_gives_each_pbx_its_connection_numbers_and_secret(tmp_path):
    loaded = load(write_config(tmp_path, two_pbx_config(tmp_path)))
    c = loaded.config
    assert [(p.id, p.address, p.numbers) for p in c.pbx_list()] == [
        ("north", "127.0.0.1:15038", [NORTH_NUMBER]), ("south", "127.0.0.1:15039", [SOUTH_NUMBER])]
    assert c.pbx_serving(SOUTH_NUMBER).id == "south" and c.pbx_serving("+12125550199") is None
    assert loaded.secrets.ami_of("south").get_secret_value() == "the-south-pbx-secret"
    assert loaded.secrets.ami_of("north").get_secret_value() == "not-the-real-one"
    assert "the-south-pbx-secret" not in loaded.secrets.redactor()("x the-south-pbx-secret y")
    # Each PBX's progress marks are its own.
    assert c.pbx_list()[1].progress_name("last_ami_event_at") == "last_ami_event_at:south"


def test_the_single_ami_form_is_one_pbx_named_main_keeping_its_progress_names(tmp_path):
    loaded = load(write_config(tmp_path, base_config(tmp_path)))
    [single] = loaded.config.pbx_list()
    assert single.id == "main" and single.address == "127.0.0.1:15038"
    assert single.numbers == [n.number for n in loaded.config.numbers]
    assert single.progress_name("last_ami_event_at") == "last_ami_event_at"
    assert loaded.secrets.ami_of("main") == loaded.secrets.ami


def test_both_forms_at_once_are_refused_naming_the_key_and_its_line(tmp_path):
    config = two_pbx_config(tmp_path)
    config["ami"] = {"host": "127.0.0.1", "port": 15040, "username": "x",
                     "secret": {"file": "ami.secret"}}
    [(where, message)] = problems_of(tmp_path, config)
    assert where.startswith("ami (line ")
    assert "`ami:` and `pbxs:` are both given" in message


def test_neither_form_is_refused(tmp_path):
    config = base_config(tmp_path)
    del config["ami"]
    [(where, message)] = problems_of(tmp_path, config)
    assert where == "ami" and "required key is missing (or list the PBXs under `pbxs:`)" in message


@pytest.mark.parametrize("change, expected", [
    (lambda c: c["pbxs"][1]["numbers"].append(NORTH_NUMBER),
     f"{NORTH_NUMBER} is also served by PBX 'north': a number belongs to one PBX"),
    (lambda c: c["pbxs"][1]["numbers"].append("+12125550199"),
     "pbxs[1].numbers: +12125550199 is not one of `numbers`"),
    (lambda c: c["pbxs"][1].update(id="north"), "pbxs[1].id: 'north' is also pbxs[0]'s"),
    (lambda c: c["pbxs"][1]["ami"].update(port=15038),
     "pbxs[1].ami: 127.0.0.1:15038 is also PBX 'north''s AMI"),
    (lambda c: c["pbxs"][1].update(id="South PBX"), "pbxs[1].id (line "),
])
def test_a_pbxs_list_is_checked(tmp_path, change, expected):
    config = two_pbx_config(tmp_path)
    change(config)
    found = problems_of(tmp_path, config)
    assert any(expected in f"{where}: {message}" for where, message in found), found


def test_with_the_asterisk_gateway_every_number_needs_its_pbx(tmp_path):
    config = two_pbx_config(tmp_path, gateway=ASTERISK_GATEWAY)
    config["pbxs"][1]["numbers"] = []
    [(_, message)] = problems_of(tmp_path, config)
    assert f"pbxs: {SOUTH_NUMBER} served by no PBX" in message


def test_the_texts_a_daemon_may_send_are_those_of_the_pbxs_it_holds():
    """The asterisk gateway sends a text through the PBX serving its number, the first PBX for
    a number none lists: holding the first PBX takes those too, holding none takes nothing."""
    from textback.core.fleet import senders_through
    numbers = [["+12125550100"], ["+12125550102", "+12125550103"], ["+12125550104"]]
    first_and_third = senders_through(numbers, {0, 2})
    assert first_and_third.include("+12125550100") and first_and_third.include("+12125550104")
    assert first_and_third.include("+12125550199")  # listed by no PBX: the first PBX's
    assert not first_and_third.include("+12125550103")
    second = senders_through(numbers, {1})
    assert [n for n in ("+12125550100", "+12125550103", "+12125550199") if second.include(n)] == [
        "+12125550103"]
    nothing = senders_through(numbers, set())
    assert nothing.none and not nothing.include("+12125550199")
    assert not senders_through(numbers, {0, 1, 2}).never  # all held: every number


def test_a_missing_secret_of_a_pbx_is_named_by_its_entry(tmp_path):
    config = two_pbx_config(tmp_path)
    config["pbxs"][1]["ami"]["secret"] = {"file": "nowhere.secret"}
    [(where, _)] = problems_of(tmp_path, config)
    assert where.startswith("pbxs[1].ami.secret (line ")


# -- two AMI peers on loopback --------------------------------------------------------------

ASTERISK_GATEWAY = {"type": "asterisk", "asterisk": {
    "destination": "pjsip:carrier/sip:{to}@127.0.0.3:5060", "from_uri": "sip:{sender}@127.0.0.1"}}


class TracePbx:
    """An AMI peer on loopback that replays the lab's recorded calls on demand, answers every
    action (an empty channel listing, MessageSend accepted) and keeps what it was asked."""

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.actions: list[dict[str, str]] = []

    async def start(self, port: int = 0) -> "TracePbx":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """The PBX goes away: no more connections, the open ones cut."""
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        await self.server.wait_closed()

    def sent(self) -> list[dict[str, str]]:
        return [a for a in self.actions if a.get("Action") == "MessageSend"]

    async def play(self, trace: str, tag: str) -> None:
        """The recorded call's events, as a new call (`tag` makes its ids unique)."""
        await self.play_events(renamed(load_trace(trace), tag))

    async def play_events(self, events: list[dict]) -> None:
        writer = self.writers[-1]
        for event in events:
            if "ActionID" not in event:  # the recording's own listing answer is not replayed
                writer.write(frame(event))
        await writer.drain()

    async def _handle(self, reader, writer) -> None:
        self.writers.append(writer)
        writer.write(BANNER)
        try:
            while True:
                block = (await reader.readuntil(b"\r\n\r\n")).decode()
                fields = dict(line.split(": ", 1) for line in block.strip().split("\r\n")
                              if ": " in line)
                self.actions.append(fields)
                action_id = fields.get("ActionID", "")
                if fields.get("Action") == "Login":
                    writer.write(frame({"Response": "Success", "ActionID": action_id,
                                         "Message": "Authentication accepted"}))
                    writer.write(b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n")
                elif fields.get("Action") == "CoreShowChannels":
                    writer.write(frame({"Response": "Success", "ActionID": action_id,
                                         "EventList": "start", "Message": "Channels will follow"}))
                    writer.write(frame({"Event": "CoreShowChannelsComplete",
                                         "ActionID": action_id, "EventList": "Complete",
                                         "ListItems": "0"}))
                else:
                    writer.write(frame({"Response": "Success", "ActionID": action_id}))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


async def _true(value: bool) -> bool:
    return value


@contextlib.asynccontextmanager
async def two_pbxs_held(tmp_path, **overrides):
    """A daemon holding two AMI peers, north and south, both logged in and ready; stopped with
    them at the end."""
    north, south = await TracePbx().start(), await TracePbx().start()
    config = two_pbx_config(tmp_path, north.port, south.port, **overrides)
    daemon = Daemon(load(write_config(tmp_path, config)))
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    try:
        await eventually(lambda: _true(len(daemon.pbxs) == 2 and all(
            p.logged_in and p.ami.ready for p in daemon.pbxs)), 10, "both logins")
        yield daemon, north, south
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await north.stop()
        await south.stop()


async def test_each_pbx_texts_its_own_calls_through_its_own_ami_and_one_down_stops_not_the_other(
        tmp_path, smtp_sink):
    async with two_pbxs_held(tmp_path, gateway=ASTERISK_GATEWAY, **{
            "text.delay_seconds": 0, "text.dedupe_hours": 0}) as (daemon, north, south):
        assert [p.id for p in daemon.pbxs] == ["north", "south"]
        await north.play("noanswer", "n1")
        await south.play("busy", "s1")
        await eventually(lambda: _true(len(north.sent()) == 1 and len(south.sent()) == 1), 15,
                         "one text through each PBX")
        # Each text went out through the AMI of the PBX that serves the number it is sent from.
        assert north.sent()[0]["From"] == f"sip:{NORTH_NUMBER}@127.0.0.1"
        assert south.sent()[0]["From"] == f"sip:{SOUTH_NUMBER}@127.0.0.1"
        assert "+12125550123" in north.sent()[0]["Destination"]
        assert "+16465550105" in south.sent()[0]["Destination"]
        # Each PBX's tracker saw its own call only.
        assert [p.tracker.active_calls for p in daemon.pbxs] == [0, 0]
        value = daemon.metrics.registry.get_sample_value
        assert value("textback_pbx_ami_connected", {"pbx": "north"}) == 1
        assert value("textback_pbx_ami_connected", {"pbx": "south"}) == 1

        await south.stop()  # the south PBX goes down: the north one keeps texting
        await eventually(lambda: _true(not daemon.pbxs[1].logged_in), 10, "south's link lost")
        assert daemon.pbxs[0].logged_in and not daemon._ami_answering()
        await north.play("noanswer", "n2")  # the same caller again (no dedupe here)
        await eventually(lambda: _true(len(north.sent()) == 2), 15, "north's second text")
        assert "+12125550123" in north.sent()[1]["Destination"]
        assert len(south.sent()) == 1
        await eventually(lambda: _true(
            value("textback_pbx_ami_connected", {"pbx": "south"}) == 0), 10, "south's gauge")
        assert value("textback_pbx_ami_connected", {"pbx": "north"}) == 1

        await south.start(south.port)  # back: its own connection logs in again on its own
        await eventually(lambda: _true(daemon.pbxs[1].logged_in), 15, "south's login again")
        assert daemon.pbxs[1].logins == 2 and daemon.pbxs[0].logins == 1
    store = await Store.open(tmp_path / "textback.db")
    try:
        calls = await store.calls(0)
        assert sorted((c["business_number"], c["caller"]) for c in calls) == [
            (NORTH_NUMBER, "+12125550123"), (NORTH_NUMBER, "+12125550123"),
            (SOUTH_NUMBER, "+16465550105")]
        # Until when each PBX's events were seen, kept apart for the next start's recovery.
        north_seen = await store.progress("last_ami_event_at:north")
        south_seen = await store.progress("last_ami_event_at:south")
        assert north_seen is not None and south_seen is not None
        assert await store.progress("last_ami_event_at") is None
        assert await store.progress("ami_logged_in:south") == 1.0
    finally:
        await store.close()


def numbered_from_boot(events: list[dict]) -> list[dict]:
    """A recorded call's events with its channels' ids as an Asterisk started at second
    1765000000 numbers them: `1765000000.0`, `.1`, … in the order they appear. Asterisk's
    uniqueid is the second a channel was made and a counter since start (behind `systemname`
    only when asterisk.conf sets one), so two PBXs started alike give their calls equal ids."""
    numbers: dict[str, str] = {}
    copies = []
    for event in events:
        copy = dict(event)
        for key, value in event.items():
            if key.endswith(("Uniqueid", "Linkedid")) and isinstance(value, str) and value:
                copy[key] = numbers.setdefault(value, f"1765000000.{len(numbers)}")
        copies.append(copy)
    return copies


async def test_two_pbxs_giving_their_calls_the_same_linkedid_text_both_callers(
        tmp_path, smtp_sink):
    """A missed call on each PBX with the same linkedid: each is recorded and texted once, kept
    under its PBX's id (a store keyed on the linkedid alone took the second for a replay of the
    first and never texted it)."""
    async with two_pbxs_held(tmp_path, gateway=ASTERISK_GATEWAY,
                             **{"text.delay_seconds": 0}) as (_, north, south):
        north_call = numbered_from_boot(load_trace("noanswer"))
        south_call = numbered_from_boot(load_trace("busy"))
        linkedid = next(e["Linkedid"] for e in north_call if e.get("Linkedid"))
        assert linkedid == next(e["Linkedid"] for e in south_call if e.get("Linkedid"))
        await north.play_events(north_call)
        await south.play_events(south_call)
        await eventually(lambda: _true(len(north.sent()) == 1 and len(south.sent()) == 1), 15,
                         "one text through each PBX")
        assert "+12125550123" in north.sent()[0]["Destination"]
        assert "+16465550105" in south.sent()[0]["Destination"]
        await asyncio.sleep(0.5)
        assert len(north.sent()) == 1 and len(south.sent()) == 1
    store = await Store.open(tmp_path / "textback.db")
    try:
        calls = await store.calls(0)
        assert sorted((c["linkedid"], c["business_number"], c["decision"]) for c in calls) == [
            (f"north:{linkedid}", NORTH_NUMBER, "missed_call_text"),
            (f"south:{linkedid}", SOUTH_NUMBER, "missed_call_text")]
        assert await store.call_decision(linkedid) is None  # neither kept under the bare id
    finally:
        await store.close()


async def test_check_prints_one_line_per_pbx(tmp_path):
    north = await TracePbx().start()
    config = two_pbx_config(tmp_path, north.port, 1)  # nothing listens on the south's port
    try:
        results = await run_checks(load(write_config(tmp_path, config)))
    finally:
        await north.stop()
    lines = {name: (ok, detail) for name, ok, detail in results}
    assert lines["ami north"] == (True, f"logged in to 127.0.0.1:{north.port} as textback "
                                        f"(AMI 11.0.0); serves {NORTH_NUMBER}")
    ok, detail = lines["ami south"]
    assert not ok and "cannot connect to AMI at 127.0.0.1:1" in detail


async def test_status_prints_one_line_per_pbx(tmp_path):
    from textback import runlock
    path = write_config(tmp_path, two_pbx_config(tmp_path))
    database = tmp_path / "textback.db"
    store = await Store.open(database)
    now = time.time()
    for name, value in (("ami_logged_in", 0.0), ("ami_state_since", now - 60),
                        ("ami_logged_in:north", 1.0), ("ami_state_since:north", now - 7200),
                        ("last_ami_event_at:north", now - 3),
                        ("ami_logged_in:south", 0.0), ("ami_state_since:south", now - 60)):
        await store.note_progress(name, value)
    lock = runlock.acquire(database)
    try:
        result = await asyncio.to_thread(CliRunner().invoke, main, ["status", "-c", str(path)])
    finally:
        lock.release()
        await store.close()
    lines = {line[:15].strip(): line[16:] for line in result.output.splitlines()}
    assert lines["AMI"] == "NOT logged in for 1m (every PBX)"
    assert lines["PBX north"] == "127.0.0.1:15038: logged in for 2h; last event 3s ago"
    assert lines["PBX south"] == "127.0.0.1:15039: NOT logged in for 1m; last event -"
    assert "last AMI event" not in lines
    assert result.exit_code == 1


# -- a fleet: one lease per PBX on a real PostgreSQL 15 ---------------------------------------

@pytest.fixture
def database(postgres_server, postgres_template):
    return postgres_server.new_database(template=postgres_template)


@contextlib.asynccontextmanager
async def beside_norths_holder(tmp_path, database: str, **overrides):
    """A daemon on the fleet's database and two trace PBXs, north and south, while another
    daemon holds north's lease (its own advisory lock): yields (daemon, north, south, the
    other daemon's lease); the daemon stops, the lease drops and the PBXs go at the end."""
    from textback.core.fleet import pbx_lock_key
    from textback.store.postgres.fleet import AdvisoryLease

    north, south = await TracePbx().start(), await TracePbx().start()
    config = two_pbx_config(tmp_path, north.port, south.port, **{
        "text.delay_seconds": 0, "storage.url": database, **overrides})
    other_daemon = AdvisoryLease(database, None, pbx_lock_key("127.0.0.1", north.port))
    assert await other_daemon.take()
    daemon = Daemon(load(write_config(tmp_path, config)))
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    try:
        yield daemon, north, south, other_daemon
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await other_daemon.drop()
        await north.stop()
        await south.stop()


async def test_in_a_fleet_each_pbx_has_its_own_lease_and_daemons_may_hold_different_ones(
        tmp_path, smtp_sink, database):
    """Another daemon holds the north PBX's lease (its own advisory lock): this one listens to
    the south PBX alone, stands by for the north one, and takes it over once it is free."""
    async with beside_norths_holder(tmp_path, database) as (daemon, north, south, other_daemon):
        await eventually(lambda: _true(len(daemon.pbxs) == 2 and daemon.pbxs[1].logged_in
                                       and daemon.pbxs[0].lease is not None
                                       and daemon.pbxs[0].lease.standing_by), 15,
                         "south held, north stood by")
        assert not daemon.pbxs[0].logged_in and not north.writers  # never connected to north
        assert daemon._ami_answering()  # standing by is no incident
        await south.play("busy", "s1")
        await eventually(lambda: _calls_count(daemon, 1), 15, "south's call recorded")

        await other_daemon.drop()  # the other daemon goes: this one takes the north PBX over
        await eventually(lambda: _true(daemon.pbxs[0].logged_in), 15, "north taken over")
        assert daemon.pbxs[1].logins == 1  # the south PBX was not touched by the takeover
        await north.play("noanswer", "n1")
        await eventually(lambda: _calls_count(daemon, 2), 15, "both calls recorded")
        assert sorted(c["business_number"] for c in await daemon.store.calls(0)) == [
            NORTH_NUMBER, SOUTH_NUMBER]
    from textback.store.postgres import PostgresStore
    store = await PostgresStore.open(database)
    try:  # each holder kept its PBX's moment as it stopped
        for name in ("last_ami_event_at:north", "last_ami_event_at:south"):
            assert await store.progress(name) is not None, name
    finally:
        await store.close()


async def test_in_a_fleet_a_selftest_that_lost_its_cancel_ends_when_the_lease_goes(
        tmp_path, smtp_sink, database, monkeypatch):
    """The self-test runs only while this daemon holds its PBX's lease (its test call goes
    through that AMI). When the lease goes, the run is cancelled, and cancelled again when it
    lost that cancel: it never runs on without the lease, and the daemon goes on."""
    from textback import supervisor
    from textback.core.fleet import pbx_lock_key
    from textback.workers.selftest import SelftestRunner
    from tests.test_fleet_lease import lease_pids, terminate

    monkeypatch.setattr(supervisor, "CANCEL_AGAIN_SECONDS", 0.05)
    selftest = LosesItsFirstCancel()
    monkeypatch.setattr(SelftestRunner, "run", selftest)
    north, south = await TracePbx().start(), await TracePbx().start()
    config = two_pbx_config(tmp_path, north.port, south.port, **{
        "storage.url": database, "admin_email": "it@example.com",
        "selftest": {"recipient": "+12125550177"}})
    daemon = Daemon(load(write_config(tmp_path, config)))
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    try:
        await asyncio.wait_for(selftest.started.wait(), 15)
        assert daemon.pbxs[0].lease.holding  # the self-test's PBX: north, its first number's
        terminate(database, lease_pids(database, pbx_lock_key("127.0.0.1", north.port)))
        await eventually(lambda: _true(selftest.ended), 10, "the self-test to end")
        assert len(selftest.cancels) == 2 and not running.done()
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await north.stop()
        await south.stop()


async def _calls_count(daemon: Daemon, count: int) -> bool:
    return len(await daemon.store.calls(0)) == count


def subject(mail) -> str:
    """A mail's subject as one line (a long one is folded)."""
    return " ".join(str(mail.message["Subject"]).split())


async def _open_incidents(daemon) -> list[tuple[str, str]]:
    return sorted((row["kind"], row["pbx"]) for row in await daemon.store.open_incidents())


async def test_each_pbx_down_is_an_incident_of_its_own_naming_it_and_recovers_on_its_own(
        tmp_path, smtp_sink):
    """Two PBXs, one down: one incident, naming it; both down: two; the first back recovers
    alone (its email names it) while the other stays open."""
    down_after = {"ami_down_minutes": 0.01}  # 0.6 s
    async with two_pbxs_held(tmp_path, admin_email="it@acme.example",
                             incidents=down_after) as (daemon, north, south):
        await daemon.incidents.check_incidents(time.time())
        assert await _open_incidents(daemon) == []

        await south.stop()
        await eventually(lambda: _true(not daemon.pbxs[1].logged_in), 10, "south's link lost")
        await daemon.incidents.check_incidents(time.time())  # seen down from now
        await asyncio.sleep(0.7)
        await daemon.incidents.check_incidents(time.time())
        assert await _open_incidents(daemon) == [("ami_down", "south")]
        [opened] = await asyncio.to_thread(smtp_sink.wait_for, 1, 10)
        assert subject(opened) == ("textback incident: textback is not connected to the Asterisk "
                                   "of PBX south")
        assert "PBX south: not logged in to AMI" in opened.message.get_content()

        await north.stop()
        await eventually(lambda: _true(not daemon.pbxs[0].logged_in), 10, "north's link lost")
        await daemon.incidents.check_incidents(time.time())  # seen down from now
        await asyncio.sleep(0.7)
        await daemon.incidents.check_incidents(time.time())
        assert await _open_incidents(daemon) == [("ami_down", "north"), ("ami_down", "south")]

        await south.start(south.port)
        await eventually(lambda: _true(daemon.pbxs[1].logged_in), 15, "south's login again")
        await daemon.incidents.check_incidents(time.time())
        assert await _open_incidents(daemon) == [("ami_down", "north")]
        mails = await asyncio.to_thread(smtp_sink.wait_for, 3, 10)
        assert sorted(subject(m) for m in mails) == [
            "textback incident: textback is not connected to the Asterisk of PBX north",
            "textback incident: textback is not connected to the Asterisk of PBX south",
            "textback recovered: textback is not connected to the Asterisk of PBX south"]


async def test_in_a_fleet_the_asterisk_gateway_sends_only_the_texts_of_the_pbxs_held(
        tmp_path, smtp_sink, database):
    """The asterisk gateway with two PBXs on PostgreSQL: another daemon holds north's lease.
    This one texts south's calls through south, and leaves a text from north's number waiting
    (it has no AMI to north) until it takes north's lease over; then it goes through north."""
    from textback.store import CallRow, PlannedText

    async with beside_norths_holder(tmp_path, database, gateway=ASTERISK_GATEWAY) as (
            daemon, north, south, other_daemon):
        await eventually(lambda: _true(len(daemon.pbxs) == 2 and daemon.pbxs[1].logged_in
                                       and daemon.pbxs[1].ami.ready
                                       and daemon.pbxs[0].lease.standing_by), 15,
                         "south held, north stood by")
        now = time.time()
        waiting = "+12125550177"  # a call north's holder recorded: its text is north's to send
        await daemon.store.record_call(
            CallRow("north-1", NORTH_NUMBER, waiting, waiting, "", now - 20, None, now - 1,
                    "missed", "no_answer", "missed_call_text"), PlannedText("dana", "Hi", now))
        daemon.wake_outbox()
        await south.play("busy", "s1")
        await eventually(lambda: _true(len(south.sent()) == 1), 15, "south's text")
        assert "+16465550105" in south.sent()[0]["Destination"]
        await asyncio.sleep(2)  # rounds of the outbox: north's text stays this daemon's to leave
        assert [item.recipient for item in await daemon.store.due(time.time())] == [waiting]
        assert len(south.sent()) == 1 and not north.sent()

        await other_daemon.drop()  # north's holder goes: this daemon takes north over
        await eventually(lambda: _true(len(north.sent()) == 1), 15, "north's text, through north")
        assert waiting in north.sent()[0]["Destination"]
        assert north.sent()[0]["From"] == f"sip:{NORTH_NUMBER}@127.0.0.1"
        assert len(south.sent()) == 1
