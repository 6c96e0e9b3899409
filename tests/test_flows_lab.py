"""What counts as a missed call: every call flow of the corpus, on the real lab PBX.

Each test plays one flow of lab/flows.py (SIPp actors and the lab dialplan)
while `textback run` listens as a real process, then reads the outcome,
reason and decision back with `textback calls --json`. One daemon serves the
module; each flow uses its own callers, so the tests stay independent.
They never skip: if the lab cannot start, they fail.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lab import configs, flows
from lab.harness import DaemonProcess, wait_until

pytestmark = pytest.mark.lab


class Listener:
    """`textback run` on the lab, and what it recorded."""

    def __init__(self, workdir: Path, lab_pbx):
        self.config_path = configs.lab_config(workdir, lab_pbx, **{
            "numbers": configs.FLOW_NUMBERS,
            "gateway": {"type": "log"},
            "text.delay_seconds": 60,
            # Every flow caller is +1646555…: the SMS-pumping guard would stop texting them.
            "fraud.max_per_prefix_per_hour": 1000,
        })
        self.database = workdir / "textback.db"
        self.process = DaemonProcess(self.config_path, workdir / "textback.log")

    def calls(self, callers: list[str], timeout: float = 10.0) -> list[dict]:
        """`textback calls --json` rows of these callers' calls, oldest first, once all are decided."""
        wanted = Counter(callers)
        wait_until(lambda: not wanted - Counter(self._decided()), timeout,
                   f"the daemon to record the calls of {sorted(wanted)}")
        rows = self.cli_calls()
        return sorted((r for r in rows if r["caller_raw"] in wanted), key=lambda r: r["started_at"])

    def cli_calls(self) -> list[dict]:
        result = subprocess.run([sys.executable, "-m", "textback", "calls", "-c", str(self.config_path),
                                 "--json"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def _decided(self) -> list[str]:
        """Callers of the calls stored so far (cheaper to poll than the CLI)."""
        if not self.database.exists():
            return []
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True) as db:
            try:
                return [row[0] for row in db.execute("SELECT caller_raw FROM calls")]
            except sqlite3.OperationalError:  # the schema is not there yet
                return []


@pytest.fixture(scope="module")
def listener(lab_pbx, tmp_path_factory):
    textback = Listener(tmp_path_factory.mktemp("flows"), lab_pbx)
    textback.process.start()
    yield textback
    textback.process.stop()


def outcome(call: dict) -> tuple[str, str, str]:
    return call["outcome"], call["reason"], call["decision"]


TEXTED = "missed_call_text"


def assert_not_texted(call: dict) -> None:
    assert call["decision"] != TEXTED and call["text_state"] is None, call


# -- 1, 2, 5, 6: one phone ------------------------------------------------------------

def test_01_rings_until_the_timeout(lab_pbx, listener):
    [call] = listener.calls(flows.no_answer(lab_pbx))
    assert outcome(call) == ("missed", "no_answer", TEXTED)
    assert call["text_state"] == "pending"


def test_02_caller_hangs_up_while_it_rings(lab_pbx, listener):
    [call] = listener.calls(flows.caller_hangs_up(lab_pbx))
    assert outcome(call) == ("missed", "caller_hung_up", TEXTED)


def test_02_a_ring_shorter_than_min_ring_seconds_is_too_short(lab_pbx, listener):
    [call] = listener.calls(flows.caller_hangs_up(lab_pbx, "+16465550125", after=1.0))
    assert outcome(call) == ("missed", "too_short", "too_short")
    assert_not_texted(call)


def test_05_busy(lab_pbx, listener):
    [call] = listener.calls(flows.busy(lab_pbx))
    assert outcome(call) == ("missed", "busy", TEXTED)


def test_06_phone_offline(lab_pbx, listener):
    [call] = listener.calls(flows.offline(lab_pbx))
    assert outcome(call) == ("missed", "unavailable", TEXTED)


# -- 3, 4: ring groups ------------------------------------------------------------------

def test_03_ring_group_one_phone_answers(lab_pbx, listener):
    [call] = listener.calls(flows.ring_group_answered(lab_pbx))
    assert outcome(call) == ("answered", "answered", "answered")
    assert_not_texted(call)


def test_04_ring_group_nobody_answers_is_one_missed_call(lab_pbx, listener):
    calls = listener.calls(flows.ring_group_no_answer(lab_pbx))
    assert [outcome(c) for c in calls] == [("missed", "no_answer", TEXTED)]


# -- 7, 8: Asterisk answers ---------------------------------------------------------------

def test_07_voicemail_is_missed_unless_the_number_counts_it_answered(lab_pbx, listener):
    default, lenient = flows.together(
        lambda: flows.voicemail(lab_pbx),
        lambda: flows.voicemail(lab_pbx, "+16465550126", flows.VOICEMAIL_COUNTS_AS_ANSWERED, "office2"))
    [missed] = listener.calls([default])
    assert outcome(missed) == ("missed", "voicemail", TEXTED)
    [answered] = listener.calls([lenient])
    assert outcome(answered) == ("answered", "voicemail", "answered")
    assert_not_texted(answered)


def test_08_hanging_up_in_the_ivr_menu(lab_pbx, listener):
    default, lenient = flows.together(
        lambda: flows.ivr_abandoned(lab_pbx),
        lambda: flows.ivr_abandoned(lab_pbx, "+16465550127", flows.IVR_ABANDON_NOT_MISSED))
    [missed] = listener.calls([default])
    assert outcome(missed) == ("missed", "ivr_abandoned", TEXTED)
    [answered] = listener.calls([lenient])
    assert outcome(answered) == ("answered", "ivr_abandoned", "answered")
    assert_not_texted(answered)


# -- 9: a queue ------------------------------------------------------------------------------

def test_09_caller_gives_up_in_the_queue(lab_pbx, listener):
    [call] = listener.calls(flows.queue_abandoned(lab_pbx))
    assert outcome(call) == ("missed", "queue_abandoned", TEXTED)


def test_09_the_queue_times_out(lab_pbx, listener):
    [call] = listener.calls(flows.queue_timeout(lab_pbx))
    assert outcome(call) == ("missed", "queue_timeout", TEXTED)


def test_09_an_agent_answers(lab_pbx, listener):
    [call] = listener.calls(flows.queue_answered(lab_pbx))
    assert outcome(call) == ("answered", "answered", "answered")


# -- 10, 11, 12: answered elsewhere, or not inbound --------------------------------------------

def test_10_answered_then_blind_transferred(lab_pbx, listener):
    [call] = listener.calls(flows.blind_transfer(lab_pbx))
    assert outcome(call) == ("answered", "answered", "answered")
    assert_not_texted(call)


def test_10_answered_then_attended_transfer(lab_pbx, listener):
    [call] = listener.calls(flows.attended_transfer(lab_pbx))
    assert outcome(call) == ("answered", "answered", "answered")
    assert_not_texted(call)


def test_11_forwarded_to_a_cell_phone_that_answers(lab_pbx, listener):
    [call] = listener.calls(flows.forwarded_to_cell(lab_pbx))
    assert outcome(call) == ("answered", "answered", "answered")


def test_11_confirm_calls_keep_a_cell_phone_voicemail_from_counting_as_answered(lab_pbx, listener):
    [call] = listener.calls(flows.forwarded_to_cell_voicemail_with_confirm(lab_pbx))
    assert outcome(call) == ("missed", "voicemail", TEXTED)


def test_12_outbound_and_internal_calls_are_not_inbound(lab_pbx, listener):
    before = [r["linkedid"] for r in listener.cli_calls()]
    placed = flows.together(lambda: flows.outbound_call(lab_pbx), lambda: flows.internal_call(lab_pbx))
    assert placed == []
    time.sleep(1.0)  # twice the grace period: a call wrongly taken as inbound would be stored by now
    assert [r["linkedid"] for r in listener.cli_calls()] == before


# -- 13, 14: who is calling -------------------------------------------------------------------

def test_13_withheld_or_invalid_caller_ids_are_recorded_but_never_texted(lab_pbx, listener):
    calls = listener.calls(flows.withheld_caller_ids(lab_pbx))
    assert sorted(c["caller_raw"] for c in calls) == sorted(["anonymous", "<unknown>", "Restricted", "201"])
    for call in calls:
        assert (call["outcome"], call["decision"], call["caller"]) == ("missed", "no_callback_number", None)
        assert_not_texted(call)


def test_14_two_callers_at_once_get_a_record_each(lab_pbx, listener):
    calls = listener.calls(flows.two_callers_at_once(lab_pbx))
    assert sorted((c["caller"], c["business_number"], c["reason"]) for c in calls) == [
        ("+16465550115", flows.OFFICE1, "no_answer"), ("+16465550116", flows.OFFICE2, "no_answer")]
    assert len({c["linkedid"] for c in calls}) == 2


def test_14_the_same_caller_twice_is_two_records_and_one_text(lab_pbx, listener):
    first, second = listener.calls(flows.same_caller_twice(lab_pbx))
    assert first["linkedid"] != second["linkedid"]
    assert (first["caller"], second["caller"]) == ("+16465550117", "+16465550117")
    assert (first["decision"], second["decision"]) == (TEXTED, "deduplicated")


# -- 15: FreePBX shapes ---------------------------------------------------------------------

def test_15_freepbx_queue_member_answers_through_a_local_channel(lab_pbx, listener):
    [call] = listener.calls(flows.freepbx_queue_answered(lab_pbx))
    assert outcome(call) == ("answered", "answered", "answered")


def test_15_freepbx_queue_local_member_that_reaches_voicemail_is_no_person(lab_pbx, listener):
    [call] = listener.calls(flows.freepbx_queue_voicemail(lab_pbx))
    assert outcome(call) == ("missed", "voicemail", TEXTED)


def test_15_freepbx_ring_group_of_local_channels_answered(lab_pbx, listener):
    [call] = listener.calls(flows.freepbx_ring_group_answered(lab_pbx))
    assert outcome(call) == ("answered", "answered", "answered")


def test_15_freepbx_ring_group_answer_on_a_local_channel_is_no_person(lab_pbx, listener):
    [call] = listener.calls(flows.freepbx_ring_group_voicemail(lab_pbx))
    assert outcome(call) == ("missed", "voicemail", TEXTED)


# -- 16: the listener starts mid-call -----------------------------------------------------------

@pytest.fixture
def late_listener(lab_pbx, tmp_path):
    textback = Listener(tmp_path, lab_pbx)
    yield textback
    textback.process.stop()


def test_16_listener_starts_while_it_rings(lab_pbx, late_listener):
    callers = flows.listener_joins_while_ringing(lab_pbx, late_listener.process.start)
    [call] = late_listener.calls(callers)
    assert outcome(call) == ("missed", "caller_hung_up", TEXTED)
    assert call["ended_at"] - call["started_at"] > 4  # started_at comes from the channel's age


def test_16_listener_starts_mid_conversation(lab_pbx, late_listener):
    [call] = late_listener.calls(flows.listener_joins_mid_conversation(lab_pbx, late_listener.process.start))
    assert outcome(call) == ("answered", "answered", "answered")
