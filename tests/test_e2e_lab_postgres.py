"""`textback run` on PostgreSQL against the real lab PBX: a missed call is recorded in the
database and texted, as on SQLite; `textback check` reports the database it runs on, and
`textback status` the daemon."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time

import psycopg
import pytest

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from lab.harness import wait_until

pytestmark = pytest.mark.lab

DELAY = 2.0


def test_a_missed_call_is_texted_with_the_store_on_postgresql(
        tmp_path, postgres_server, lab_pbx, lab_daemon, sink):
    password = secrets.token_urlsafe(16)
    role = postgres_server.password_role(password)
    url = postgres_server.new_database()
    name = url.split("?")[0].rsplit("/", 1)[1]
    postgres_server.admin(f'ALTER DATABASE "{name}" OWNER TO {role}')
    (tmp_path / "db.secret").write_text(password)
    textback = lab_daemon(**{"text.delay_seconds": DELAY,
                             "storage.url": postgres_server.url(name, user=role),
                             "storage.password": {"file": str(tmp_path / "db.secret")}})

    phone = lab_pbx.phone("office1", "noanswer")
    lab_pbx.call(HOMEOWNER, BUSINESS_NUMBER).wait(30)
    phone.kill()
    [text] = wait_until(lambda: sink.messages(), DELAY + 10, "the SIP MESSAGE at the carrier")
    assert BUSINESS_NUMBER in text["from"] and HOMEOWNER in text["to"]
    assert text["body"].startswith("Hi, this is Acme Remodeling.")

    with psycopg.connect(url) as db:  # the call and its text are PostgreSQL's rows
        calls = db.execute("SELECT caller, outcome FROM calls").fetchall()
        assert calls == [(HOMEOWNER, "missed")]
        wait_until(lambda: db.execute("SELECT state FROM outbox").fetchall() == [("sent",)],
                   5, "the outbox row marked sent")
    assert not (tmp_path / "textback.db").exists()  # nothing went to SQLite
    time.sleep(1)
    assert len(sink.messages()) == 1

    checked = subprocess.run([sys.executable, "-m", "textback", "check", "-c",
                              str(textback.config_path)], capture_output=True, text=True,
                             timeout=120)
    [line] = [line for line in checked.stdout.splitlines() if "database:" in line]
    assert line.startswith("ok    database: PostgreSQL 15.") and ", schema " in line
    assert password not in checked.stdout + checked.stderr
    status = subprocess.run([sys.executable, "-m", "textback", "status", "-c",
                             str(textback.config_path)], capture_output=True, text=True, timeout=120)
    assert "daemon          up (pid" in status.stdout, status.stdout + status.stderr
    assert password not in (tmp_path / "textback.log").read_text()
