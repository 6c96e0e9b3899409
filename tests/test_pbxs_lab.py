"""Two PBXs on the lab: the lab PBX and a second Asterisk in the same root on its own AMI and
SIP ports (lab.pbx.SecondLabPBX). `textback run` as a real process with a `pbxs:` list and the
asterisk gateway: a call missed on each PBX is texted once, through that PBX (the SIP MESSAGE
comes from its own SIP port); with the second PBX stopped, the first keeps texting. Then a
fleet: two daemons on one PostgreSQL, each holding one PBX's AMI lease, each texting its own
PBX's calls through it. They never skip: if a lab cannot start, they fail.
"""

from __future__ import annotations

import signal
import time

import psycopg
import pytest

from lab import flows
from lab.configs import lab_config
from lab.harness import DaemonProcess, wait_until
from lab.fixture import running
from lab.pbx import SecondLabPBX
from textback.core.fleet import pbx_lock_key

pytestmark = pytest.mark.lab

NORTH_NUMBER = flows.OFFLINE_PHONE  # on the lab PBX: a phone that is not registered
SOUTH_NUMBER = flows.OFFICE1  # on the second PBX: office1, busy


@pytest.fixture
def second_pbx(tmp_path_factory):
    yield from running(SecondLabPBX(tmp_path_factory.mktemp("second-pbx")))


def two_pbx_config(tmp_path, lab_pbx, second_pbx, **overrides):
    path = lab_config(tmp_path, lab_pbx, **overrides, **{
        "text.delay_seconds": 0,
        "numbers": [{"number": NORTH_NUMBER, "owner": "dana"},
                    {"number": SOUTH_NUMBER, "owner": "dana"}]})
    import yaml
    config = yaml.safe_load(path.read_text())
    ami, inbound = config.pop("ami"), config.pop("inbound")
    config["pbxs"] = [
        {"id": "north", "numbers": [NORTH_NUMBER], "ami": ami, "inbound": inbound},
        {"id": "south", "numbers": [SOUTH_NUMBER], "inbound": inbound,
         "ami": {**ami, "port": second_pbx.ami_port,
                 "secret": {"file": str(second_pbx.ami_secret_file)}}}]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def texts_to(sink, caller: str) -> list[dict]:
    return [m for m in sink.messages() if caller in m["to"]]


def test_two_pbxs_each_text_their_own_missed_calls_and_one_stopped_stops_not_the_other(
        tmp_path, lab_pbx, second_pbx, sink, smtp_sink):
    daemon = DaemonProcess(two_pbx_config(tmp_path, lab_pbx, second_pbx),
                           tmp_path / "textback.log").start()
    try:
        wait_until(lambda: daemon.log_since_start().count("AMI logged in") >= 2, 20,
                   "both PBXs' logins")
        north_caller, south_caller = "+16465550106", "+16465550105"
        assert flows.offline(lab_pbx, north_caller)  # missed on the lab PBX
        [north_text] = wait_until(lambda: texts_to(sink, north_caller), 15, "north's text")
        assert flows.busy(second_pbx, south_caller)  # missed on the second PBX
        [south_text] = wait_until(lambda: texts_to(sink, south_caller), 15, "south's text")
        # Each went out through the PBX that serves its number: from that Asterisk's SIP port.
        assert NORTH_NUMBER in north_text["from"] and f":{lab_pbx.sip_port}" in north_text["via"]
        assert SOUTH_NUMBER in south_text["from"] and f":{second_pbx.sip_port}" in south_text["via"]

        second_pbx.stop_asterisk()  # the south PBX goes down
        wait_until(lambda: "AMI 127.0.0.1:15039 unavailable" in daemon.log_since_start(), 20,
                   "the south PBX's loss in the log")
        later_caller = "+16465550199"
        assert flows.offline(lab_pbx, later_caller)
        [later] = wait_until(lambda: texts_to(sink, later_caller), 15,
                             "north's text while south is down")
        assert f":{lab_pbx.sip_port}" in later["via"]
        time.sleep(1)
        assert len(texts_to(sink, north_caller)) == 1 and len(texts_to(sink, south_caller)) == 1
    finally:
        daemon.stop()


def test_two_daemons_each_holding_one_pbx_text_its_calls_through_it_once(
        tmp_path, lab_pbx, second_pbx, sink, smtp_sink, postgres_server, postgres_template):
    """The asterisk gateway with two PBXs in a fleet: daemon a holds north's AMI lease, b
    south's (the test makes it so: it holds south's lease while a starts, and freezes a while b
    takes it). Each daemon claims only the texts of the PBX it holds: a call missed on each
    PBX is texted once, by that PBX's holder, through that PBX's SIP port."""
    url = postgres_server.new_database(template=postgres_template)
    configs = {}
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        configs[name] = two_pbx_config(workdir, lab_pbx, second_pbx, storage={
            "url": url, "path": str(workdir / "textback.db")})
    a = DaemonProcess(configs["a"], tmp_path / "a" / "textback.log")
    b = DaemonProcess(configs["b"], tmp_path / "b" / "textback.log")
    try:
        with psycopg.connect(url, autocommit=True) as south_held:
            assert south_held.execute("SELECT pg_try_advisory_lock(%s)", (
                pbx_lock_key("127.0.0.1", second_pbx.ami_port),)).fetchone()[0]
            a.start(ready="holding the AMI lease of PBX north")
            wait_until(lambda: "AMI lease of PBX south" in a.log_since_start(), 10,
                       "a to find south's lease held")
            a.process.send_signal(signal.SIGSTOP)  # frozen, its sessions (and north's lease) kept
        try:  # south's lease is free now, and b alone tries it
            b.start(ready="holding the AMI lease of PBX south")
        finally:
            a.process.send_signal(signal.SIGCONT)
        wait_until(lambda: "another daemon holds the AMI lease of PBX north"
                   in b.log_since_start(), 10, "b to stand by for north")
        for daemon in (a, b):
            wait_until(lambda: "AMI logged in" in daemon.log_since_start(), 20, "the logins")
        assert "holding the AMI lease of PBX south" not in a.log_since_start()
        assert "holding the AMI lease of PBX north" not in b.log_since_start()

        north_caller, south_caller = "+16465550106", "+16465550105"
        assert flows.offline(lab_pbx, north_caller)  # missed on north, which a listens to
        assert flows.busy(second_pbx, south_caller)  # missed on south, which b listens to
        [north_text] = wait_until(lambda: texts_to(sink, north_caller), 20, "north's text")
        [south_text] = wait_until(lambda: texts_to(sink, south_caller), 20, "south's text")
        assert NORTH_NUMBER in north_text["from"] and f":{lab_pbx.sip_port}" in north_text["via"]
        assert SOUTH_NUMBER in south_text["from"] and f":{second_pbx.sip_port}" in south_text["via"]
        # Each sent by the holder of its PBX (which logs it once its commit is done, a moment
        # after the SIP MESSAGE arrives); the other never claimed it (a claim it could not
        # send would log a retry, through an AMI it does not have).
        for daemon, caller in ((a, north_caller), (b, south_caller)):
            wait_until(lambda: f"text sent to {caller}" in daemon.log_since_start(), 5,
                       f"the log of the text to {caller}")
        for daemon, other_caller in ((a, south_caller), (b, north_caller)):
            assert f"text sent to {other_caller}" not in daemon.log_since_start()
            assert f"text to {other_caller} not sent" not in daemon.log_since_start()
        time.sleep(3)  # a second text would come now, if any did
        assert len(texts_to(sink, north_caller)) == 1 and len(texts_to(sink, south_caller)) == 1
    finally:
        for daemon in (a, b):
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.process.send_signal(signal.SIGCONT)
            daemon.stop()
