"""Retention at work: each month before the horizon summed up into its scorecard, then its
calls, messages, alerts and media (rows, then the files no row names) deleted in short batches
(textback/core/retention.py decides the steps), and the reply tokens of those months cleared of the
lines their alert showed; reply tokens that have expired are deleted, whatever their month.

Opt-outs are never pruned (they are not in any pruned table), nor are conversations and
their outcomes; a text or an email still in flight waits for a later run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textback.core import retention
from textback.mediafiles import MediaStore

if TYPE_CHECKING:
    from textback.store import Store

log = logging.getLogger("textback")

PRUNED_BEFORE = "pruned_before"  # the store's `progress` row: the horizon of the last prune


@dataclass
class Pruned:
    """What a prune did (or, on a dry run, would do)."""

    horizon: float
    months_kept: list[str] = field(default_factory=list)  # summed up into scorecard rows
    deleted: dict[str, int] = field(default_factory=lambda: {
        "calls": 0, "messages": 0, "alerts": 0, "media": 0, "media_bytes": 0, "quotes": 0,
        "reply_tokens": 0})
    files_removed: int = 0  # media files no row names any more, removed from disk
    batch_seconds: list[float] = field(default_factory=list)  # how long each held the write lock

    @property
    def longest_batch(self) -> float:
        return max(self.batch_seconds, default=0.0)


# A media file is written just before its row is committed: never remove a younger one.
FILE_GRACE_SECONDS = 3600.0


async def prune(store: Store, months: int, timezone: str, now: float | None = None,
                dry_run: bool = False, files: MediaStore | None = None) -> Pruned:
    now = time.time() if now is None else now
    horizon = retention.horizon(now, months, timezone)
    result = Pruned(horizon)
    oldest = await store.oldest_activity()
    history = oldest is not None and oldest < horizon  # else only expired reply tokens go
    for month in retention.months_between(oldest, horizon, timezone) if history else ():
        if await store.monthly_scorecard(month.label) is not None:
            continue  # summed up by an earlier run, before any of it went
        cards = await store.scorecard(month.start, month.end)
        if cards:
            result.months_kept.append(month.label)
            if not dry_run:
                await store.keep_monthly_scorecard(month.label, cards)
    if dry_run:
        result.deleted = await store.prunable(horizon, expired_before=now)
        return result
    size = retention.FIRST_BATCH
    while True:
        began = time.perf_counter()
        deleted = await store.prune_batch(horizon, size, expired_before=now)
        seconds = time.perf_counter() - began
        if not any(deleted.values()):
            break
        result.batch_seconds.append(seconds)
        for table, count in deleted.items():
            result.deleted[table] += count
        size = retention.next_batch(size, seconds)
        await asyncio.sleep(0)  # the daemon's own writes go between batches
    if not history:
        return result
    await store.note_progress(PRUNED_BEFORE, horizon)
    if files is not None:
        result.files_removed = (await asyncio.to_thread(
            files.remove_unreferenced, await store.media_digests(),
            time.time() - FILE_GRACE_SECONDS))[0]
    log.info("retention: pruned %(calls)d calls, %(messages)d messages, %(alerts)d alerts and "
             "%(media)d media items from before the horizon", result.deleted)
    return result
