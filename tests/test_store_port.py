"""The store's port (textback/store/port.py) is what both backends are: every public method of
SQLite's Store is PostgreSQL's too, with the same signature, and neither has one the port lacks."""

from __future__ import annotations

import inspect

import pytest

from textback.store import Store
from textback.store.port import StorePort
from textback.store.postgres import PostgresStore

OPENERS = {"open"}  # each backend's own classmethod: a path, or a URL and a password


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(getattr(cls, name)) for name in dir(cls)
            if not name.startswith("_") and name not in OPENERS
            and callable(getattr(cls, name))}


def described(signature: inspect.Signature) -> list[tuple]:
    """Names, kinds, defaults and annotations of the parameters, and the return annotation."""
    return [(p.name, p.kind, p.default, str(p.annotation))
            for p in signature.parameters.values()] + [str(signature.return_annotation)]


@pytest.mark.parametrize("backend", [Store, PostgresStore], ids=["sqlite", "postgresql"])
def test_each_backend_is_the_port_no_more_no_less(backend):
    port = public_methods(StorePort)
    methods = public_methods(backend)
    assert sorted(set(port) - set(methods)) == []  # the port asks, the backend lacks
    assert sorted(set(methods) - set(port)) == []  # public, but not in the port
    for name, signature in port.items():
        assert described(methods[name]) == described(signature), name
        assert (inspect.iscoroutinefunction(getattr(backend, name))
                == inspect.iscoroutinefunction(getattr(StorePort, name))), name


def test_postgresql_has_every_method_of_sqlite_with_the_same_signature():
    sqlite, postgresql = public_methods(Store), public_methods(PostgresStore)
    assert set(sqlite) == set(postgresql)
    for name, signature in sqlite.items():
        assert described(postgresql[name]) == described(signature), name


def test_postgresqls_own_sql_overrides_only_what_sqlite_has():
    """Each method PostgreSQL writes its own SQL for is one the aggregates (SQLite) define:
    a misspelt override would silently leave SQLite's SQL in place."""
    from textback.store.postgres.rows import PostgresRows
    own = [name for name, value in vars(PostgresRows).items()
           if callable(value) and not name.startswith("__")]
    assert own
    for name in own:
        assert hasattr(Store, name), name
        assert described(inspect.signature(getattr(PostgresRows, name))) == described(
            inspect.signature(getattr(Store, name))), name
