"""The whole daemon with the twilio gateway: a loopback Twilio, the real webhook server, a real SMTP sink.

A missed-call text goes out through the Twilio Messages API; the homeowner's
signed reply comes back through the webhook, is committed, and reaches the
owner by email once, even when Twilio delivers the webhook twice; the status
callback marks the text delivered.
"""

from __future__ import annotations

import asyncio
import time

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from lab.harness import eventually
from textback.config import load
from textback.daemon import Daemon
from textback.store import CallRow, PlannedText
from tests.providers.common import serving
from tests.providers.twilio import FakeTwilio

SID = "AC" + "3" * 32
TOKEN = "twilio-token-for-the-daemon-test"
PUBLIC = "https://textback.example.com/hooks"
WEBHOOK_PORT = 15181


async def test_twilio_round_trip_through_the_daemon(tmp_path, smtp_sink):
    twilio = FakeTwilio(SID, TOKEN)
    (tmp_path / "twilio.token").write_text(TOKEN)
    async with serving(twilio.app()) as api:
        config = base_config(tmp_path, **{
            "ami.port": 15099,  # nothing listens: calls are not part of this test
            "gateway": {"type": "twilio",
                        "twilio": {"account_sid": SID, "auth_token": {"file": "twilio.token"},
                                   "api_base_url": api},
                        "callbacks": {"listen_port": WEBHOOK_PORT, "public_base_url": PUBLIC}},
            "smtp.port": 15025,
        })
        daemon = Daemon(load(write_config(tmp_path, config)))
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.run(stop))
        try:
            await eventually(lambda: asyncio.sleep(0, daemon.store is not None
                                                   and daemon.gateway is not None), 5, "start")
            now = time.time()
            await daemon.store.record_call(
                CallRow("7.1", BUSINESS_NUMBER, HOMEOWNER, HOMEOWNER, "", now - 20, None, now,
                        "missed", "no_answer", "missed_call_text"),
                PlannedText("dana", "Hi, this is Acme Remodeling.", now))
            daemon.wake_outbox()
            await eventually(lambda: asyncio.sleep(0, twilio.accepted), 5, "the text at Twilio")
            [sent] = twilio.accepted
            assert (sent["From"], sent["To"]) == (BUSINESS_NUMBER, HOMEOWNER)
            assert sent["StatusCallback"] == f"{PUBLIC}/twilio/status"

            local = f"http://127.0.0.1:{WEBHOOK_PORT}"
            status = {"MessageSid": sent["sid"], "MessageStatus": "delivered",
                      "AccountSid": SID, "To": HOMEOWNER, "From": BUSINESS_NUMBER}
            assert await twilio.call(f"{local}/twilio/status", f"{PUBLIC}/twilio/status",
                                     status) == 200
            reply = twilio.inbound_params(HOMEOWNER, BUSINESS_NUMBER, "Yes, call me <b>today</b>")
            for _ in range(2):  # Twilio may deliver a webhook twice
                assert await twilio.call(f"{local}/twilio/inbound", f"{PUBLIC}/twilio/inbound",
                                         reply) == 200
            forged = twilio.inbound_params(HOMEOWNER, BUSINESS_NUMBER, "forged")
            assert await twilio.call(f"{local}/twilio/inbound", f"{PUBLIC}/twilio/inbound",
                                     forged, signature="bm90IGEgc2lnbmF0dXJl") == 403

            [mail] = await asyncio.to_thread(smtp_sink.wait_for, 1, 10)
            assert "Yes, call me <b>today</b>" in mail.message.get_body(("plain",)).get_content()
            await asyncio.sleep(0.5)
            assert len(smtp_sink.received) == 1
            rows = await daemon.store.timeline(HOMEOWNER)
            assert [(r["kind"], r["status"]) for r in rows] == [
                ("call", "missed"), ("text_out", "delivered"), ("text_in", "received"),
                ("alert", "sent")]
            value = daemon.metrics.registry.get_sample_value
            assert value("textback_webhook_requests_total",
                         {"gateway": "twilio", "result": "accepted"}) == 3
            assert value("textback_webhook_requests_total",
                         {"gateway": "twilio", "result": "refused"}) == 1
            assert value("textback_texts_total", {"status": "accepted", "gateway": "twilio"}) == 1
            assert value("textback_hangup_to_accepted_seconds_count") == 1
            assert value("textback_mail_sent_total", {"kind": "alerts"}) == 1
            assert value("textback_reply_to_alert_seconds_count") == 1
            assert value("textback_reply_to_alert_seconds_sum") < 10
        finally:
            stop.set()
            await asyncio.wait_for(running, 10)
