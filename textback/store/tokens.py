"""API tokens and idempotent writes."""

from __future__ import annotations

import time
from typing import Any

from textback.store.connection import Connection


class TokenRows(Connection):
    """API tokens and idempotent writes."""

    async def add_token(self, name: str, scope: str, token_hash: str, prefix: str) -> int:
        async with self._transaction():
            return await self._insert(
                "INSERT INTO api_tokens (name, scope, hash, prefix, created_at) VALUES (?,?,?,?,?)",
                (name, scope, token_hash, prefix, time.time()))

    async def api_tokens(self) -> list[dict[str, Any]]:
        """Every token, without its hash: name, scope, prefix, created, revoked."""
        rows = await self._all("SELECT id, name, scope, prefix, created_at, revoked_at"
                               " FROM api_tokens ORDER BY id")
        return [dict(r) for r in rows]

    async def revoke_token(self, name: str) -> int:
        """Revoke the live tokens called `name`; how many."""
        async with self._transaction() as db:
            cursor = await db.execute("UPDATE api_tokens SET revoked_at = ? WHERE name = ?"
                                      " AND revoked_at IS NULL", (time.time(), name))
            return cursor.rowcount

    async def live_token(self, token_hash: str) -> dict[str, Any] | None:
        row = await self._one("SELECT id, name, scope FROM api_tokens WHERE hash = ?"
                              " AND revoked_at IS NULL", (token_hash,))
        return dict(row) if row else None

    async def idempotent_answer(self, token_id: int, key: str) -> dict[str, Any] | None:
        row = await self._one("SELECT fingerprint, status, response FROM api_idempotency"
                              " WHERE token_id = ? AND key = ?", (token_id, key))
        return dict(row) if row else None

    async def keep_idempotent_answer(self, token_id: int, key: str, fingerprint: str,
                                     status: int, response: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO api_idempotency (token_id, key, fingerprint, status,"
                " response, created_at) VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (token_id, key, fingerprint, status, response, time.time()))
