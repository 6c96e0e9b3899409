"""From a homeowner's text reaching textback to the push service taking its push, on loopback.

Runs a real daemon in-process with its `web:` listener and the push worker, and the test
suite's push service (tests/push_service.py), which checks each push's VAPID token and
decrypts it before answering 201, and an SMTP sink takes the owners' alert emails, which go
out at the same time as in production. Each of N homeowners (default 100) texts in turn; a text
"reaches textback" when the gateway's webhook handler hands it over (`Daemon.receive_text`,
the call every gateway makes once it has parsed a webhook), and ends when the push service
has the decrypted push. The time covers the commit of the text, the push worker waking on
the committed event, the signed link, the encryption, the VAPID signature and the HTTP POST.
Prints p50, p90, p99 and the maximum in milliseconds.

Usage (its ports are the tests' fixed loopback ones, so run it in a private namespace):
    unshare -nm bash -c 'mount -t tmpfs tmpfs /run; ip link set lo up; \
        .venv/bin/python bench/push_latency.py -n 100'
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency import percentile  # noqa: E402
from lab.configs import BUSINESS_NUMBER  # noqa: E402
from lab.harness import start_smtp_sink  # noqa: E402
from sms_gateway.base import InboundText  # noqa: E402
from tests.push_service import PushService  # noqa: E402
from tests.web_helpers import OWNERS, PASSWORDS, client, set_passwords, web_config, web_daemon  # noqa: E402


async def measure(texts: int) -> list[float]:
    _, mail_relay = start_smtp_sink()
    try:
        return await _measure(texts)
    finally:
        mail_relay.stop()


async def _measure(texts: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = web_config(Path(tmp), owners=OWNERS, push={"insecure_loopback_for_tests": True})
        await set_passwords(path)
        async with PushService() as service, web_daemon(path) as daemon:
            for owner in ("dana", "sam"):  # an unassigned lead: both owners' phones are told
                async with client() as signed_in:
                    await signed_in.sign_in(owner, PASSWORDS[owner])
                    csrf = await signed_in.csrf("/settings")
                    await signed_in.post("/push/subscribe", {"csrf": csrf, **service.subscribe().form()})
            per_text = []
            for i in range(texts):
                before = len(service.received)
                started = time.perf_counter()
                await daemon.receive_text(InboundText(
                    sender=f"+1212555{3000 + i:04d}", recipient=BUSINESS_NUMBER,
                    body=f"Hi, I need a quote for a bathroom, text {i}", gateway_id=f"bench-{i}"), "log")
                while len(service.received) < before + 1:
                    await asyncio.sleep(0.001)
                per_text.append((time.perf_counter() - started) * 1000)
                while len(service.received) < before + 2:  # the second owner's, before the next text
                    await asyncio.sleep(0.001)
            if service.refused:
                raise SystemExit(f"the push service refused pushes: {service.refused[:3]}")
            return per_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="homeowner texts (default 100)")
    args = parser.parse_args()
    per_text = asyncio.run(measure(args.n))
    print(f"text reaching textback -> push service took the first push, {len(per_text)} texts, "
          f"two subscribed devices:")
    print(f"  p50 {percentile(per_text, 50):.1f} ms  p90 {percentile(per_text, 90):.1f} ms  "
          f"p99 {percentile(per_text, 99):.1f} ms  max {max(per_text):.1f} ms")


if __name__ == "__main__":
    main()
