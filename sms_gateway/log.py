"""The `log` gateway: writes texts to the log instead of sending them (dry runs)."""

from __future__ import annotations

import itertools
import logging

from sms_gateway.base import OutgoingText, SendResult

log = logging.getLogger("textback.gateway.log")


class LogGateway:
    name = "log"

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def send(self, text: OutgoingText) -> SendResult:
        log.info("would text %s from %s: %s", text.recipient, text.sender, text.body)
        return SendResult.accepted(f"log-{next(self._ids)}")

    async def check(self) -> str:
        return "log gateway: texts are written to the log, not sent"
