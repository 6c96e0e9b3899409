"""The PostgreSQL backend's connection: psycopg 3 (async) over a psycopg-pool pool.

The aggregates' SQL is written once in the standard SQL both backends run (`?` or `:name`
placeholders, RETURNING, ON CONFLICT); it reaches PostgreSQL with its placeholders
rewritten to psycopg's (`%s`, `%(name)s`). Where the dialects differ, the backend has its
own SQL (`textback/store/postgres/rows.py`) and its own schema (`migrations.py` beside this).

Writes of one daemon are serialised by a lock, as on SQLite, so a check and the write it
guards (a call's dedupe, a claim) stay one step within the daemon; between daemons the rows
they claim are locked by PostgreSQL (`FOR UPDATE SKIP LOCKED`). Reads run on any pooled
connection, except inside a transaction, where they see the transaction's own writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import re
import time
from decimal import Decimal
from typing import Any, AsyncIterator, Iterable, Self, Sequence

import psycopg
from psycopg.rows import RowMaker
from psycopg.types.numeric import NumericLoader
import psycopg_pool
from psycopg_pool import AsyncConnectionPool

from textback.store.connection import (Connection, downgrade_refused, textback_version,
                                       upgrade_refused)
from textback.store.postgres import migrations

MIGRATION_LOCK = 0x7465787462  # pg_advisory_xact_lock key: one daemon migrates at a time
POOL_SIZE = 4
# The company of a config that names none: a single company's install, and the rows a
# PostgreSQL store held before companies existed (migration 30).
DEFAULT_COMPANY = "default"


class Row:
    """A result row read by index or by column name, as aiosqlite's Row is (`dict(row)` works)."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: Sequence[str], values: Sequence[Any]):
        self._names = names
        self._values = tuple(values)

    def keys(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._names.index(key)]
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values))!r})"


def _rows(cursor: psycopg.AsyncCursor) -> RowMaker[Row]:
    names = [column.name for column in cursor.description or ()]
    return functools.partial(Row, names)


class _Number(NumericLoader):
    """numeric (what SUM of a bigint gives) as SQLite gives it: an int when whole, else a float."""

    def load(self, data: Any) -> int | float:
        value: Decimal = super().load(data)
        return int(value) if value == value.to_integral_value() else float(value)


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=4096)
def pg_sql(sql: str, named: bool) -> str:
    """`sql` with its `?` (or `:name`) placeholders as psycopg's, and a literal `%` doubled;
    quoted strings and identifiers are left as they are, but for the `%`."""
    parts = re.split(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")", sql)
    out = []
    for index, part in enumerate(parts):
        part = part.replace("%", "%%")
        if index % 2 == 0:  # outside quotes
            part = _NAMED.sub(r"%(\1)s", part) if named else part.replace("?", "%s")
        out.append(part)
    return "".join(out)


# PostgreSQL's text cannot hold NUL (SQLite's can): a NUL in what a homeowner, an owner's
# reply mail or an API client sent is stored as U+FFFD, the character that stands for what
# cannot be shown, rather than the whole input refused with a server error and lost.
UNSTORABLE_NUL = ("\x00", "\ufffd")


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)  # flags are integers, as on SQLite
    if isinstance(value, str) and UNSTORABLE_NUL[0] in value:
        return value.replace(*UNSTORABLE_NUL)
    return value


def to_psycopg(sql: str, args: Any) -> tuple[str, Any]:
    """A statement and its arguments as psycopg takes them."""
    if isinstance(args, dict):
        return pg_sql(sql, True), {key: _value(v) for key, v in args.items()}
    if not args:
        return sql, None
    return pg_sql(sql, False), [_value(v) for v in args]


class Session:
    """One pooled connection, with aiosqlite's calls: `execute` returns the cursor."""

    def __init__(self, connection: psycopg.AsyncConnection):
        self.connection = connection

    async def execute(self, sql: str, args: Any = ()) -> psycopg.AsyncCursor:
        cursor = self.connection.cursor()
        await cursor.execute(*to_psycopg(sql, args))
        return cursor

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.AsyncCursor:
        cursor = self.connection.cursor()
        await cursor.executemany(pg_sql(sql, False), [[_value(v) for v in row] for row in rows])
        return cursor


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


class PgConnection(Connection):
    """The pool every aggregate works on, and the transaction under way in this task."""

    def __init__(self, pool: AsyncConnectionPool, where: str):
        super().__init__()
        self._pool = pool
        self.where = where  # the database, for messages (no password)
        self.company = DEFAULT_COMPANY  # the company every connection is set to (its slug)
        self.company_id = 0  # and its id in `companies`
        self._lock = asyncio.Lock()
        self._session: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
            f"textback-pg-{id(self)}", default=None)

    @classmethod
    async def open(cls, url: str, password: str | None = None, pool_size: int = POOL_SIZE,
                   company: str = DEFAULT_COMPANY, company_name: str = "") -> Self:
        """Connect (the password given apart from the URL, never logged), migrate, refuse a
        newer schema, and enrol `company` (its slug; `company_name` its name): every
        connection of the pool is then set to that company, so every statement the store
        runs reads and writes that company's rows alone (row-level security, migration 30)."""
        secret = {"password": password} if password else {}
        try:  # once, alone: a refusal is said at once and plainly, not retried by the pool
            first = await psycopg.AsyncConnection.connect(
                url, connect_timeout=10, autocommit=True, row_factory=_rows, **secret)
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"cannot connect to PostgreSQL at {redacted(url)}: "
                                  f"{str(exc).strip()}") from None
        async with first:
            await migrate(first, redacted(url))
            company_id = await enrol_company(first, company, company_name)

        async def configure(connection: psycopg.AsyncConnection) -> None:
            connection.adapters.register_loader("numeric", _Number)
            await connection.execute("SELECT set_config('textback.company', %s, false)",
                                     (str(company_id),))

        pool = AsyncConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, configure=configure,
            kwargs={"autocommit": True, "row_factory": _rows, **secret})
        try:
            await pool.open(wait=True, timeout=30)
        except psycopg_pool.PoolTimeout as exc:
            await pool.close()
            raise ConnectionError(f"cannot connect to PostgreSQL at {redacted(url)}: "
                                  f"{exc}") from None
        store = cls(pool, redacted(url))
        store.company = company
        store.company_id = company_id
        store._url, store._password = url, password  # for the connections a fleet holds apart
        return store

    async def close(self) -> None:
        await self._pool.close()

    @property
    def _db(self) -> Session:
        """The transaction under way in this task (the aggregates write only inside one)."""
        session = self._session.get()
        if session is None:
            raise RuntimeError("a write outside a transaction")
        return session

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Session]:
        async with self._lock, self._pool.connection() as connection:
            session = Session(connection)
            token = self._session.set(session)
            try:
                async with connection.transaction():
                    yield session
                self._committed()
            finally:
                self._session.reset(token)
                self._emitted = False

    async def _one(self, sql: str, args: Any = ()) -> Row | None:
        rows = await self._all(sql, args)
        return rows[0] if rows else None

    async def _all(self, sql: str, args: Any = ()) -> list[Row]:
        session = self._session.get()
        if session is not None:
            return await (await session.execute(sql, args)).fetchall()
        async with self._pool.connection() as connection:
            return await (await Session(connection).execute(sql, args)).fetchall()

async def migrate(connection: psycopg.AsyncConnection, where: str) -> None:
    """Bring the schema to the current version, one daemon at a time; refuse a newer one."""
    async with connection.transaction():
        db = Session(connection)
        await db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = await (await db.execute("SELECT MAX(version) FROM schema_version")).fetchone()
        version = row[0] or 0
        if version > len(migrations.MIGRATIONS):
            writer = await (await db.execute(
                "SELECT textback_version FROM written_by WHERE schema_version = ?",
                (version,))).fetchone()
            raise downgrade_refused(where, version, writer[0] if writer else None,
                                    len(migrations.MIGRATIONS))
        for number, script in enumerate(migrations.MIGRATIONS[version:], start=version + 1):
            if not script:
                continue
            try:
                await db.execute(script)
            except psycopg.errors.IntegrityError as exc:  # the transaction rolls back whole
                raise upgrade_refused(where, version, number, "; ".join(filter(None, (
                    exc.diag.table_name, exc.diag.constraint_name,
                    exc.diag.message_detail or exc.diag.message_primary)))) from exc
        if version < len(migrations.MIGRATIONS):
            await db.execute("DELETE FROM schema_version")
            await db.execute("INSERT INTO schema_version VALUES (?)",
                             (len(migrations.MIGRATIONS),))
            await db.execute(
                "INSERT INTO written_by VALUES (?, ?, ?) ON CONFLICT (schema_version)"
                " DO UPDATE SET textback_version = excluded.textback_version, at = excluded.at",
                (len(migrations.MIGRATIONS), textback_version(), time.time()))


async def enrol_company(connection: psycopg.AsyncConnection, slug: str, name: str) -> int:
    """The id of the company `slug`, added the first time a store opens it (its name kept
    up to date with the config's)."""
    row = await (await Session(connection).execute(
        "INSERT INTO companies (slug, name, created_at) VALUES (?, ?, ?) ON CONFLICT (slug)"
        " DO UPDATE SET name = CASE WHEN excluded.name = '' THEN companies.name"
        " ELSE excluded.name END RETURNING id", (slug, name, time.time()))).fetchone()
    return row[0]


async def describe_database(url: str, password: str | None = None,
                            company: str = DEFAULT_COMPANY) -> tuple[str, str | None]:
    """One line on the database at `url` for `textback check`: server, schema, pg_trgm, the
    company; and a warning when the role escapes row-level security (a superuser, or
    BYPASSRLS), for then nothing in the database keeps companies apart. Reads only; raises
    what connecting raised."""
    async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=10,
            **({"password": password} if password else {})) as connection:
        server = (await (await connection.execute("SHOW server_version")).fetchone())[0]
        known = len(migrations.MIGRATIONS)
        version = 0
        if (await (await connection.execute(
                "SELECT to_regclass('schema_version')")).fetchone())[0] is not None:
            version = (await (await connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version")).fetchone())[0]
        trigram = (await (await connection.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).fetchone()) is not None
        role, superuser, bypass = await (await connection.execute(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles"
            " WHERE rolname = current_user")).fetchone()
        enrolled = None
        if (await (await connection.execute(
                "SELECT to_regclass('companies')")).fetchone())[0] is not None:
            enrolled = await (await connection.execute(
                "SELECT id FROM companies WHERE slug = %s", (company,))).fetchone()
    if version > known:
        raise downgrade_refused(redacted(url), version, None, known)
    if not trigram:
        raise RuntimeError(f"PostgreSQL {server} at {redacted(url)} lacks pg_trgm "
                           "(Debian: postgresql-contrib)")
    schema = (f"schema {version}" if version == known else
              f"schema {version}, `textback run` brings it to {known}" if version else
              f"empty, `textback run` creates schema {known}")
    held = "" if enrolled else ", new: `textback run` adds it"
    warning = None
    if superuser or bypass:
        warning = (f"the role {role!r} is {'a superuser' if superuser else 'BYPASSRLS'}, so "
                   "row-level security does not apply to it and nothing in the database keeps "
                   "one company's rows from another's daemons: give the daemons a role with "
                   "NOSUPERUSER NOBYPASSRLS that owns the database (docs/fleet.md)")
    return (f"PostgreSQL {server} at {redacted(url)}, {schema}, company {company!r}{held}",
            warning)
