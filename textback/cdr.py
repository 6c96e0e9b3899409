"""Read Asterisk's CDR for textback.core.recovery: cdr_csv's Master.csv, or FreePBX's asteriskcdrdb.cdr.

Master.csv grows for as long as the PBX runs, so it is read from its end
backwards, one block at a time, only as far back as the rows that matter.
The FreePBX database is read through a user that may only SELECT from it.
"""

from __future__ import annotations

import asyncio
import csv
import logging
from datetime import datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import aiomysql
import pymysql
from pydantic import SecretStr

from textback.core.alerts import one_line
from textback.config import RecoveryConfig
from textback.core.recovery import CdrRecord, CsvLayout, from_csv_fields, from_freepbx_row

log = logging.getLogger("textback.cdr")

BLOCK_BYTES = 64 * 1024
# CDR rows are written as calls end, so the file is in order of end time but for
# a few seconds of jitter; reading stops at the first row that ended this long before `since`.
CSV_ORDER_SLACK_SECONDS = 3600.0
# FreePBX's calldate is a call's start: a call that ended after `since` started at most this long before.
LONGEST_CALL_SECONDS = 12 * 3600.0
FREEPBX_COLUMNS = ("calldate, clid, src, dst, did, dcontext, channel, dstchannel, lastapp, lastdata,"
                   " duration, billsec, disposition, uniqueid, linkedid, sequence")


class CdrError(Exception):
    """The CDR could not be read; the message says where and why, without any row's contents."""


class CdrSource(Protocol):
    description: str

    async def records_since(self, since: float) -> list[CdrRecord]: ...


def build_source(settings: RecoveryConfig, mysql_secret: SecretStr | None) -> CdrSource:
    """The CDR one PBX's `recovery` names; `mysql_secret` is its CDR database's password."""
    cdr = settings.cdr
    if cdr.type == "mysql":
        m = cdr.mysql
        zone = ZoneInfo(m.timezone) if m.timezone else None
        return FreePbxCdr(m.host, m.port, m.database, m.user, mysql_secret, zone,
                          m.timeout_seconds)
    c = cdr.csv
    layout = CsvLayout(c.loguniqueid, c.loguserfield, c.newcdrcolumns)
    return CsvCdr(c.path, layout, ZoneInfo("UTC") if c.usegmtime else None)


class CsvCdr:
    """cdr_csv's Master.csv; `zone` None means this machine's local time (cdr.conf usegmtime = no)."""

    def __init__(self, path: Path, layout: CsvLayout, zone: ZoneInfo | None):
        self.path = Path(path)
        self.layout = layout
        self.zone = zone
        self.description = f"CSV CDR {self.path}"

    async def records_since(self, since: float) -> list[CdrRecord]:
        """The rows that ended after `since`, and those a little before it (the file's order is loose)."""
        return await asyncio.to_thread(self._read, since)

    def _read(self, since: float) -> list[CdrRecord]:
        try:
            lines = self._tail_lines(since - CSV_ORDER_SLACK_SECONDS)
        except OSError as exc:
            raise CdrError(f"cannot read {self.path}: {exc.strerror}") from None
        records, bad = [], 0
        for line in lines:
            try:
                record = self._parse(line)
            except ValueError:
                bad += 1
                continue
            if record.end >= since - CSV_ORDER_SLACK_SECONDS:
                records.append(record)
        if bad:
            expected = len(self.layout.columns())
            log.error("%s: %d of %d row(s) unreadable; each should have %d columns (cdr.conf [csv] "
                      "loguniqueid, loguserfield, newcdrcolumns must match recovery.cdr.csv)",
                      self.path, bad, len(lines), expected)
            if not records:
                raise CdrError(f"{self.path}: no readable row among {bad}; check that "
                               f"recovery.cdr.csv matches cdr.conf's [csv] options")
        return records

    def _parse(self, line: bytes) -> CdrRecord:
        fields = next(csv.reader([line.decode("utf-8", "replace")]))
        return from_csv_fields(fields, self.layout, self.zone)

    def _tail_lines(self, stop_before: float) -> list[bytes]:
        """The complete lines at the end of the file, back to the first that ended before `stop_before`."""
        with self.path.open("rb") as handle:
            position = handle.seek(0, 2)
            data = b""
            while position > 0:
                step = min(BLOCK_BYTES, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
                lines = data.split(b"\n")
                first_complete = lines[1] if position > 0 and len(lines) > 1 else lines[0]
                if first_complete and self._ended_before(first_complete, stop_before):
                    break
        lines = data.split(b"\n")
        if position > 0:
            lines = lines[1:]  # begins mid-line
        return [line for line in lines[:-1] if line.strip()]  # the last is empty, or being written

    def _ended_before(self, line: bytes, moment: float) -> bool:
        try:
            return self._parse(line).end < moment
        except ValueError:
            return False


class FreePbxCdr:
    """FreePBX's CDR table (asteriskcdrdb.cdr) on MariaDB or MySQL; `zone` None: this machine's local time."""

    def __init__(self, host: str, port: int, database: str, user: str, password: SecretStr | None,
                 zone: ZoneInfo | None, timeout: float = 10.0):
        self.host, self.port, self.database, self.user = host, port, database, user
        self._password = password
        self.zone = zone
        self.timeout = timeout
        self.description = f"FreePBX CDR {user}@{host}:{port}/{database}"

    async def records_since(self, since: float) -> list[CdrRecord]:
        earliest = datetime.fromtimestamp(since - LONGEST_CALL_SECONDS, self.zone)
        try:
            connection = await asyncio.wait_for(aiomysql.connect(
                host=self.host, port=self.port, user=self.user, db=self.database,
                password=self._password.get_secret_value() if self._password else "",
                connect_timeout=self.timeout, autocommit=True), self.timeout)
        except (pymysql.MySQLError, OSError, asyncio.TimeoutError) as exc:
            raise CdrError(f"cannot connect to {self.description}: {_reason(exc)}") from None
        try:
            async with connection.cursor(aiomysql.DictCursor) as cursor:
                await asyncio.wait_for(cursor.execute(
                    f"SELECT {FREEPBX_COLUMNS} FROM cdr WHERE calldate >= %s ORDER BY calldate",
                    (earliest.strftime("%Y-%m-%d %H:%M:%S"),)), self.timeout)
                rows = await cursor.fetchall()
        except (pymysql.MySQLError, OSError, asyncio.TimeoutError) as exc:
            raise CdrError(f"cannot read {self.description}: {_reason(exc)}") from None
        finally:
            connection.close()
        records = []
        for row in rows:
            try:
                records.append(from_freepbx_row(row, self.zone))
            except (ValueError, TypeError):
                log.error("%s: a row with uniqueid %s is unreadable", self.description,
                          one_line(str(row.get("uniqueid")), 40))
        return records


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, pymysql.MySQLError) and exc.args:
        return str(exc.args[-1])
    return str(exc) or type(exc).__name__
