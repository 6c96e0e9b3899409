"""Caller ID names with quotes, backslashes and non-ASCII letters, on the real lab PBX.

Asterisk C-escapes the caller's name in every AMI channel event (`O'Brien`
arrives as `O\\'Brien`); the AMI edge undoes that once, so the stored
conversation and the owner's alert email show the name as Asterisk holds it,
the name its own CDR records (its clid, quoted by ast_escape_quoted, which
CDR recovery undoes). The carrier sends each name as the From header's
display name.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from lab.configs import BUSINESS_NUMBER
from lab.pbx import CARRIER_IP
from lab.harness import wait_until
from textback.core.recovery import CsvLayout, from_csv_fields, recover_calls

pytestmark = pytest.mark.lab

# Caller -> (the From header's display name, the caller ID name Asterisk holds). PJSIP keeps
# a quoted-string's quoted-pairs as they came (`\\"` stays `\\"`, `\\s` stays `\\s`):
# the name textback must show is the one Asterisk holds, which its CDR records too.
CALLERS = {
    "+16465550171": ('"Pat O\'Brien & Sons"', "Pat O'Brien & Sons"),
    "+16465550172": ('"The \\"Best\\" Builders"', 'The \\"Best\\" Builders'),
    "+16465550173": ('"Back\\slash Bros"', "Back\\slash Bros"),
    "+16465550174": ('"Zoë Ñandú — 李工程 ☎"', "Zoë Ñandú — 李工程 ☎"),
}


def textback_json(*args: str):
    result = subprocess.run([sys.executable, "-m", "textback", *args, "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cdr_names(lab_pbx, callers) -> dict[str, str]:
    """The caller ID name of each caller's call, as Asterisk's own CDR (cdr_csv) has it."""
    with open(lab_pbx.cdr_csv, newline="", encoding="utf-8") as handle:
        records = [from_csv_fields(row, CsvLayout(), None) for row in csv.reader(handle)]
    names = {}
    for call in recover_calls(records, ["carrier"], [], 0.0):
        if call.caller_id in callers:
            names[call.caller_id] = call.caller_name
    return names


def test_caller_names_reach_the_inbox_and_the_alert_as_asterisk_has_them(
        lab_pbx, lab_daemon, sink, smtp_sink):
    daemon = lab_daemon(**{"text.delay_seconds": 1})
    for caller, (display, _) in CALLERS.items():
        phone = lab_pbx.phone("office1", "noanswer")
        call = lab_pbx.call(caller, BUSINESS_NUMBER, from_header=f"{display} <sip:{caller}@{CARRIER_IP}>")
        call.wait(30)
        phone.kill()
    wait_until(lambda: all(f"to {caller}" in daemon.log() for caller in CALLERS), 20, "every text")
    for caller in CALLERS:
        assert lab_pbx.send_sms(caller, BUSINESS_NUMBER, f"Hello from {caller}") < 300
    mails = smtp_sink.wait_for(len(CALLERS), 20)

    asterisk_has = cdr_names(lab_pbx, CALLERS)
    assert asterisk_has == {caller: name for caller, (_, name) in CALLERS.items()}
    calls = textback_json("calls", "-c", str(daemon.config_path))
    for caller in CALLERS:
        # The stored call: the inbox, the thread and the API name the conversation from it.
        [call] = [row for row in calls if row["caller"] == caller]
        assert call["caller_name"] == asterisk_has[caller], caller
        [mail] = [m for m in mails if f"Hello from {caller}" in m.message.get_body(("plain",)).get_content()]
        body = mail.message.get_body(("plain",)).get_content()
        assert f"({asterisk_has[caller]}) replied to" in body, body
        assert "O\\'Brien" not in body and "\\\\" not in body  # never escaped twice
