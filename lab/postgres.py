"""A real PostgreSQL for the tests and benchmarks: Debian's server, `initdb` into a temporary
directory and `pg_ctl start` listening only on a Unix socket in that directory (no port to
collide on).

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
unprivileged `nobody` (through `setpriv`), owning its data directory. A database is made
per test from a template already migrated to the current schema (`CREATE DATABASE ...
TEMPLATE`, a file copy), so a test starts on a fresh, empty, current schema in milliseconds.
Nothing here is a mock: if the server cannot start, the error says why and the test fails.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

PG_BIN = Path(os.environ.get("TEXTBACK_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "textback"
# A role that must give its password (scram-sha-256), as a daemon's role does in production;
# the superuser connects without one (trust), over the socket only this user can reach.
PASSWORD_ROLE = "textback_app"
# The role a daemon runs as in production: no superuser, no BYPASSRLS, owner of its database.
# The store's tests connect as it, so row-level security (each company's rows apart) is in
# force on every query they run, as it is for a daemon: a superuser would bypass it.
DAEMON_ROLE = "textback_daemon"
TEMPLATE = "textback_template"


class PostgresError(RuntimeError):
    """The test PostgreSQL could not be set up: its log says why."""


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, on a Unix socket only."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="textback-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._names = itertools.count(1)
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._as_user = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                             "--clear-groups", "--"]
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        self.root.chmod(0o755)

    def _run(self, *argv: str) -> None:
        binary = PG_BIN / argv[0]
        if not binary.exists():
            raise PostgresError(f"{binary} is missing: run tools/install-test-deps.sh "
                                "(Debian's postgresql and postgresql-contrib)")
        done = subprocess.run([*self._as_user, str(binary), *argv[1:]], capture_output=True,
                              text=True, cwd=self.root, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise PostgresError(f"{' '.join(argv)} failed ({done.returncode}):\n"
                                f"{done.stdout}{done.stderr}{log}")

    def start(self, durable: bool = False) -> None:
        """Start the cluster; `durable` keeps PostgreSQL's defaults (fsync, synchronous commit,
        full-page writes), for a benchmark that compares it with SQLite's synchronous=FULL."""
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"local all {PASSWORD_ROLE} scram-sha-256\n" + hba.read_text())
        # The socket in our own directory, no TCP at all; fsync off: a test cluster is
        # thrown away, and durability is the server's job, not what these tests measure.
        throwaway = ("" if durable else
                     " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", f"-k {self.root} -c listen_addresses=''{throwaway}"
                        " -c max_connections=200", "start")

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        """A libpq URL for `database` over the Unix socket (its directory as the host)."""
        return f"postgresql://{user}@/{database}?host={self.root}"

    def password_role(self, password: str) -> str:
        """Give PASSWORD_ROLE `password` (creating it the first time); returns its name."""
        from psycopg import sql
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as connection:
            exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                        (PASSWORD_ROLE,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            connection.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(PASSWORD_ROLE), sql.Literal(password)))
        return PASSWORD_ROLE

    def version(self) -> str:
        import psycopg
        with psycopg.connect(self.url()) as connection:
            return connection.execute("SHOW server_version").fetchone()[0]

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser on the `postgres` database (autocommit)."""
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql)

    def daemon_role(self) -> str:
        """DAEMON_ROLE (created the first time: LOGIN, NOSUPERUSER, NOBYPASSRLS); its name."""
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as connection:
            if not connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                      (DAEMON_ROLE,)).fetchone():
                connection.execute(f'CREATE ROLE "{DAEMON_ROLE}" LOGIN NOSUPERUSER NOBYPASSRLS')
        return DAEMON_ROLE

    def new_database(self, template: str = "template0", name: str | None = None,
                     owner: str | None = None) -> str:
        """A fresh database (named `name`, or the next free name), copied from `template` and
        owned by `owner` (default: the superuser); returns its URL, connecting as the owner."""
        name = name or f"t{os.getpid()}_{next(self._names)}"
        owned = f' OWNER "{owner}"' if owner else ""
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{owned}')
        return self.url(name, user=owner or SUPERUSER)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
