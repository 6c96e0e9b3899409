"""FreePBX's CDR database as the recovery source, on a real MariaDB server.

The fixture starts its own mariadbd on a fresh datadir (mariadb-install-db),
listening on loopback, with FreePBX's asteriskcdrdb.cdr table and a user
that may only SELECT from it. The table holds the rows the lab's Asterisk
wrote for real calls (tests/cdr/), as cdr_adaptive_odbc would store them,
with `did` set as FreePBX's inbound routes set it: the DID the carrier called.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import aiomysql
import pymysql
import pytest
from pydantic import SecretStr

from tests.cdr_rows import COLUMNS, moved
from tests.test_recovery import CALLER_IN_CDR, DID_IN_CDR, cdr_names, recovered
from tests.test_tracker import EXPECTED
from textback.cdr import CdrError, FreePbxCdr

PORT = 13306
READER, READER_SECRET = "textback", "read-only-cdr-secret"
# FreePBX's asteriskcdrdb.cdr (installlib/SQL/cdr.sql).
FREEPBX_CDR_TABLE = """
CREATE TABLE `cdr` (
  `calldate` datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  `clid` varchar(80) NOT NULL DEFAULT '',
  `src` varchar(80) NOT NULL DEFAULT '',
  `dst` varchar(80) NOT NULL DEFAULT '',
  `dcontext` varchar(80) NOT NULL DEFAULT '',
  `channel` varchar(80) NOT NULL DEFAULT '',
  `dstchannel` varchar(80) NOT NULL DEFAULT '',
  `lastapp` varchar(80) NOT NULL DEFAULT '',
  `lastdata` varchar(80) NOT NULL DEFAULT '',
  `duration` int(11) NOT NULL DEFAULT '0',
  `billsec` int(11) NOT NULL DEFAULT '0',
  `disposition` varchar(45) NOT NULL DEFAULT '',
  `amaflags` int(11) NOT NULL DEFAULT '0',
  `accountcode` varchar(20) NOT NULL DEFAULT '',
  `uniqueid` varchar(32) NOT NULL DEFAULT '',
  `userfield` varchar(255) NOT NULL DEFAULT '',
  `did` varchar(50) NOT NULL DEFAULT '',
  `recordingfile` varchar(255) NOT NULL DEFAULT '',
  `cnum` varchar(80) NOT NULL DEFAULT '',
  `cnam` varchar(80) NOT NULL DEFAULT '',
  `outbound_cnum` varchar(80) NOT NULL DEFAULT '',
  `outbound_cnam` varchar(80) NOT NULL DEFAULT '',
  `dst_cnam` varchar(80) NOT NULL DEFAULT '',
  `linkedid` varchar(32) NOT NULL DEFAULT '',
  `peeraccount` varchar(80) NOT NULL DEFAULT '',
  `sequence` int(11) NOT NULL DEFAULT '0',
  KEY `calldate` (`calldate`),
  KEY `dst` (`dst`),
  KEY `accountcode` (`accountcode`),
  KEY `uniqueid` (`uniqueid`),
  KEY `did` (`did`),
  KEY `linkedid` (`linkedid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
AMA_FLAGS = {"OMIT": 1, "BILLING": 2, "DOCUMENTATION": 3}  # Asterisk's enum ast_amaflags


class MariaDB:
    """A private mariadbd: root over its own socket, everything else over loopback TCP."""

    def __init__(self, workdir: Path):
        self.datadir = workdir / "data"
        self.socket = workdir / "mysqld.sock"
        self.log = workdir / "mariadbd.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
                        "--user=root", "--auth-root-authentication-method=socket",
                        "--skip-test-db"], check=True, capture_output=True, timeout=120)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["mariadbd", "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
                 "--bind-address=127.0.0.1", f"--port={PORT}", "--user=root",
                 "--skip-name-resolve", "--innodb-buffer-pool-size=16M",
                 "--sql-mode=NO_ENGINE_SUBSTITUTION", f"--pid-file={self.datadir}/mariadbd.pid"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while subprocess.run(["mariadb", f"--socket={self.socket}", "-e", "SELECT 1"],
                             capture_output=True).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not start:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.1)

    def sql(self, statements: str, database: str = "") -> str:
        result = subprocess.run(["mariadb", f"--socket={self.socket}", "--batch", *([database] if database else [])],
                                input=statements, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(5)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    server = MariaDB(tmp_path_factory.mktemp("mariadb"))
    try:
        server.start()
        server.sql(f"CREATE DATABASE asteriskcdrdb; USE asteriskcdrdb; {FREEPBX_CDR_TABLE};"
                   f"CREATE USER '{READER}'@'127.0.0.1' IDENTIFIED BY '{READER_SECRET}';"
                   f"GRANT SELECT ON asteriskcdrdb.cdr TO '{READER}'@'127.0.0.1';")
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.datadir, ignore_errors=True)


def insert_statement(row: list[str], did: str) -> str:
    values = dict(zip(COLUMNS, row))
    values.update(calldate=values["start"], did=did, amaflags=str(AMA_FLAGS[values["amaflags"]]))
    names = ["calldate", "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp",
             "lastdata", "duration", "billsec", "disposition", "amaflags", "accountcode", "uniqueid",
             "userfield", "did", "linkedid", "peeraccount", "sequence"]
    quoted = ", ".join("'" + values[n].replace("\\", "\\\\").replace("'", "''") + "'" for n in names)
    return f"INSERT INTO cdr ({', '.join(names)}) VALUES ({quoted});"


def reader(password: str = READER_SECRET) -> FreePbxCdr:
    return FreePbxCdr("127.0.0.1", PORT, "asteriskcdrdb", READER, SecretStr(password), None, 10)


def dids(name: str, rows: list[list[str]]) -> dict[str, str]:
    """linkedid -> the DID the call came in on: the dst of its first row, where the CSV kept it."""
    linkedid, uniqueid, dst = (COLUMNS.index(n) for n in ("linkedid", "uniqueid", "dst"))
    if name in DID_IN_CDR:
        return {row[linkedid]: EXPECTED[name][0][1] for row in rows}
    return {row[linkedid]: row[dst] for row in reversed(rows) if row[uniqueid] == row[linkedid]}


@pytest.fixture(scope="module")
def loaded(mariadb):
    """Every recorded flow, ended a minute ago."""
    ended = time.time() - 60
    statements = []
    for name in cdr_names():
        rows = moved(name, ended)
        did = dids(name, rows)
        statements += [insert_statement(row, did.get(row[COLUMNS.index("linkedid")], "")) for row in rows]
    mariadb.sql("DELETE FROM cdr;" + "\n".join(statements), "asteriskcdrdb")


async def test_calls_recovered_from_freepbx_match_the_live_outcomes(loaded):
    records = await reader().records_since(time.time() - 600)
    expected = sorted((CALLER_IN_CDR.get(caller, caller), *rest)
                      for name in cdr_names() for caller, *rest in EXPECTED[name])
    assert sorted(recovered(records)) == expected  # FreePBX's did column: the DID, even after an IVR
    assert len(expected) > 20


async def test_only_rows_of_calls_that_may_have_ended_since_are_read(loaded):
    assert await reader().records_since(time.time() + 13 * 3600) == []


async def test_the_reader_may_only_select(mariadb, loaded):
    connection = await aiomysql.connect(host="127.0.0.1", port=PORT, user=READER,
                                        password=READER_SECRET, db="asteriskcdrdb")
    try:
        async with connection.cursor() as cursor:
            with pytest.raises(pymysql.err.OperationalError, match="command denied"):
                await cursor.execute("DELETE FROM cdr")
    finally:
        connection.close()


async def test_a_wrong_secret_is_a_cdr_error_that_names_the_source(mariadb):
    with pytest.raises(CdrError, match=f"{READER}@127.0.0.1:{PORT}/asteriskcdrdb.*Access denied"):
        await reader("wrong").records_since(time.time())


async def test_a_server_that_is_down_is_a_cdr_error():
    source = FreePbxCdr("127.0.0.1", PORT + 1, "asteriskcdrdb", READER, SecretStr("x"), None, 5)
    with pytest.raises(CdrError, match="cannot connect"):
        await source.records_since(time.time())
