"""Life under systemd: sd_notify(3) datagrams and the journal's log format.

The notify protocol is one datagram of "KEY=value" lines to the unix socket
named by $NOTIFY_SOCKET (a leading "@" means the abstract namespace). That is
a few lines, so textback sends it itself rather than depend on a package that
has not been released since 2017 and drops its errors.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
from typing import Mapping

log = logging.getLogger("textback")

# syslog priorities journald reads from a "<N>" prefix on each stderr line (sd-daemon(3)).
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
            logging.CRITICAL: 2}


# The company whose part of the process logs a line, when one process serves several: set in
# each company's task, whose every task and callback inherits it (`textback.companies`).
COMPANY: contextvars.ContextVar[str | None] = contextvars.ContextVar("company", default=None)


def under_systemd(environ: Mapping[str, str] = os.environ) -> bool:
    """Started by systemd: stderr goes to the journal, which stamps each line itself."""
    return bool(environ.get("JOURNAL_STREAM") or environ.get("INVOCATION_ID"))


class OneLineFormatter(logging.Formatter):
    """One event, one line: a traceback's line breaks become "\\n", so journald and grep keep
    an event whole. Under systemd there is no timestamp of our own and the line starts with
    its syslog priority."""

    def __init__(self, journal: bool):
        super().__init__("%(levelname)-7s %(name)s: %(message)s" if journal
                         else "%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._journal = journal

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record).replace("\r", "\\r").replace("\n", "\\n")
        company = COMPANY.get()
        if company is not None:  # one process, several companies: whose line this is
            line = line.replace(f"{record.name}: ", f"{record.name}: [{company}] ", 1)
        if self._journal:
            return f"<{PRIORITY.get(record.levelno, 6)}>{line}"
        return line


def configure_logging(level: str, environ: Mapping[str, str] = os.environ) -> None:
    """Every line on stderr is one formatted event: Python's warnings (a library's
    deprecation, say) too, which would otherwise be written raw, over two lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(under_systemd(environ)))
    logging.basicConfig(level=level, handlers=[handler])
    logging.captureWarnings(True)


def notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; False when not run by a notify service."""
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        # Non-blocking: it is sent from the event loop, which must never wait for systemd.
        with socket.socket(socket.AF_UNIX,
                           socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
            sock.connect(address)
            sock.send(state.encode("utf-8"))
    except OSError as exc:
        log.warning("could not tell systemd %r: %s", state.split("\n")[0], exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """How often to send WATCHDOG=1 (half of WatchdogSec=), or None when no watchdog is set."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
