"""SIP MESSAGE bodies that are not plain UTF-8 text, on the lab PBX with the shipped dialplan.

A photo sent as a SIP MESSAGE (Content-Type image/jpeg) is refused by
Asterisk itself with 415 before any dialplan runs (res_pjsip_messaging
accepts only text/plain out of a call), so the carrier is told at once and
textback stores nothing it could not show; docs/gateways.md says so. A
text/plain body in another charset reaches textback with its Content-Type
(MESSAGE_DATA(Content-Type) in dialplan/textback.conf) and is read in that
charset, so "Crème" arrives as "Crème", not as a replacement character.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab import configs
from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from lab.harness import DaemonProcess

pytestmark = pytest.mark.lab


def thread(path) -> list[dict]:
    shown = subprocess.run([sys.executable, "-m", "textback", "thread", "-c", str(path),
                            HOMEOWNER, "--json"], capture_output=True, text=True, timeout=30)
    return json.loads(shown.stdout) if shown.stdout.strip() else []


def test_a_photo_over_sip_is_refused_to_the_carrier_and_latin1_text_is_read_right(
        tmp_path, lab_pbx, smtp_sink):
    path = configs.lab_config(tmp_path, lab_pbx)
    daemon = DaemonProcess(path, tmp_path / "textback.log").start()
    try:
        not_text = "\udcff\udcd8\udcff\udce0JFIF photo bytes"  # sent as the bytes ff d8 ff e0 ...
        assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, not_text,
                                content_type="image/jpeg") == 415
        latin = "Cr\udce8me walls, please"  # "Crème" in ISO-8859-1: the byte e8
        assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, latin,
                                content_type="text/plain;charset=ISO-8859-1") == 202
        [alert] = smtp_sink.wait_for(1, 15)
        text = alert.message.get_body(("plain",)).get_content()
        assert "Crème walls, please" in text and "\ufffd" not in text
        rows = [r for r in thread(path) if r["kind"] == "text_in"]
        assert len(rows) == 1  # the refused photo never became a text
    finally:
        daemon.stop()
