"""The store's side of inbound media: one `media` row per photo, video or file a text carried.

A part of `textback.store.Store` (a mixin), like store_web. The rows are
inserted by `Store.record_inbound` in the message's own transaction, before
the gateway is answered; the media worker then moves each one:

    pending --claim--> fetching --> kept (shown inline, or a named attachment only)
       ^                  |    \\--> failed (refused, or not fetched before the deadline)
       +----- retry ------+          (fetching, its daemon gone --> pending)

A kept row holds the SHA-256 of its file (and of its JPEG rendition for a
HEIC photo); the file itself is in textback.mediafiles.MediaStore.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable

from textback.store.states import MEDIA
from textback.store.web import NEXT_VERSION

MEDIA_COLUMNS = (
    "id, message_id, position, url, declared_type, declared_size, state, shown, content_type,"
    " size, sha256, rendition_sha256, note, attempts, created_at, fetched_at")


@dataclass(frozen=True)
class NewMedia:
    """A media row to insert with its message: pending, or already kept (`sha256` given)."""

    url: str
    declared_type: str
    declared_size: int | None = None
    sha256: str | None = None
    content_type: str = ""
    shown: bool = False
    size: int | None = None
    note: str = ""
    rendition_sha256: str | None = None




class MediaRows:
    async def _insert_media(self, db: Any, message_id: int, items: Iterable[NewMedia],
                            now: float) -> None:
        for position, item in enumerate(items):
            await db.execute(
                "INSERT INTO media (message_id, position, url, declared_type, declared_size,"
                " state, shown, content_type, size, sha256, rendition_sha256, note, created_at,"
                " fetched_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (message_id, position, item.url, item.declared_type, item.declared_size,
                 "kept" if item.sha256 else "pending", int(item.shown), item.content_type,
                 item.size, item.sha256, item.rendition_sha256, item.note, now,
                 now if item.sha256 else None))

    async def claim_media(self, now: float, limit: int) -> list[dict[str, Any]]:
        """Due pending rows, each claimed (pending -> fetching) in one commit, with its
        message's gateway and how many bytes its message has kept so far."""
        async with self._transaction():
            rows = await self._all(
                "SELECT d.id, d.message_id, d.url, d.declared_type, d.declared_size, d.attempts,"
                " d.created_at, m.gateway FROM media d JOIN messages m ON m.id = d.message_id"
                f" WHERE d.{MEDIA.guard('claim')} AND d.retry_at <= ? ORDER BY d.retry_at, d.id"
                f" LIMIT ?{self._skip_locked('d')}", (now, limit))
            marks = ",".join("?" * len(rows))
            taken = set(await self._claim("media", MEDIA, f"id IN ({marks})",
                                          tuple(row["id"] for row in rows),
                                          sets=", attempts = attempts + 1")) if rows else set()
            return [dict(row) for row in rows if row["id"] in taken]

    async def message_media_bytes(self, message_id: int) -> int:
        row = await self._one("SELECT COALESCE(SUM(size), 0) AS n FROM media"
                              " WHERE message_id = ? AND state = 'kept'", (message_id,))
        return row["n"]

    async def keep_media(self, media_id: int, sha256: str, content_type: str, shown: bool,
                         size: int, note: str = "", rendition_sha256: str | None = None) -> None:
        async with self._transaction() as db:
            await db.execute(
                f"UPDATE media SET state = '{MEDIA.target('keep')}', sha256 = ?, content_type = ?, shown = ?,"
                " size = ?, note = ?, rendition_sha256 = ?, fetched_at = ? WHERE id = ?",
                (sha256, content_type, int(shown), size, note, rendition_sha256, time.time(),
                 media_id))
            await self._bump_for_media(db, media_id)
            await self._alert_now_if_settled(db, media_id)

    async def retry_media(self, media_id: int, retry_at: float, note: str) -> None:
        async with self._transaction() as db:
            await db.execute(f"UPDATE media SET state = '{MEDIA.target('retry')}', retry_at = ?,"
                             " note = ? WHERE id = ?", (retry_at, note, media_id))

    async def fail_media(self, media_id: int, note: str) -> None:
        async with self._transaction() as db:
            await db.execute(f"UPDATE media SET state = '{MEDIA.target('fail')}', note = ?"
                             " WHERE id = ?",
                             (note, media_id))
            await self._bump_for_media(db, media_id)
            await self._alert_now_if_settled(db, media_id)

    async def _bump_for_media(self, db: Any, media_id: int) -> None:
        """A fetched or failed item changes its thread: the live inbox re-reads it."""
        await db.execute(
            f"UPDATE conversations SET version = {NEXT_VERSION} WHERE id = (SELECT"
            " m.conversation_id FROM media d JOIN messages m ON m.id = d.message_id"
            " WHERE d.id = ?)", (media_id,))

    async def recover_interrupted_media(self, mine_too: bool = False) -> int:
        """Rows a gone daemon left `fetching` go back to pending: a fetch has no side effect.
        Another live daemon's are its own to end (`mine_too`: see `recover_interrupted`)."""
        async with self._transaction() as db:
            cursor = await db.execute(f"UPDATE media SET state = '{MEDIA.target('interrupted')}'"
                                      f" WHERE {MEDIA.guard('interrupted')} AND {self._orphaned(mine_too)}")
            return cursor.rowcount

    async def next_media_retry(self) -> float | None:
        row = await self._one("SELECT MIN(retry_at) AS at FROM media WHERE state = 'pending'")
        return row["at"]

    async def media_of(self, message_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
        """The media rows of these messages, in the order the text carried them."""
        ids = list(message_ids)
        found: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in await self._all(
                    f"SELECT {MEDIA_COLUMNS} FROM media WHERE message_id IN ({marks})"
                    " ORDER BY message_id, position", tuple(chunk)):
                found[row["message_id"]].append(dict(row))
        return found

    async def media_item(self, media_id: int) -> dict[str, Any] | None:
        """One row with its conversation (for the access check of whoever asks for it)."""
        row = await self._one(
            f"SELECT {', '.join('d.' + c.strip() for c in MEDIA_COLUMNS.split(','))},"
            " m.conversation_id FROM media d JOIN messages m ON m.id = d.message_id"
            " WHERE d.id = ?", (media_id,))
        return dict(row) if row else None

    async def media_unsettled(self, message_id: int) -> dict[str, Any] | None:
        """The first of a message's media still pending or being fetched, or None."""
        row = await self._one("SELECT id, created_at FROM media WHERE message_id = ? AND state IN"
                              " ('pending', 'fetching') LIMIT 1", (message_id,))
        return dict(row) if row else None

    async def defer_alert(self, alert_id: int, until: float) -> None:
        """A claimed alert back to pending until `until`, without spending one of its tries;
        due at once if its media settled meanwhile (the media worker found it claimed then)."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE alerts SET state = 'pending', attempts = attempts - 1, retry_at = CASE"
                " WHEN EXISTS (SELECT 1 FROM media d WHERE d.message_id = alerts.message_id"
                " AND d.state IN ('pending', 'fetching')) THEN ? ELSE 0 END"
                " WHERE id = ? AND state = 'sending'", (until, alert_id))

    async def _alert_now_if_settled(self, db: Any, media_id: int) -> None:
        """The last of a message's media settled: its waiting alert is due at once."""
        await db.execute(
            "UPDATE alerts SET retry_at = 0 WHERE state = 'pending' AND message_id = (SELECT"
            " message_id FROM media WHERE id = ?) AND NOT EXISTS (SELECT 1 FROM media WHERE"
            " message_id = alerts.message_id AND state IN ('pending', 'fetching'))", (media_id,))

    async def untold_media_failures(self) -> list[dict[str, Any]]:
        """Messages whose media are all settled, some failed, and whose owner was not told."""
        rows = await self._all(
            "SELECT m.id AS message_id, m.conversation_id, c.caller, c.business_number,"
            " c.owner_id, c.selftest FROM media d JOIN messages m ON m.id = d.message_id"
            " JOIN conversations c ON c.id = m.conversation_id"
            " WHERE d.state = 'failed' AND d.owner_told = 0 AND NOT EXISTS (SELECT 1 FROM media e"
            " WHERE e.message_id = m.id AND e.state IN ('pending', 'fetching'))"
            " GROUP BY m.id ORDER BY m.id")
        return [dict(r) for r in rows]

    async def mark_media_told(self, message_id: int) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE media SET owner_told = 1 WHERE message_id = ?"
                             " AND state = 'failed'", (message_id,))

    async def media_digests(self) -> set[str]:
        """Every file a media row refers to (originals and renditions)."""
        rows = await self._all("SELECT sha256 AS d FROM media WHERE sha256 IS NOT NULL UNION"
                               " SELECT rendition_sha256 FROM media WHERE rendition_sha256 IS NOT NULL")
        return {row["d"] for row in rows}
