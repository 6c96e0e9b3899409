"""One `textback run` per database: an advisory lock on a file beside it.

Two daemons on one database would both see every AMI event and both run the
workers, so a reply would be stored twice and its alert mailed twice. The
lock is `flock(2)` on `<database>.lock` (not on the database itself, whose
POSIX locks SQLite owns, and not named like SQLite's `-wal` and `-shm`
files). The kernel releases it when the process ends in any way, kill -9
included, so a stale lock file never blocks a restart. The file holds the
holder's pid and host so the one refused can say who holds it. Commands
other than `run` do not take it: they only read, or queue through the outbox.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

HOLDER_WAIT_SECONDS = 1.0  # a winner that has the lock but has not yet written its pid


class AlreadyRunning(RuntimeError):
    """Another process holds the database's run lock."""

    def __init__(self, database: Path, lock_path: Path, holder: dict | None):
        self.holder = holder or {}
        if holder:
            since = datetime.fromtimestamp(holder.get("since", 0), timezone.utc)
            who = (f"pid {holder.get('pid')} on host {holder.get('host')} "
                   f"(running since {since:%Y-%m-%d %H:%M:%S} UTC)")
        else:
            who = "a process that has not yet written its pid and host"
        super().__init__(
            f"another `textback run` is already using {database}: {who}; lock file {lock_path}. "
            f"Stop that one first (only one daemon may run per database); `textback inbox`, "
            f"`reply` and the other commands work alongside it.")


def lock_path_for(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


class RunLock:
    """The held lock; release() (or the process ending) gives it up."""

    def __init__(self, path: Path, handle: IO[str]):
        self.path = path
        self._handle = handle

    def release(self) -> None:
        self._handle.close()


def acquire(database: Path) -> RunLock:
    """Take the run lock of `database` or raise AlreadyRunning naming the holder."""
    database = Path(database)
    path = lock_path_for(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # never truncates a holder's record
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(handle)
        handle.close()
        raise AlreadyRunning(database, path, holder) from None
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.time()}) + "\n")
    handle.flush()
    return RunLock(path, handle)


def holder(database: Path) -> dict | None:
    """Who runs the daemon of `database` now (pid, host, since), or None when nobody does."""
    path = lock_path_for(Path(database))
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(handle) or {}
        return None


def _read_holder(handle: IO[str]) -> dict | None:
    """The holder's record; it may still be writing it, so wait briefly for a whole one."""
    deadline = time.monotonic() + HOLDER_WAIT_SECONDS
    while True:
        handle.seek(0)
        try:
            record = json.loads(handle.read())
            if isinstance(record, dict) and "pid" in record:
                return record
        except ValueError:
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
