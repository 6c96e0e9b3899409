"""The installer's commands: `textback install --systemd` (the service) and `textback status`."""

from __future__ import annotations

import asyncio
import importlib.metadata
import pwd
import subprocess
import sys
import time
from pathlib import Path

import click

from textback import runlock
from textback.commands.common import age_of, config_option, load_config, local_time, with_store
from textback.config import Loaded
from textback.core.incidents import Key, title
from textback.core.selftest import Report
from textback.unit import (SERVICE_USER, STATE_DIRECTORY, hidden_by_protect_home,
                           paths_outside_state, privileged_ports, render_unit)
from textback.workers.ops import AMI_LOGGED_IN, AMI_STATE_SINCE

UNIT_NAME = "textback.service"


def install_service(loaded: Loaded, unit_dir: Path, create_user: bool) -> None:
    """Write textback.service and create its system user; refuse a config the sandbox breaks."""
    config = loaded.config
    outside = paths_outside_state(config)
    if outside:
        for key, path in outside:
            click.echo(f"textback: {key} is {path}, outside {STATE_DIRECTORY}: the service may "
                       f"write only there. Move it under {STATE_DIRECTORY}.", err=True)
        sys.exit(2)
    if hidden_by_protect_home(sys.executable):
        click.echo(f"textback: {sys.executable} is under a home directory, which the service "
                   f"cannot see (ProtectHome=yes): install textback elsewhere, e.g. in "
                   f"/opt/textback/venv.", err=True)
        sys.exit(2)
    command = [sys.executable, "-m", "textback", "run", "-c", str(loaded.source.resolve())]
    unit_dir.mkdir(parents=True, exist_ok=True)
    unit = unit_dir / UNIT_NAME
    unit.write_text(render_unit(command, config))
    click.echo(f"wrote   {unit}")
    for key, port in privileged_ports(config):
        click.echo(f"        {key} {port} is below 1024: the unit keeps CAP_NET_BIND_SERVICE")
    if create_user:
        _create_user()
    click.echo(f"\nThen:\n"
               f"  chgrp {SERVICE_USER} {loaded.source.resolve()} and each secret file it names;"
               f" chmod 0640 them\n"
               f"  systemctl daemon-reload && systemctl enable --now textback\n"
               f"  textback status -c {loaded.source.resolve()}\n"
               f"  journalctl -u textback -f")


def _create_user() -> None:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", str(STATE_DIRECTORY), "--shell", "/usr/sbin/nologin",
                        "--comment", "textback daemon", SERVICE_USER], check=True)
        click.echo(f"created system user {SERVICE_USER}")
    else:
        click.echo(f"kept    system user {SERVICE_USER} (exists)")


async def last_selftest(store, tz: str) -> str:
    """The last finished self-test in one line: passed, or the step it failed at, and when."""
    row = await store.last_selftest()
    if row is None:
        return "none recorded"
    report = Report.from_row(row)
    failed = report.failed_step
    verdict = "passed" if failed is None else f"FAILED at {failed.name}"
    return f"{verdict}, {local_time(report.started_at, tz)} ({row['trigger']})"


async def _status_facts(loaded: Loaded) -> dict:
    from textback.workers.ops import LAST_AMI_EVENT

    async def read(store) -> dict:
        now = time.time()
        pending, oldest = await store.outbox_backlog(now)
        return {"now": now, "pending": pending, "oldest": oldest,
                "ami_logged_in": await store.progress(AMI_LOGGED_IN),
                "ami_since": await store.progress(AMI_STATE_SINCE),
                "last_event": await store.progress(LAST_AMI_EVENT),
                "incidents": await store.open_incidents(),
                "pbxs": [await _pbx_facts(store, pbx) for pbx in loaded.config.pbxs],
                "selftest": await last_selftest(store, loaded.config.business.timezone)}

    return await with_store(loaded, read)


async def _pbx_facts(store, pbx) -> dict:
    """A PBX of `pbxs:`: its AMI state and last event, as its daemon keeps them."""
    from textback.workers.ops import LAST_AMI_EVENT
    return {"id": pbx.id, "address": pbx.address,
            "ami_logged_in": await store.progress(pbx.progress_name(AMI_LOGGED_IN)),
            "ami_since": await store.progress(pbx.progress_name(AMI_STATE_SINCE)),
            "last_event": await store.progress(pbx.progress_name(LAST_AMI_EVENT))}


def _ami_state(holder, facts: dict) -> str:
    if holder is None:
        return "-"
    if facts["ami_logged_in"] is None:
        return "not yet known"
    state = "logged in" if facts["ami_logged_in"] else "NOT logged in"
    return f"{state} for {age_of(facts['ami_since'])}"


@click.command()
@config_option
def status(config_path: str | None) -> None:
    """One screen for the installer: daemon, AMI, outbox, incidents, self-test, version."""
    loaded = load_config(config_path)
    tz = loaded.config.business.timezone
    database = loaded.config.storage.path  # SQLite's file, or this host's run lock's name
    if loaded.config.storage.backend == "sqlite" and not database.exists():  # status only reads
        click.echo(f"daemon          never run: no database at {database}")
        sys.exit(1)
    holder = runlock.holder(database)
    facts = asyncio.run(_status_facts(loaded))
    if holder is None:
        daemon = "down (no `textback run` holds the database)"
    else:
        daemon = f"up (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, " \
                 f"since {local_time(holder.get('since'), tz)})"
    ami = _ami_state(holder, facts)
    oldest = (f"due {age_of(facts['oldest'])} ago" if facts["oldest"] is not None
              else "none due")
    lines = [("daemon", daemon)]
    if facts["pbxs"]:  # a `pbxs:` list: every PBX at once, then one line each
        lines.append(("AMI", f"{ami} (every PBX)"))
        for pbx in facts["pbxs"]:
            seen = f"{age_of(pbx['last_event'])} ago" if pbx["last_event"] else "-"
            lines.append((f"PBX {pbx['id']}", f"{pbx['address']}: {_ami_state(holder, pbx)}; "
                                              f"last event {seen}"))
    else:
        lines += [("AMI", ami), ("last AMI event", f"{age_of(facts['last_event'])} ago"
                                                   if facts["last_event"] else "-")]
    lines += [("outbox", f"{facts['pending']} text(s) waiting; oldest {oldest}"),
              ("incidents", f"{len(facts['incidents'])} open" if facts["incidents"] else "none open")]
    for row in facts["incidents"]:
        lines.append(("", f"since {local_time(row['opened_at'], tz)}: {title(Key(row['kind'], row['pbx']))}"
                          f" ({row['summary']})"))
    lines += [("last self-test", facts["selftest"]),
              ("version", importlib.metadata.version("textback"))]
    for label, value in lines:
        click.echo(f"{label:<15} {value}")
    healthy = holder is not None and facts["ami_logged_in"] and not facts["incidents"]
    sys.exit(0 if healthy else 1)
