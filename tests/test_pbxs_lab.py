"""Two PBXs, one daemon, on the lab: the lab PBX and a second Asterisk in the same root on its
own AMI and SIP ports (lab.pbx.SecondLabPBX). `textback run` as a real process with a `pbxs:`
list and the asterisk gateway: a call missed on each PBX is texted once, through that PBX
(the SIP MESSAGE comes from its own SIP port); with the second PBX stopped, the first keeps
texting. They never skip: if a lab cannot start, they fail.
"""

from __future__ import annotations

import time

import pytest

from lab import flows
from lab.configs import lab_config
from lab.harness import DaemonProcess, wait_until
from lab.fixture import running
from lab.pbx import SecondLabPBX

pytestmark = pytest.mark.lab

NORTH_NUMBER = flows.OFFLINE_PHONE  # on the lab PBX: a phone that is not registered
SOUTH_NUMBER = flows.OFFICE1  # on the second PBX: office1, busy


@pytest.fixture
def second_pbx(tmp_path_factory):
    yield from running(SecondLabPBX(tmp_path_factory.mktemp("second-pbx")))


def two_pbx_config(tmp_path, lab_pbx, second_pbx):
    path = lab_config(tmp_path, lab_pbx, **{
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
