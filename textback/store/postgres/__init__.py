"""The store on PostgreSQL: the same port as SQLite's `Store`, for a fleet of daemons on one
database. The aggregates' standard SQL runs as is; `rows.py` holds PostgreSQL's own SQL where
the dialects differ, `migrations.py` its schema, `connection.py` the pool and transactions.
Open it with `PostgresStore.open(url, password)` or, from the config, `open_store(config)`.
"""

from __future__ import annotations

from textback.store.calls import CallRows
from textback.store.claimers import ClaimerRows
from textback.store.deliveries import DeliveryRows
from textback.store.facts import FactRows
from textback.store.inbound import InboundRows
from textback.store.intake import IntakeRows
from textback.store.mail import MailRows
from textback.store.media import MediaRows
from textback.store.optouts import OptOutRows
from textback.store.outbox import OutboxRows
from textback.store.owner_texts import OwnerTextRows
from textback.store.owners import OwnerRows
from textback.store.postgres.claimers import PgClaimers
from textback.store.postgres.connection import PgConnection
from textback.store.postgres.rows import PostgresRows
from textback.store.progress import ProgressRows
from textback.store.push import PushRows
from textback.store.reading import ReadingRows
from textback.store.retention import RetentionRows
from textback.store.selftests import SelftestRows
from textback.store.tokens import TokenRows
from textback.store.web import WebStore

__all__ = ["PostgresStore"]


class PostgresStore(PgClaimers, PostgresRows, FactRows, CallRows, OutboxRows, InboundRows,
                    MailRows, DeliveryRows, SelftestRows, OwnerRows, OptOutRows, TokenRows, ProgressRows, ReadingRows,
                    RetentionRows, WebStore, MediaRows, OwnerTextRows, PushRows, IntakeRows,
                    ClaimerRows, PgConnection):
    """The port on PostgreSQL: every aggregate's public methods, PostgreSQL's SQL first."""
