"""PostgreSQL behind the store's port: chosen by `storage.url`, its password from a file or
the environment and never in the URL, an error or a log; `textback check` reports it; the
schema refuses a downgrade as SQLite's does."""

from __future__ import annotations

import logging
import secrets

import psycopg
import pytest
from click.testing import CliRunner

from lab.configs import base_config, write_config
from textback.cli import main
from textback.config import ConfigError, load
from textback.store import Store, StoreTooNew, open_store
from textback.store.postgres import PostgresStore
from textback.store.postgres import migrations as pg_migrations
from tests.store_helpers import execute


def owned_by_password_role(server, password: str) -> str:
    """A fresh database owned by the role that must give `password`; its URL as that role."""
    role = server.password_role(password)
    url = server.new_database()
    name = url.split("?")[0].rsplit("/", 1)[1]
    server.admin(f'ALTER DATABASE "{name}" OWNER TO {role}')
    return server.url(name, user=role)


def configured(tmp_path, url: str, password: str):
    (tmp_path / "db.secret").write_text(password + "\n")
    return load(write_config(tmp_path, base_config(
        tmp_path, **{"storage": {"url": url, "password": {"file": "db.secret"}}})))


async def test_storage_url_opens_postgresql_with_the_password_from_a_file(
        tmp_path, postgres_server, caplog):
    password = secrets.token_urlsafe(16)
    url = owned_by_password_role(postgres_server, password)
    loaded = configured(tmp_path, url, password)
    assert loaded.config.storage.backend == "postgresql"
    caplog.set_level(logging.DEBUG)
    store = await open_store(loaded.config.storage, loaded.secrets.storage_password)
    try:
        assert isinstance(store, PostgresStore)
        assert await store.request_selftest("cli") == 1
        assert (await store.selftest_run(1))["state"] == "requested"
    finally:
        await store.close()
    assert password not in caplog.text
    assert not (tmp_path / "textback.db").exists()  # nothing went to SQLite


async def test_a_wrong_password_is_refused_without_being_shown(tmp_path, postgres_server):
    url = owned_by_password_role(postgres_server, secrets.token_urlsafe(16))
    wrong = "not-" + secrets.token_urlsafe(16)
    loaded = configured(tmp_path, url, wrong)
    with pytest.raises(ConnectionError) as refused:
        await open_store(loaded.config.storage, loaded.secrets.storage_password)
    assert "password authentication failed" in str(refused.value)
    assert wrong not in str(refused.value)


def test_a_password_in_the_url_is_a_config_error(tmp_path):
    config = base_config(tmp_path, **{"storage": {"url": "postgresql://app:hunter2@db/textback"}})
    with pytest.raises(ConfigError, match="no password in the url"):
        load(write_config(tmp_path, config))


@pytest.mark.parametrize("storage, error", [
    ({"url": "mysql://app@db/textback"}, "url must be postgresql://"),
    ({"url": "postgresql://app@db/"}, "must name the database"),
    ({"password": {"env": "PGPASS"}}, "'password' is for a postgresql:// url"),
    ({"url": "sqlite:///a.db", "path": "/b.db"}, "not both"),
])
def test_storage_settings_that_cannot_work_are_refused(tmp_path, storage, error):
    with pytest.raises(ConfigError, match=error):
        load(write_config(tmp_path, base_config(tmp_path, storage=storage)))


async def test_a_sqlite_url_is_the_sqlite_default(tmp_path):
    loaded = load(write_config(tmp_path, base_config(
        tmp_path, storage={"url": f"sqlite:///{tmp_path}/other.db"})))
    assert loaded.config.storage.backend == "sqlite"
    store = await open_store(loaded.config.storage)
    try:
        assert isinstance(store, Store)
    finally:
        await store.close()
    assert (tmp_path / "other.db").exists()


def test_check_reports_the_database(tmp_path, postgres_server, monkeypatch):
    password = secrets.token_urlsafe(16)
    url = owned_by_password_role(postgres_server, password)
    monkeypatch.setenv("TEXTBACK_DB_PASSWORD", password)
    path = write_config(tmp_path, base_config(tmp_path, storage={
        "url": url, "password": {"env": "TEXTBACK_DB_PASSWORD"}}))
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    [line] = [line for line in result.output.splitlines() if "database:" in line]
    assert line.startswith("ok    database: PostgreSQL 15.")
    assert f"empty, `textback run` creates schema {len(pg_migrations.MIGRATIONS)}" in line
    assert password not in result.output

    monkeypatch.setenv("TEXTBACK_DB_PASSWORD", "wrong")
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    [line] = [line for line in result.output.splitlines() if "database:" in line]
    assert line.startswith("FAIL  database:") and "password authentication failed" in line
    assert result.exit_code == 1


async def test_a_newer_schema_is_refused_and_left_as_it_is(postgres_database):
    store = await PostgresStore.open(postgres_database)
    newer = len(pg_migrations.MIGRATIONS) + 1
    await execute(store, "UPDATE schema_version SET version = ?", (newer,))
    await execute(store, "INSERT INTO written_by VALUES (?, '9.9', 0)", (newer,))
    await store.close()
    with pytest.raises(StoreTooNew, match=r"written by textback 9\.9.*a downgrade is not supported"):
        await PostgresStore.open(postgres_database)
    with psycopg.connect(postgres_database) as connection:
        assert connection.execute("SELECT version FROM schema_version").fetchone()[0] == newer


def test_both_backends_have_every_schema_version():
    from textback.store import MIGRATIONS
    assert len(pg_migrations.MIGRATIONS) == len(MIGRATIONS)
