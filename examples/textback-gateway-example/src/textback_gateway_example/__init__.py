"""A textback gateway plugin that appends each text to a JSON-lines file.

textback finds it through the `textback.gateways` entry point named `spool`
(pyproject.toml) and calls `create(options)` with `gateway.plugin.options`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from sms_gateway.base import OutgoingText, SendResult


class SpoolGateway:
    name = "spool"

    def __init__(self, path: Path):
        self._path = path
        self._lock = asyncio.Lock()

    async def send(self, text: OutgoingText) -> SendResult:
        message_id = uuid.uuid4().hex
        line = json.dumps({"id": message_id, "from": text.sender, "to": text.recipient,
                           "body": text.body}, ensure_ascii=False)
        try:
            async with self._lock:
                await asyncio.to_thread(self._append, line)
        except OSError as exc:
            return SendResult.retryable(f"cannot write {self._path}: {exc.strerror}")
        return SendResult.accepted(message_id)

    def _append(self, line: str) -> None:
        with self._path.open("a", encoding="utf-8") as spool:
            spool.write(line + "\n")

    async def check(self) -> str:
        if not self._path.parent.is_dir():
            raise FileNotFoundError(f"folder {self._path.parent} does not exist")
        return f"spool gateway writing to {self._path}"


def create(options: dict[str, Any]) -> SpoolGateway:
    """Build the gateway from `gateway.plugin.options`; ValueError explains a bad option."""
    unknown = set(options) - {"path"}
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))}")
    if not isinstance(options.get("path"), str) or not options["path"]:
        raise ValueError("'path' (the spool file) is required")
    return SpoolGateway(Path(options["path"]))
