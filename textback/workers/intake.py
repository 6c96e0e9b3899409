"""The optional intake extractor at work (`intake.model:`): each homeowner text, once it and
its owner alert are committed, is handed to the extractor within its timeout; what comes back
is checked like a person's value and stored as a suggestion. A failure or a timeout is
logged and counted as a warning; the alert never waits for it, and the rules' facts stand."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import aiohttp

from textback.core.intake import FIELDS, SUGGESTED
from textback.intake_model import ModelFailed, model_class

if TYPE_CHECKING:
    from textback.config import Config, IntakeModelConfig
    from textback.store import Store

log = logging.getLogger("textback.intake")


class IntakeSuggester:
    """Runs the configured extractor on texts, one task each, and stores its suggestions."""

    def __init__(self, config: Config, model: IntakeModelConfig, token: str | None,
                 store: Store):
        self._config = config
        self._settings = model
        self._store = store
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=model.timeout_seconds))
        self._model = model_class(model.type)(dict(model.options), token, self._http)
        self._tasks: set[asyncio.Task] = set()

    def submit(self, conversation_id: int, message_id: int, text: str) -> None:
        """Ask for suggestions on a committed text; returns at once."""
        task = asyncio.get_running_loop().create_task(
            self.suggest(conversation_id, message_id, text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def suggest(self, conversation_id: int, message_id: int, text: str) -> int:
        """The extractor's values for one text, checked and stored; how many were kept."""
        now = time.time()
        today = datetime.fromtimestamp(now, ZoneInfo(self._config.business.timezone)).date()
        try:
            found: dict[str, Any] = await asyncio.wait_for(
                self._model.extract(text, today.isoformat()), self._settings.timeout_seconds)
        except (asyncio.TimeoutError, aiohttp.ClientError, ModelFailed, OSError) as exc:
            log.warning("the intake extractor %s gave nothing for message %d: %s",
                        self._settings.type, message_id,
                        f"no answer within {self._settings.timeout_seconds:g} s"
                        if isinstance(exc, asyncio.TimeoutError) else
                        str(exc) or type(exc).__name__)
            return 0
        facts = []
        for name in FIELDS:
            if name not in found:
                continue
            try:
                checked = self._config.intake_corrections(name, str(found[name])[:200], now)
            except ValueError as exc:
                log.info("the intake extractor's %s for message %d was not kept: %s", name,
                         message_id, exc)
                continue
            facts += [replace(fact, source=SUGGESTED, evidence=str(found[name])[:200],
                              why=f"suggested by the {self._settings.type} extractor")
                      for fact in checked]
        if facts:
            await self._store.suggest_intake(conversation_id, message_id, facts,
                                             f"model:{self._settings.type}", text)
        return len(facts)

    async def close(self) -> None:
        """Let the suggestions under way finish (each within its timeout), then close."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.close()
