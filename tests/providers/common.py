"""Running loopback servers, and the webhook server with recording sinks."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator, Sequence

from aiohttp import web

from sms_gateway.base import InboundText
from sms_gateway.callbacks import DeliveryStatus, CallbackServer


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int = 0) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 and yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@dataclass
class Sinks:
    """Stand-ins for the daemon's commit coroutines: they record what reached them."""

    texts: list[tuple[InboundText, str]] = field(default_factory=list)
    statuses: list[tuple[DeliveryStatus, str]] = field(default_factory=list)
    failures_left: int = 0  # the next N deliveries raise, as if the database were locked

    async def deliver(self, text: InboundText, gateway: str) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("database is locked")
        self.texts.append((text, gateway))

    async def report(self, status: DeliveryStatus, gateway: str) -> None:
        self.statuses.append((status, gateway))


@contextlib.asynccontextmanager
async def callback_server(gateways: Sequence[object], public_base_url: str | None = None,
                         port: int = 0, max_body_bytes: int = 65536,
                         refusal_log_interval: float = 60.0, sinks: Sinks | None = None,
                         **limits: float) -> AsyncIterator[tuple[str, Sinks]]:
    """The real callback server on loopback; yields its local base URL and the sinks.

    `limits`: the server's connection limits (max_connections, header_seconds, ...).
    """
    sinks = sinks or Sinks()
    server = CallbackServer(gateways, sinks.deliver, sinks.report, host="127.0.0.1", port=port,
                            public_base_url=public_base_url, max_body_bytes=max_body_bytes,
                            refusal_log_interval=refusal_log_interval, **limits)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", sinks
    finally:
        await server.stop()
