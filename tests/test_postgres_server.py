"""The test PostgreSQL (lab/postgres.py) is a real server: Debian's 15, with pg_trgm, a fresh
database per test, and other tests' databases out of sight."""

from __future__ import annotations

import psycopg


def test_a_real_postgresql_15_with_pg_trgm(postgres_database):
    with psycopg.connect(postgres_database) as connection:
        version = connection.execute("SHOW server_version_num").fetchone()[0]
        assert 150000 <= int(version) < 160000
        connection.execute("CREATE EXTENSION pg_trgm")
        similarity = connection.execute("SELECT similarity('textback', 'textbook')").fetchone()[0]
        assert 0 < similarity < 1


def test_each_test_gets_its_own_empty_database(postgres_server):
    first, second = postgres_server.new_database(), postgres_server.new_database()
    assert first != second
    with psycopg.connect(first) as connection:
        connection.execute("CREATE TABLE only_here (id integer)")
    with psycopg.connect(second) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
        assert tables == 0


def test_the_server_listens_on_no_tcp_port(postgres_database):
    with psycopg.connect(postgres_database) as connection:
        assert connection.execute("SHOW listen_addresses").fetchone()[0] == ""
        assert connection.info.host.startswith("/")
