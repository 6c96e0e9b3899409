"""The fleet's two dedicated PostgreSQL connections, apart from the store's pool:

- `AdvisoryLease`: one session-level advisory lock (`pg_try_advisory_lock`) held on its own
  connection for as long as the lease lasts. PostgreSQL frees the lock when that session ends,
  however it ends (the daemon killed, its host gone, `pg_terminate_backend`, a cut network
  once the server notices), so a lock is never held by a daemon that is not there.
- `WakeConnection`: a connection that only LISTENs on the wake channel and yields the
  notifications that arrive on it.

The URL and password are the store's (`storage.url`, `storage.password`); the password is
passed apart from the URL and never appears in a message.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import psycopg
from psycopg import sql

from textback.store.postgres.connection import redacted

CONNECT_SECONDS = 5
# Over TCP, both ends give up on a dead link within seconds, not the kernel's two hours: the
# client (libpq) and, more to the point, the server, which frees the lease's lock only when it
# drops the session. Ignored on a Unix socket, where a dead peer is seen at once.
DEAD_LINK_SECONDS = 3
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1,
             "keepalives_count": 2, "tcp_user_timeout": DEAD_LINK_SECONDS * 1000}
SERVER_KEEPALIVE = ("SET tcp_keepalives_idle = 1", "SET tcp_keepalives_interval = 1",
                    "SET tcp_keepalives_count = 2",
                    f"SET tcp_user_timeout = {DEAD_LINK_SECONDS * 1000}")


async def _within(seconds: float, awaitable) -> tuple[bool, object]:
    """Run `awaitable` for at most `seconds`: (True, its result) or (False, None). Unlike
    asyncio.wait_for, a timeout does not wait for the cancellation to end: on a dead link
    psycopg's cancellation itself waits for an answer that never comes."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:  # the caller stops (a shutdown): so does its query
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        return False, None
    return True, task.result()


def _abandon(task: asyncio.Future) -> None:
    """Cancel `task` without waiting, and read its outcome when it ends, so that a query
    failing on a connection closed meanwhile is not logged as never retrieved."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def _connect(url: str, password: str | None) -> psycopg.AsyncConnection:
    secret = {"password": password} if password else {}
    try:
        connection = await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=CONNECT_SECONDS, **KEEPALIVE, **secret)
        for setting in SERVER_KEEPALIVE:
            await connection.execute(setting)
        return connection
    except psycopg.OperationalError as exc:
        raise ConnectionError(f"cannot connect to PostgreSQL at {redacted(url)}: "
                              f"{str(exc).strip()}") from None


class AdvisoryLease:
    """One advisory lock, `key` (one bigint, or two int4 keys), on a connection of its own.
    `take` tries once; `alive` checks that the session (and so the lock) still stands; `drop`
    ends the session."""

    def __init__(self, url: str, password: str | None, key: int | tuple[int, int]):
        self._url, self._password, self.key = url, password, key
        self._connection: psycopg.AsyncConnection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    async def take(self) -> bool:
        """Try to take the lock; True when this lease now holds it. Raises ConnectionError
        when the database cannot be reached."""
        if self._connection is not None:
            return True
        connection = await _connect(self._url, self._password)
        try:
            row = await (await connection.execute(
                f"SELECT pg_try_advisory_lock({', '.join(['%s'] * len(self._keys))})",
                self._keys)).fetchone()
        except psycopg.Error as exc:
            await connection.close()
            raise ConnectionError(f"cannot take the lease on {redacted(self._url)}: "
                                  f"{str(exc).strip()}") from None
        if not row[0]:
            await connection.close()  # another session holds it
            return False
        self._connection = connection
        return True

    async def alive(self, timeout: float) -> bool:
        """Whether the lease's session still answers, within `timeout` seconds, and still holds
        the lock. A False here means the lock may already be someone else's."""
        if self._connection is None:
            return False
        try:
            answered, row = await _within(timeout, self._still_held())
        except (psycopg.Error, OSError):
            return False
        return answered and bool(row and row[0])

    @property
    def _keys(self) -> tuple[int, ...]:
        return self.key if isinstance(self.key, tuple) else (self.key,)

    async def _still_held(self):
        # pg_locks shows a bigint key split in two (objsubid 1), two int4 keys as they are (2).
        held = ("objsubid = 2 AND classid::bigint = %s AND objid::bigint = %s"
                if isinstance(self.key, tuple) else
                "objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = %s")
        return await (await self._connection.execute(
            "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            f" AND pid = pg_backend_pid() AND {held}", self._keys)).fetchone()

    async def drop(self) -> None:
        """End the session: the lock is freed (by the server, even if this cannot reach it)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await _within(1.0, connection.close())
            except (psycopg.Error, OSError):
                pass  # the session is gone or going; the server frees its lock as it ends


class WakeConnection:
    """A connection that LISTENs on one channel; `notifications` yields each payload."""

    def __init__(self, url: str, password: str | None, channel: str):
        self._url, self._password, self.channel = url, password, channel
        self._connection: psycopg.AsyncConnection | None = None

    async def open(self) -> None:
        """Connect and LISTEN; raises ConnectionError when the database cannot be reached."""
        self._connection = await _connect(self._url, self._password)
        await self._connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))

    async def notifications(self) -> AsyncIterator[str]:
        """Each notification's payload as it arrives; ends (raising psycopg's error) when the
        connection is lost."""
        async for notify in self._connection.notifies():
            yield notify.payload

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await _within(1.0, connection.close())
            except (psycopg.Error, OSError):
                pass
