"""Running the daemon with a media-carrying gateway, and loopback servers on chosen addresses."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp import web

from lab.configs import base_config, write_config
from lab.harness import SMTP_SINK_PORT, eventually
from textback.config import load
from textback.daemon import Daemon


@contextlib.asynccontextmanager
async def serving_on(app: web.Application, host: str) -> AsyncIterator[str]:
    """Serve `app` on a loopback address of its own (a host name of its own, as far as the
    media allowlist is concerned) and yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    try:
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_daemon(tmp_path: Path, **overrides: Any) -> AsyncIterator[Daemon]:
    config = base_config(tmp_path, **{"ami.port": 15099,  # nothing listens: no calls here
                                      "smtp.port": SMTP_SINK_PORT, **overrides})
    daemon = Daemon(load(write_config(tmp_path, config)))
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    try:
        await eventually(lambda: asyncio.sleep(0, daemon.serving.is_set()), 10, "daemon start")
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)


async def settled(daemon: Daemon, message_id: int, timeout: float = 15.0) -> list[dict]:
    """The message's media rows once none is pending or being fetched."""
    async def done() -> bool:
        rows = (await daemon.store.media_of([message_id]))[message_id]
        return bool(rows) and all(r["state"] in ("kept", "failed") for r in rows)
    await eventually(done, timeout, f"the media of message {message_id} to settle")
    return (await daemon.store.media_of([message_id]))[message_id]


async def latest_inbound_id(daemon: Daemon) -> int:
    row = await daemon.store._one("SELECT MAX(id) AS id FROM messages WHERE direction = 'in'")
    return row["id"]
