"""The store: SQLite (WAL) on one aiosqlite connection, one module per aggregate.

Everything the system accepts is committed here before it is acted on or acknowledged.
`Store` is the port the rest of textback uses: its public methods, and nothing else, are
what a second SQL backend implements with its own SQL. Each aggregate is a small module
working on the shared `Connection` (its transactions, events and consent facts):

    calls        calls and conversations; a call and its automatic text in one commit
    outbox       due texts claimed, sent, retried, held, expired (its state machine there)
    inbound      inbound texts and their owner alerts
    mail         owner alerts and notices, each claimed before it is mailed
    deliveries   events to webhook endpoints and CRM adapters
    selftests    self-test runs
    owners       reply tokens, assignment, outcomes, escalations, contacts
    optouts      opt-outs, and the replies and test texts queued past them
    tokens       API tokens and idempotent writes
    progress     progress marks and incidents
    reading      reads for the CLI, the inbox, the reports and the health check
    retention    monthly scorecards kept, old rows deleted in batches
    web, media   the web inbox's users, sessions, links and notes; media rows
    migrations   the schema, appended to at the end
"""

from __future__ import annotations

from textback.store.calls import CallRows
from textback.store.connection import StoreTooNew, textback_version
from textback.store.deliveries import DeliveryRows
from textback.store.inbound import InboundRows
from textback.store.mail import MailRows
from textback.store.media import MediaRows, NewMedia
from textback.store.migrations import ANALYSIS_LIMIT, MIGRATIONS, statements
from textback.store.optouts import OptOutRows
from textback.store.outbox import OutboxRows
from textback.store.owners import OwnerRows
from textback.store.progress import ProgressRows
from textback.store.reading import ReadingRows
from textback.store.retention import RetentionRows
from textback.store.selftests import SelftestRows
from textback.store.sqlite import SqliteConnection
from textback.store.tokens import TokenRows
from textback.store.values import (CLI_INBOX_COLUMNS, MAIL_TABLES, REPEAT_WITHOUT_ID_SECONDS,
                                   SELFTEST_KIND, CallRow, InboundRecord, Notice, NotANumber,
                                   OutboxItem, PlannedText)
from textback.store.web import StaleState, WebStore

__all__ = ["ANALYSIS_LIMIT", "CLI_INBOX_COLUMNS", "MAIL_TABLES", "MIGRATIONS",
           "REPEAT_WITHOUT_ID_SECONDS", "SELFTEST_KIND", "CallRow", "InboundRecord", "NewMedia",
           "NotANumber", "Notice", "OutboxItem", "PlannedText", "StaleState", "Store",
           "StoreTooNew", "statements", "textback_version"]


class Store(CallRows, OutboxRows, InboundRows, MailRows, DeliveryRows, SelftestRows, OwnerRows,
            OptOutRows, TokenRows, ProgressRows, ReadingRows, RetentionRows, WebStore, MediaRows,
            SqliteConnection):
    """The port on SQLite: every aggregate's public methods on one connection
    (`Store.open(path)`)."""
