"""The AGI's routing table kept current: written at start, rewritten daily (it lists calendar
holidays for this year and the next only), and every minute while it cannot be written."""

from __future__ import annotations

import logging
from datetime import date

from textback.config import Config
from textback.routing import write_routing_table
from textback.workers.common import SystemClock
from textback.workers.ops import Watch

log = logging.getLogger("textback")

REFRESH_SECONDS = 24 * 3600.0
RETRY_SECONDS = 60.0  # while the table cannot be written


class RoutingTableWorker:
    """Writes `agi.routing_file`; what went wrong is kept in `watch.routing_error`, which opens
    the routing-table incident."""

    def __init__(self, config: Config, watch: Watch, clock: SystemClock,
                 refresh_seconds: float = REFRESH_SECONDS, retry_seconds: float = RETRY_SECONDS):
        self.config = config
        self.watch = watch
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.retry_seconds = retry_seconds

    def write(self) -> None:
        """Write the table now; a failure is logged and kept for the incident, never raised: the
        table written before stays, and the AGI script falls back to its ring targets."""
        file = self.config.agi.routing_file
        try:
            path = write_routing_table(self.config, date.today())
        except OSError as exc:
            self.watch.routing_error = f"cannot write {file}: {exc.strerror or exc}"
            log.error("cannot write the routing table %s (%s); the AGI script will use its "
                      "fallback ring targets", file, exc.strerror)
            return
        except Exception as exc:  # noqa: BLE001 - the table of yesterday stays; the AGI can fall back
            self.watch.routing_error = f"could not build {file}: {type(exc).__name__}: {exc}"
            log.exception("could not build the routing table; the one written before stays")
            return
        self.watch.routing_error = None
        log.info("routing table for the AGI script: %s", path)

    async def run(self) -> None:
        """Rewrite the table daily; while it cannot be written, try again every minute."""
        while True:
            await self.clock.sleep(self.retry_seconds if self.watch.routing_error
                                   else self.refresh_seconds)
            self.write()
