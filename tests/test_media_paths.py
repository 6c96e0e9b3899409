"""`textback check` says what happens to photos on the configured gateway, both ways; for the
asterisk gateway, plainly that a photo sent by SIP MESSAGE never reaches textback."""

from __future__ import annotations

from lab.configs import base_config, write_config
from textback.checks import media_paths
from textback.config import load


def paths_for(tmp_path, **overrides) -> str:
    return media_paths(load(write_config(tmp_path, base_config(tmp_path, **overrides))).config)


def test_the_asterisk_gateway_says_a_photo_never_reaches_textback(tmp_path):
    said = paths_for(tmp_path, gateway={"type": "asterisk", "asterisk": {
        "destination": "pjsip:carrier/sip:{to}@127.0.0.3:5060", "from_uri": "sip:{sender}@127.0.0.1"}})
    assert "415 before the dialplan runs" in said and "textback never sees it" in said
    assert "An owner's photo is not texted (the owner is told)" in said


def test_twilio_says_where_the_provider_fetches_an_owners_photo_or_that_it_cannot(tmp_path):
    (tmp_path / "token").write_text("t")
    twilio = {"type": "twilio", "twilio": {"account_sid": "AC" + "1" * 32,
                                           "auth_token": {"file": "token"}},
              "webhooks": {"public_base_url": "https://textback.example.com/hooks"}}
    with_web = paths_for(tmp_path, gateway=twilio,
                         web={"public_url": "https://inbox.acme.example"})
    assert "MMS through signed links under https://inbox.acme.example/media/" in with_web
    without = paths_for(tmp_path, gateway=twilio)
    assert "an owner's photo is NOT texted (the owner is told)" in without
