"""A daemon cut off from its database (a real PostgreSQL 15 that refuses it) has lost the AMI
lease and keeps nothing it receives: past the bound, the admin is emailed straight through the
relay (a real SMTP server), since the mail queue is in the unreachable database; once it
answers, the admin learns that too, and the incident is mailed once, not at every check."""

from __future__ import annotations

import asyncio
import time

from lab.configs import base_config, write_config
from lab.harness import SMTP_SINK_PORT
from textback.config import load
from textback.daemon import Daemon
from textback.store.postgres import PostgresStore

BOUND_MINUTES = 1  # incidents.ami_down_minutes: the database's incident waits as long


def refuse(postgres_server, name: str, refused: bool) -> None:
    """The database refuses every connection (and drops those it has), or takes them again."""
    postgres_server.admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(not refused).lower()}')
    if refused:
        postgres_server.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              f" WHERE datname = '{name}'")


async def test_the_admin_is_emailed_directly_when_the_database_stays_unreachable(
        tmp_path, smtp_sink, postgres_server, postgres_template):
    url = postgres_server.new_database(template=postgres_template)
    name = url.split("@/")[1].split("?")[0]
    config = base_config(tmp_path, admin_email="it@acme.example",
                         incidents={"ami_down_minutes": BOUND_MINUTES},
                         **{"smtp.port": SMTP_SINK_PORT})
    daemon = Daemon(load(write_config(tmp_path, config)))
    daemon.attach(await PostgresStore.open(url), None)
    daemon.watch.ami_down_since.clear()  # only the database is wrong here
    checks = daemon.incidents
    try:
        now = time.time()
        await checks.check_incidents(now)
        refuse(postgres_server, name, True)
        await checks.check_incidents(now + 10)
        await checks.check_incidents(now + 40)  # within the bound: a blip tells nobody
        assert smtp_sink.received == [] and daemon.watch.database_down_since == now + 10
        await checks.check_incidents(now + 10 + BOUND_MINUTES * 60 + 1)
        [opened] = await asyncio.to_thread(smtp_sink.wait_for, 1, 10)
        assert opened.recipients == ["it@acme.example"]
        assert opened.message["Subject"] == "textback incident: textback cannot reach its database"
        body = opened.message.get_content()
        assert "has not answered for 1 minutes" in body and "takes the PBX over" in body
        await checks.check_incidents(now + 200)
        assert len(smtp_sink.received) == 1  # once per incident, not once per check

        refuse(postgres_server, name, False)
        deadline = time.monotonic() + 30
        while daemon.watch.database_down_since is not None:
            assert time.monotonic() < deadline, "the database never answered again"
            await checks.check_incidents(time.time())
            await asyncio.sleep(0.5)
        _, recovered = await asyncio.to_thread(smtp_sink.wait_for, 2, 10)
        assert recovered.message["Subject"] == "textback recovered: textback cannot reach its database"
        assert await daemon.store.open_incidents() == []
    finally:
        refuse(postgres_server, name, False)
        await daemon.store.close()
