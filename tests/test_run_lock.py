"""One daemon per database: a second `textback run` refuses to start and names the holder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from lab.configs import base_config, write_config
from lab.harness import DaemonProcess, wait_until
from textback import runlock

RUNNING = "textback running for"
UNUSED_AMI_PORT = 1  # nothing listens there: the daemon keeps retrying AMI, which is fine here


def test_a_second_lock_names_the_holder_and_a_released_one_can_be_taken(tmp_path):
    database = tmp_path / "textback.db"
    held = runlock.acquire(database)
    with pytest.raises(runlock.AlreadyRunning) as refused:
        runlock.acquire(database)
    message = str(refused.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert str(database) in message
    held.release()
    runlock.acquire(database).release()


@pytest.fixture
def config_path(tmp_path):
    return write_config(tmp_path, base_config(tmp_path, **{"ami.port": UNUSED_AMI_PORT}))


def test_two_daemons_started_at_once_one_wins_and_kill_9_frees_the_lock(tmp_path, config_path):
    first = DaemonProcess(config_path, tmp_path / "first.log").launch()
    second = DaemonProcess(config_path, tmp_path / "second.log").launch()
    try:
        loser = wait_until(lambda: next((d for d in (first, second) if d.process.poll() is not None),
                                        None), 20, "one of the two daemons to give up")
        winner = second if loser is first else first
        winner.wait_ready(20, RUNNING)
        assert loser.process.returncode == 1
        refusal = loser.log()
        assert (f"another `textback run` is already using {tmp_path / 'textback.db'}: "
                f"pid {winner.process.pid} on host {socket.gethostname()}") in refusal
        assert RUNNING not in refusal  # it gave up before it touched the store or AMI

        # The other commands keep working while the daemon holds the database.
        inbox = subprocess.run([sys.executable, "-m", "textback", "inbox", "-c", str(config_path)],
                               capture_output=True, text=True, timeout=30)
        assert inbox.returncode == 0 and "No open conversations." in inbox.stdout

        winner.kill()  # SIGKILL: no cleanup; the kernel drops the lock with the process
        third = DaemonProcess(config_path, tmp_path / "third.log").start(20, RUNNING)
        assert third.stop() == 0
    finally:
        for daemon in (first, second):
            daemon.stop()
