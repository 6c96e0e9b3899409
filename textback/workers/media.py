"""The media worker: each photo a homeowner texted, fetched from the provider, checked and kept.

It runs under the daemon's supervisor beside the outbox and mail workers and
shares nothing with them but the database. Each item is a claimed row
(pending -> fetching); the fetch itself (sms_gateway.media.MediaFetcher)
reaches only the gateway's own media hosts. A refused item (wrong host,
too big) fails at once; a fetch that failed for now (network, 5xx, the time
limit) is retried with backoff until `media.deadline_hours` after the text,
then fails. When every item of a text has settled and one failed, its owner
gets one notice saying which, and why; the thread shows it as not fetched.

Fetched bytes are checked against the declared type and kept under their
SHA-256 (textback.mediafiles); a HEIC photo also gets a JPEG rendition.
With `media.delete_at_provider`, the provider's copy is deleted once kept.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Awaitable, Callable, Mapping
from zoneinfo import ZoneInfo

from sms_gateway.media import MediaFetcher, Refused, Retry
from textback import mediafiles
from textback.core.alerts import one_line
from textback.config import MediaConfig
from textback.core.media import normalise_type
from textback.core.numbers import national
from textback.store import Store
from textback.supervisor import cancel_and_wait
from textback.workers.common import SystemClock, log_failure, retry_delay

log = logging.getLogger("textback.core.media")

IDLE_POLL_SECONDS = 5.0  # media committed by another process, and retries, are seen within this
MAX_RETRY_SECONDS = 900.0

# (owner id, selftest?, subject, text): a notice to the conversation's owner (the admin for a
# self-test's conversation).
TellOwner = Callable[[str, bool, str, str], Awaitable[None]]


@dataclass(frozen=True)
class Kept:
    sha256: str
    content_type: str
    shown: bool
    size: int
    note: str
    rendition_sha256: str | None


def keep(files: mediafiles.MediaStore, data: bytes, declared: str) -> Kept:
    """Check the bytes, store them (and a JPEG of a HEIC photo): CPU and disk, run in a thread."""
    inspected = mediafiles.inspect(data, declared)
    digest = files.put(data)
    rendition = None
    if inspected.shown and normalise_type(declared) in ("image/heic", "image/heif"):
        rendition = files.put(mediafiles.jpeg_rendition(data))
    return Kept(digest, inspected.content_type, inspected.shown, len(data), inspected.note,
                rendition)


class MediaWorker:
    def __init__(self, settings: MediaConfig, fetchers: Mapping[str, MediaFetcher],
                 files: mediafiles.MediaStore, store: Store, clock: SystemClock,
                 wake: asyncio.Event, tell_owner: TellOwner, timezone: str,
                 alerts_wake: asyncio.Event | None = None):
        self.settings = settings
        self.store = store
        self.clock = clock
        self.files = files
        self._fetchers = dict(fetchers)
        self._wake = wake
        self._tell_owner = tell_owner
        self._timezone = timezone
        self._in_flight: set[asyncio.Task] = set()
        self._alerts_wake = alerts_wake  # an alert waiting for its photos goes once they settle

    async def run(self) -> None:
        # A gone daemon's rows, and this daemon's own (this worker, one per daemon, is
        # starting: any of its rows in flight were left by an earlier run of it).
        recovered = await self.store.recover_interrupted_media(mine_too=True)
        if recovered:
            log.warning("%d media fetches were under way when textback stopped; fetching them "
                        "again", recovered)
        try:
            while True:
                self._wake.clear()
                await self._start(self.clock.now())
                await self._tell_failures()
                await self._idle()
        finally:
            # Each row in flight stays `fetching`: pending again at the next start.
            await cancel_and_wait(self._in_flight)
            for fetcher in self._fetchers.values():
                await fetcher.close()

    async def _idle(self) -> None:
        timeout = IDLE_POLL_SECONDS
        next_retry = await self.store.next_media_retry()
        if next_retry is not None and not self._in_flight:
            timeout = min(timeout, max(0.0, next_retry - self.clock.now()))
        await self.clock.wait(self._wake, timeout)

    async def _start(self, now: float) -> None:
        room = self.settings.concurrent_fetches - len(self._in_flight)
        if room <= 0:
            return
        for row in await self.store.claim_media(now, room):
            task = asyncio.create_task(self._fetch(row))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            task.add_done_callback(log_failure)
            task.add_done_callback(lambda _: self._wake.set())
            if self._alerts_wake is not None:
                task.add_done_callback(lambda _: self._alerts_wake.set())

    async def _fetch(self, row: dict) -> None:
        s = self.settings
        media_id = row["id"]
        deadline = row["created_at"] + s.deadline_hours * 3600
        fetcher = self._fetchers.get(row["gateway"])
        if fetcher is None:
            await self._fail(row, f"textback cannot fetch media from the {row['gateway']} gateway")
            return
        budget = min(s.max_item_bytes,
                     s.max_message_bytes - await self.store.message_media_bytes(row["message_id"]))
        declared_size = row["declared_size"]
        if budget <= 0 or (declared_size is not None and declared_size > budget):
            await self._fail(row, f"larger than textback keeps ({_size(s.max_item_bytes)} per "
                                  f"item, {_size(s.max_message_bytes)} per text)")
            return
        try:
            fetched = await fetcher.fetch(row["url"], budget)
        except Refused as exc:
            await self._fail(row, f"refused: {exc}")
            return
        except Retry as exc:
            now = self.clock.now()
            delay = retry_delay(row["attempts"], MAX_RETRY_SECONDS)
            if now + delay > deadline:
                await self._fail(row, f"not fetched within {s.deadline_hours:g} h ({exc})")
            else:
                log.info("media %d not fetched (try %d: %s); retrying in %.0f s", media_id,
                         row["attempts"], exc, delay)
                await self.store.retry_media(media_id, now + delay, str(exc))
            return
        kept = await asyncio.to_thread(keep, self.files, fetched.data, row["declared_type"])
        await self.store.keep_media(media_id, kept.sha256, kept.content_type, kept.shown,
                                    kept.size, kept.note, kept.rendition_sha256)
        if kept.shown:
            log.info("media %d kept: %s, %d bytes", media_id, kept.content_type, kept.size)
        else:
            log.warning("media %d kept as an attachment only, never shown: %s", media_id,
                        one_line(kept.note, 200))
        if s.delete_at_provider and fetcher.access.deletable:
            why = await fetcher.delete(row["url"])
            if why:
                log.warning("media %d kept, but its copy at %s was not deleted: %s", media_id,
                            row["gateway"], why)

    async def _fail(self, row: dict, note: str) -> None:
        log.warning("media %d of message %d not kept: %s", row["id"], row["message_id"],
                    one_line(note, 300))
        await self.store.fail_media(row["id"], note)

    async def _tell_failures(self) -> None:
        """One notice per text whose media are all settled and some failed."""
        for message in await self.store.untold_media_failures():
            items = (await self.store.media_of([message["message_id"]]))[message["message_id"]]
            failed = [i for i in items if i["state"] == "failed"]
            when = datetime.fromtimestamp(items[0]["created_at"], ZoneInfo(self._timezone))
            caller = national(message["caller"])
            lines = [f"{caller} texted {len(items)} photo(s) or file(s) at "
                     f"{when.strftime('%a %d %b %H:%M')}; {len(failed)} could not be kept:", ""]
            lines += [f"  {n + 1}. {one_line(i['declared_type'] or 'no type given', 60)}: "
                      f"{one_line(i['note'], 200)}" for n, i in enumerate(failed)]
            lines += ["", f"Ask them to send it again, or to email it. The text itself is in the "
                          f"thread with {caller}."]
            await self._tell_owner(message["owner_id"], bool(message["selftest"]),
                                   f"A photo from {caller} could not be kept", "\n".join(lines))
            await self.store.mark_media_told(message["message_id"])


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MB" if n >= 1024 * 1024 else f"{n / 1024:g} KB"
