"""Retention in the daemon: once a day, the months past retention.months are pruned."""

from __future__ import annotations

import logging

from textback.config import Config
from textback.mediafiles import MediaStore
from textback.pruning import prune
from textback.store import Store
from textback.workers.common import SystemClock

log = logging.getLogger("textback")

PRUNE_EVERY_SECONDS = 24 * 3600.0


class RetentionWorker:
    """Runs `textback prune` daily while the daemon runs (only with retention.months set)."""

    def __init__(self, config: Config, store: Store, clock: SystemClock, media_files: MediaStore):
        self.config = config
        self.store = store
        self.clock = clock
        self.media_files = media_files

    async def run(self) -> None:
        while True:
            result = await prune(self.store, self.config.retention.months,
                                 self.config.business.timezone, files=self.media_files)
            if result.batch_seconds:
                log.info("retention: %d batch(es), the longest held the write lock %.0f ms",
                         len(result.batch_seconds), result.longest_batch * 1000)
            await self.clock.sleep(PRUNE_EVERY_SECONDS)
