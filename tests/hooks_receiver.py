"""A real webhook receiver on loopback: verifies every delivery with the standardwebhooks library."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def endpoint(tmp_path: Path, name: str, url: str, secret: str, **settings: Any) -> dict[str, Any]:
    """A `webhooks.endpoints` entry with its secret in a file beside the config."""
    (tmp_path / f"{name}.whsec").write_text(secret + "\n")
    return {"name": name, "url": url, "secret": {"file": f"{name}.whsec"},
            "allow_private": True, **settings}


@dataclass
class Delivery:
    id: str
    event: dict[str, Any]
    headers: dict[str, str]
    at: float  # wall clock


@dataclass
class Receiver:
    """Answers 503 while `down()` (with `retry_after`, if set), holds requests until `release`
    while `holding`, else 204. A request whose sender hung up meanwhile is not a delivery.

    Every request's signature is checked before anything else; a bad one is
    kept in `forged` (the tests assert it stays empty) and answered 400.
    """

    secret: str
    down: Callable[[], bool] = lambda: False
    holding: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    retry_after: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)  # verified and answered 2xx
    seen: list[Delivery] = field(default_factory=list)  # verified, whatever the answer
    forged: list[str] = field(default_factory=list)
    refused: int = 0

    def app(self, path: str = "/hook") -> web.Application:
        app = web.Application()
        app.router.add_post(path, self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            self.forged.append(f"{exc}: {request.headers.get('webhook-id')}")
            return web.Response(status=400)
        delivery = Delivery(request.headers["webhook-id"], event, dict(request.headers), time.time())
        assert event["id"] == delivery.id
        self.seen.append(delivery)
        if self.holding:
            await self.release.wait()
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)
        if self.down():
            self.refused += 1
            return web.Response(status=503, headers={"Retry-After": self.retry_after}
                                if self.retry_after else None)
        self.deliveries.append(delivery)
        return web.Response(status=204)

    def ids(self) -> set[str]:
        return {d.id for d in self.deliveries}

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [d.event for d in self.deliveries if d.event["type"] == kind]


class ReceiverThread:
    """A Receiver served from its own thread and loop, for tests that block (the lab tests)."""

    def __init__(self, receiver: Receiver, port: int):
        self.receiver = receiver
        self.url = f"http://127.0.0.1:{port}/hook"
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="webhook-receiver", daemon=True)

    def __enter__(self) -> "ReceiverThread":
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("the webhook receiver did not start")
        return self

    def _serve(self) -> None:
        from aiohttp import web as aioweb

        asyncio.set_event_loop(self._loop)
        runner = aioweb.AppRunner(self.receiver.app(), access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(aioweb.TCPSite(runner, "127.0.0.1", self._port).start())
        self._runner = runner
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def schemas(doc: Path) -> dict[str, dict[str, Any]]:
    """The JSON Schemas published in docs/webhooks.md, by event type: each is the ```json block
    that follows a `<!-- schema: TYPE -->` line."""
    found, text = {}, doc.read_text()
    for part in text.split("<!-- schema: ")[1:]:
        kind, rest = part.split(" -->", 1)
        block = rest.split("```json", 1)[1].split("```", 1)[0]
        found[kind.strip()] = json.loads(block)
    return found
