"""Where PostgreSQL's SQL differs from SQLite's: the search index (pg_trgm where SQLite has
FTS5), string aggregation, grouping by a key only, and the claims, which skip the rows
another daemon has locked (`FOR UPDATE SKIP LOCKED`) rather than wait for them."""

from __future__ import annotations

from typing import Any

from textback.core.fleet import IN_TURN_LOCK_CLASS
from textback.store.web import INBOX_COLUMNS, search_text


def _like_pattern(text: str) -> str:
    """`%text%` for ILIKE, the text's own `%`, `_` and `\\` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class PostgresRows:
    """The port's methods, and their helpers, whose SQL is PostgreSQL's own: first in
    PostgresStore's bases, so they take the place of the aggregates' SQLite SQL."""

    _JOIN_IN_ORDER = "JOIN"  # a plain join: PostgreSQL has no CROSS JOIN ... ON

    def _skip_locked(self, table: str) -> str:
        """Lock the rows a claim reads (of `table`, by name or alias) and skip those another
        daemon's claim has locked: each row is claimed by one daemon, none waits."""
        return f" FOR UPDATE OF {table} SKIP LOCKED"

    async def _in_turn(self, key: str) -> None:
        """A transaction-level advisory lock on `key` (hashed into the second of two int4 keys;
        a collision only makes two unrelated checks wait for each other): READ COMMITTED lets
        two daemons' check-then-insert both pass, this makes the second see the first's row."""
        await self._db.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))",
                               (IN_TURN_LOCK_CLASS, key))

    def _company_key(self, columns: str) -> str:
        """A key that names one thing of one company is unique per company (migration 30)."""
        return f"{columns}, company_id"

    async def _index_contact(self, conversation_id: int) -> None:
        """The searchable number and names of a conversation: one index row, rowid -id."""
        await self._db.execute("DELETE FROM conversation_search WHERE rowid = ?", (-conversation_id,))
        await self._db.execute(
            "INSERT INTO conversation_search (rowid, conversation_id, text)"
            " SELECT -c.id, c.id, c.caller || ' ' || substr(c.caller, 2) || ' ' || c.contact_name"
            " || ' ' || COALESCE((SELECT string_agg(DISTINCT caller_name, ',') FROM calls"
            "   WHERE conversation_id = c.id), '') FROM conversations c WHERE c.id = ?",
            (conversation_id,))

    async def _search(self, query: str, limit: int) -> list[dict[str, Any]]:
        """The trigram GIN index finds the rows holding the text, case aside, as FTS5's does."""
        text = search_text(query)
        if text is None:
            return []
        rows = await self._all(
            f"SELECT {INBOX_COLUMNS} FROM conversations c WHERE c.id IN ("
            "  SELECT conversation_id FROM conversation_search WHERE text ILIKE ?"
            "  ORDER BY rowid DESC LIMIT 1000) AND c.selftest = 0 AND c.owner_line = 0"
            " ORDER BY c.updated_at DESC, c.id DESC LIMIT ?", (_like_pattern(text), limit))
        return [dict(r) for r in rows]

    async def untold_media_failures(self) -> list[dict[str, Any]]:
        """Messages whose media are all settled, some failed, and whose owner was not told."""
        rows = await self._all(
            "SELECT m.id AS message_id, m.conversation_id, c.caller, c.business_number,"
            " c.owner_id, c.selftest FROM messages m"
            " JOIN conversations c ON c.id = m.conversation_id"
            " WHERE m.id IN (SELECT message_id FROM media d"
            "   WHERE d.state = 'failed' AND d.owner_told = 0)"
            " AND NOT EXISTS (SELECT 1 FROM media e"
            " WHERE e.message_id = m.id AND e.state IN ('pending', 'fetching'))"
            " ORDER BY m.id")
        return [dict(r) for r in rows]
