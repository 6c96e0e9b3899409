"""Retention in the daemon: once a day, the months past retention.months are pruned."""

from __future__ import annotations

import logging

from textback.pruning import prune

log = logging.getLogger("textback")

PRUNE_EVERY_SECONDS = 24 * 3600.0


class RetentionWorker:
    """Runs `textback prune` daily while the daemon runs (only with retention.months set)."""

    async def _retention_worker(self) -> None:
        while True:
            result = await prune(self.store, self.config.retention.months,
                                 self.config.business.timezone, files=self.media_files)
            if result.batch_seconds:
                log.info("retention: %d batch(es), the longest held the write lock %.0f ms",
                         len(result.batch_seconds), result.longest_batch * 1000)
            await self.clock.sleep(PRUNE_EVERY_SECONDS)
