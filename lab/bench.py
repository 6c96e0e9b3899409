"""What a benchmark under bench/ runs against: the lab PBX, the SMTP sink and `textback run` on
a config of the lab, in a fresh work directory, all stopped when the run ends."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lab.configs import lab_config
from lab.harness import READY_SECONDS, DaemonProcess, start_smtp_sink
from lab.pbx import LabPBX


@dataclass(frozen=True)
class LabRun:
    work: Path  # the run's directory: the lab's files, the config, the log and the database
    lab: LabPBX
    daemon: DaemonProcess

    @property
    def db(self) -> Path:
        """textback's SQLite database, where the benchmarks read their timestamps."""
        return self.work / "textback.db"


@contextmanager
def lab_and_sink(lock_timeout: float | None = None) -> Iterator[tuple[Path, LabPBX]]:
    """Start the lab and the SMTP sink in a fresh work directory; stop them when the block
    ends, whatever ended it. The work directory stays, for its databases and logs.
    `lock_timeout`: how long to wait for the lab's lock (another run's lab) instead of the
    lab's own default."""
    work = Path(tempfile.mkdtemp(prefix="textback-bench-"))
    lab = LabPBX(work / "lab")
    if lock_timeout is not None:
        lab.lock_timeout = lock_timeout
    lab.start()
    try:
        _, smtp = start_smtp_sink()
        try:
            yield work, lab
        finally:
            smtp.stop()
    finally:
        lab.stop()  # also ends the SIPp phone and carrier


@contextmanager
def lab_daemon(overrides: dict[str, Any], ready_timeout: float = READY_SECONDS,
               lock_timeout: float | None = None) -> Iterator[LabRun]:
    """The lab and the SMTP sink (lab_and_sink) and the daemon on a config of the lab with
    `overrides`; the daemon is stopped first when the block ends."""
    with lab_and_sink(lock_timeout) as (work, lab):
        config = lab_config(work, lab, **overrides)
        daemon = DaemonProcess(config, work / "textback.log").start(ready_timeout)
        try:
            yield LabRun(work, lab, daemon)
        finally:
            daemon.stop()
