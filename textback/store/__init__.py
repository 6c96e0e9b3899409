"""The store: one module per aggregate, on SQLite (the default) or PostgreSQL.

Everything the system accepts is committed here before it is acted on or acknowledged.
`StorePort` (port.py) lists the public methods the rest of textback uses; `Store` is it on
SQLite (WAL, one aiosqlite connection: sqlite.py), `PostgresStore` on PostgreSQL (postgres/);
`open_store(config.storage)` picks one. The aggregates' SQL is the standard SQL both run;
where the dialects differ each backend has its own. Each aggregate is a small module working
on the shared `Connection` (its transactions, events and consent facts):

    facts        a finished call's or an inbound text's facts, read in one statement
    calls        calls and conversations; a call and its automatic text in one commit
    outbox       due texts claimed, sent, retried, held, expired (its state machine there)
    inbound      inbound texts and their owner alerts
    mail         owner alerts and notices, each claimed before it is mailed
    deliveries   events to webhook endpoints and CRM adapters
    selftests    self-test runs
    owners       reply tokens, assignment, outcomes, escalations, contacts
    optouts      opt-outs, and the replies and test texts queued past them
    owner_texts  an owner's own mobile: alert texts to it, its answers, the conversation each names
    tokens       API tokens and idempotent writes
    progress     progress marks and incidents
    reading      reads for the CLI, the inbox, the reports and the health check
    retention    monthly scorecards kept, old rows deleted in batches
    web, media   the web inbox's users, sessions, links and notes; media rows
    push         owners' push subscriptions, the pushes to them, their alert channels
    intake       intake facts: each extraction and correction, and their merge
    migrations   the schema, appended to at the end (PostgreSQL's: postgres/migrations.py)
    states       each claim's state machine, one transition table both backends follow
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textback.store.calls import CallRows
from textback.store.claimers import ClaimerRows
from textback.store.connection import (StoreRefused, StoreTooNew, UpgradeRefused,
                                       textback_version)
from textback.store.deliveries import DeliveryRows
from textback.store.facts import FactRows
from textback.store.inbound import InboundRows
from textback.store.intake import IntakeRows
from textback.store.mail import MailRows
from textback.store.media import MediaRows, NewMedia
from textback.store.migrations import ANALYSIS_LIMIT, MIGRATIONS, statements
from textback.store.optouts import OptOutRows
from textback.store.outbox import OutboxRows
from textback.store.owner_texts import OwnerTextRows
from textback.store.owners import OwnerRows
from textback.store.progress import ProgressRows
from textback.store.push import PushRows, QueuedPush
from textback.store.reading import ReadingRows
from textback.store.retention import RetentionRows
from textback.store.selftests import SelftestRows
from textback.store.sqlite import SqliteConnection
from textback.store.tokens import TokenRows
from textback.store.values import (CLI_INBOX_COLUMNS, MAIL_TABLES, REPEAT_WITHOUT_ID_SECONDS,
                                   SELFTEST_KIND, CallRow, InboundRecord, Notice, NotANumber,
                                   OutboxItem, PlannedText)
from textback.store.web import StaleState, WebStore

if TYPE_CHECKING:
    from pydantic import SecretStr

    from textback.config import CompanyConfig, StorageConfig
    from textback.store.postgres import PostgresStore

__all__ = ["ANALYSIS_LIMIT", "CLI_INBOX_COLUMNS", "MAIL_TABLES", "MIGRATIONS",
           "REPEAT_WITHOUT_ID_SECONDS", "SELFTEST_KIND", "CallRow", "InboundRecord", "NewMedia",
           "NotANumber", "Notice", "OutboxItem", "PlannedText", "QueuedPush", "StaleState", "Store",
           "StoreRefused", "StoreTooNew", "UpgradeRefused", "open_store", "statements",
           "textback_version"]


class Store(FactRows, CallRows, OutboxRows, InboundRows, MailRows, DeliveryRows, SelftestRows,
            OwnerRows, OptOutRows, TokenRows, ProgressRows, ReadingRows, RetentionRows, WebStore,
            MediaRows, OwnerTextRows, PushRows, IntakeRows, ClaimerRows, SqliteConnection):
    """The port on SQLite: every aggregate's public methods on one connection
    (`Store.open(path)`)."""


async def open_store(storage: StorageConfig, password: SecretStr | None = None,
                     company: CompanyConfig | None = None) -> Store | PostgresStore:
    """The store `storage` names: SQLite's file by default, PostgreSQL's database for a
    postgresql:// url (`password`: storage.password, resolved with the config's secrets),
    there seeing `company`'s rows alone (None: the company `default`)."""
    if storage.backend == "sqlite":
        return await Store.open(storage.path)
    from textback.store.postgres import PostgresStore  # psycopg only when it is used
    named = {"company": company.id, "company_name": company.name} if company else {}
    return await PostgresStore.open(storage.url, password.get_secret_value() if password else None,
                                    **named)
