"""Shared fixtures: the lab PBX (lab.fixture), an SMTP relay sink, and daemons without AMI."""

from __future__ import annotations

import asyncio
import concurrent.futures
import faulthandler
import os
import signal
import sys
import threading

import pytest

from lab.configs import base_config, lab_config, write_config
from lab.harness import SMTP_SINK_PORT, DaemonProcess, start_smtp_sink
from textback.config import load
from textback.daemon import Daemon
from textback.store import Store, open_store
from textback.store.postgres import PostgresStore
from lab.postgres import TEMPLATE, PostgresServer

pytest_plugins = ["lab.fixture"]

# The whole run's wall-clock limit, under the CI's own: a run that hangs
# anywhere (a test, a teardown, the interpreter's exit) prints every thread's
# stack and exits non-zero, so the hang is diagnosed, not just timed out.
SESSION_WALL_SECONDS = float(os.environ.get("TEXTBACK_TEST_WALL_SECONDS", 2400))


def pytest_configure(config):
    faulthandler.dump_traceback_later(SESSION_WALL_SECONDS, exit=True)
    faulthandler.register(signal.SIGTERM, all_threads=True, chain=True)


def pytest_sessionfinish(session, exitstatus):
    """Name any thread a test left running: at exit the interpreter would wait for it."""
    stray = [t for t in threading.enumerate()
             if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if stray:
        print(f"\nthreads left running after the tests: {[t.name for t in stray]}", file=sys.stderr)
        faulthandler.dump_traceback(all_threads=True)


@pytest.fixture
def smtp_sink():
    """A real SMTP server (aiosmtpd) standing in for the company mail relay."""
    sink, controller = start_smtp_sink()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL 15 for the session (lab/postgres.py), stopped at the end."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_server):
    """A fresh, empty database on the session's PostgreSQL: its URL."""
    return postgres_server.new_database()


@pytest.fixture(scope="session")
def postgres_template(postgres_server):
    """A database migrated to the current schema once, which fresh stores are copied from."""
    url = postgres_server.new_database(name=TEMPLATE, owner=postgres_server.daemon_role())

    async def migrate():
        await (await PostgresStore.open(url)).close()  # closed: a template must have no sessions

    # In a thread of its own: a test's event loop may be running when this is first asked for.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, migrate()).result()
    return TEMPLATE


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request, tmp_path):
    """Where a fresh store is: a SQLite file, or a new PostgreSQL database at the current schema
    that the store reaches as a daemon's role does (no superuser: row-level security holds)."""
    if request.param == "sqlite":
        return tmp_path / "t.db"
    server = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("postgres_template")
    return server.new_database(template=template, owner=server.daemon_role())


@pytest.fixture
def backend_storage(store_location) -> dict[str, str]:
    """base_config overrides that put an offline daemon's store, and that of a CLI command run
    with its config, on each backend in turn: nothing for SQLite's file, a fresh PostgreSQL
    database's `storage.url` for PostgreSQL."""
    return {"storage.url": store_location} if isinstance(store_location, str) else {}


async def open_store_at(location):
    """The store at a `store_location`: SQLite's for a path, PostgreSQL's for a URL."""
    if isinstance(location, str):
        return await PostgresStore.open(location)
    return await Store.open(location)


@pytest.fixture
async def sqlite_store(tmp_path):
    """A fresh SQLite store, for what only SQLite has (its query plans, its file)."""
    opened = await Store.open(tmp_path / "t.db")
    yield opened
    await opened.close()


@pytest.fixture
async def store(store_location):
    """A fresh store migrated to the current schema, on each backend in turn."""
    opened = await open_store_at(store_location)
    yield opened
    await opened.close()


@pytest.fixture
async def offline_daemon(tmp_path):
    """Make a Daemon with a real store, mailing the SMTP sink, but never started: no AMI.

    For driving its parts (escalation, digest, call handling) directly;
    `offline_daemon(clock=None, send_with=None, **overrides)` takes the workers' clock, the
    gateway its outbox sends with (None: nothing is sent) and base_config overrides; the store
    is the config's (`storage.url` from `backend_storage` puts it on PostgreSQL).
    """
    made: list[Daemon] = []

    async def make(clock=None, send_with=None, **overrides) -> Daemon:
        config = base_config(tmp_path, **{"smtp.port": SMTP_SINK_PORT, **overrides})
        daemon = Daemon(load(write_config(tmp_path, config)), clock=clock)
        daemon.attach(await open_store(daemon.config.storage), send_with)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        await daemon.store.close()


@pytest.fixture
def lab_daemon(tmp_path, lab_pbx):
    """Start textback as a real process against the lab PBX: `lab_daemon(**config_overrides)`."""
    started: list[DaemonProcess] = []

    def start(**overrides) -> DaemonProcess:
        path = lab_config(tmp_path, lab_pbx, **overrides)
        process = DaemonProcess(path, tmp_path / "textback.log").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def sink(lab_pbx):
    """The carrier's side of SIP MESSAGE: every text the PBX sends out lands here."""
    handle = lab_pbx.message_sink()
    yield handle
    handle.kill()
