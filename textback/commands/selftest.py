"""`textback selftest`: ask the running daemon for a self-test, wait for it, print its report.

The daemon runs it (textback.workers.selftest), so the test call takes the
daemon's own AMI connection, tracker, rules, outbox and gateway; this command
only requests a run in the database and reads the result back.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from textback import runlock
from textback.commands.common import Seconds, config_option, load_config, with_store
from textback.core.selftest import Report

# Beyond the ring and gateway times: logins, the tracker's grace, the store.
MARGIN_SECONDS = 60.0


@click.command()
@config_option
@click.option("--timeout", type=Seconds(1, 86_400), default=None,
              help="Seconds to wait for the result (default: the ring and gateway times plus a minute).")
def selftest(config_path: str | None, timeout: float | None) -> None:
    """Run the self-test in the running daemon: a test call, its text, the report.

    Exits 0 when every step passed, 1 when one failed (the report names it)
    or no daemon runs, 2 when the configuration is wrong or has no
    `selftest` section. The admin gets the same report by email.
    """
    loaded = load_config(config_path)
    config = loaded.config
    settings = config.selftest
    if settings is None:
        click.echo("textback: the configuration has no `selftest` section "
                   "(see config.example.yaml)", err=True)
        sys.exit(2)
    try:
        runlock.acquire(config.storage.path).release()
    except runlock.AlreadyRunning:
        pass  # the daemon is up: it will run the test
    else:
        click.echo("FAIL  no `textback run` is using this database: start the daemon, then "
                   "run the self-test again", err=True)
        sys.exit(1)
    wait = timeout or (settings.ring_seconds + settings.gateway_seconds + MARGIN_SECONDS
                       + (settings.expect_reply_minutes or 0) * 60)

    async def work(store):
        run_id = await store.request_selftest("command")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            row = await store.selftest_run(run_id)
            if row["state"] == "done":
                return row
            await asyncio.sleep(0.2)
        return None

    row = asyncio.run(with_store(loaded, work))
    if row is None:
        click.echo(f"FAIL  the daemon did not finish the self-test within {wait:g} s; see its log",
                   err=True)
        sys.exit(1)
    report = Report.from_row(row)
    zone = config.business.timezone
    click.echo(loaded.secrets.redactor().url(
        report.text(zone, datetime.fromtimestamp(report.started_at, ZoneInfo(zone)))))
    sys.exit(0 if report.passed else 1)
