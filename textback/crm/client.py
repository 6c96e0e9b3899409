"""An adapter as one more endpoint of the delivery worker: an event in, an Attempt out."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Callable

import aiohttp
from pydantic import SecretStr

from textback.crm import Adapter, CrmRetry, adapter_class
from textback.hooks.sender import Attempt

if TYPE_CHECKING:
    from textback.config import CrmConfig
    from textback.store import Store

log = logging.getLogger("textback.crm")


class CrmClient:
    def __init__(self, config: CrmConfig, token: SecretStr, store: Store,
                 mask: Callable[[str], str]):
        self.config = config
        self._store = store
        self._mask = mask
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.timeout_seconds))
        self.adapter: Adapter = adapter_class(config.type)(dict(config.options),
                                                       token.get_secret_value(), self._http)

    @property
    def events(self) -> tuple[str, ...]:
        return tuple(self.adapter.events)

    async def deliver(self, event_id: str, body: str) -> Attempt:
        """Hand one event and its conversation's texts so far to the adapter; never raises."""
        event = json.loads(body)
        conversation = event["data"].get("conversation_id")
        thread = []
        if conversation is not None:
            thread = (await self._store.conversation_history(conversation))["messages"]
            media = await self._store.media_of(m["id"] for m in thread if m["direction"] == "in")
            thread = [m | {"media": media.get(m["id"], [])} for m in thread]
        try:
            await self.adapter.handle(event, thread)
        except CrmRetry as exc:
            return Attempt(False, exc.status, self._mask(str(exc)), exc.retry_after)
        except Exception as exc:  # noqa: BLE001 - a plugin's bug is a failed try, logged
            log.exception("the %s CRM adapter failed on %s", self.config.name, event_id)
            return Attempt(False, None, self._mask(f"{type(exc).__name__} in the adapter: {exc}"))
        return Attempt(True, None)

    async def close(self) -> None:
        await self._http.close()
