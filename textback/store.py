"""SQLite store: calls, conversations, messages, the outbox, owner alerts and notices.

Everything the system accepts is committed here before it is acted on or
acknowledged. The outbox is a state machine in the database:

    pending --claim--> sending --> sent | failed | unknown
     |  ^                 |
     |  +---- retry ------+          (sending at start-up --> unknown)
     +--past its deadline--> expired

A row is claimed with a conditional UPDATE before the gateway is called, so
two workers, or a worker after a restart, can never send it twice. A row
left in `sending` by a crash may or may not have reached the gateway; it
becomes `unknown` and is reported, never re-sent blindly. A row still
pending at its deadline (`first_due_at` plus text.max_age_minutes; five
minutes for an opt-out confirmation) becomes `expired`, with the same kind of
conditional UPDATE, and its owner is emailed instead.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import importlib.metadata
import json
import secrets
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

import aiosqlite

from sms_gateway.segments import count_segments
from textback import consent
from textback.hooks import events
from textback.hooks.events import Event
from textback.media import Shown, kind_of, summary
from textback.numbers import to_e164
from textback.scorecard import build as build_scorecard
from textback.selftest import Report
from textback.store_media import MediaRows, NewMedia, shown_items
from textback.store_web import NEXT_VERSION, WebStore

MIGRATIONS: list[str] = [
    # 1: the vertical slice
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        caller TEXT NOT NULL,
        business_number TEXT NOT NULL,
        owner_id TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (caller, business_number)
    );
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        linkedid TEXT NOT NULL UNIQUE,
        business_number TEXT NOT NULL,
        caller_raw TEXT NOT NULL,
        caller TEXT,
        caller_name TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL,
        answered_at REAL,
        ended_at REAL NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL,
        decision TEXT NOT NULL DEFAULT '',
        conversation_id INTEGER REFERENCES conversations(id),
        message_id INTEGER
    );
    CREATE INDEX calls_caller ON calls (caller, started_at);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        kind TEXT NOT NULL DEFAULT 'auto',
        template TEXT NOT NULL DEFAULT '',
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        gateway TEXT NOT NULL DEFAULT '',
        gateway_id TEXT,
        created_at REAL NOT NULL,
        sent_at REAL,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX messages_conversation ON messages (conversation_id, created_at);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL UNIQUE REFERENCES messages(id),
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        due_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'unknown', 'blocked')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        idempotency_key TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (state, due_at);
    CREATE INDEX messages_gateway_id ON messages (gateway, gateway_id);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        message_id INTEGER NOT NULL REFERENCES messages(id),
        owner_id TEXT NOT NULL,
        recipient TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        sent_at REAL
    );
    CREATE INDEX alerts_state ON alerts (state);
    CREATE TABLE reply_tokens (
        token TEXT PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        owner_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE assignments (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        owner_id TEXT NOT NULL,
        at REAL NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TABLE outcomes (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        stage TEXT NOT NULL,
        value REAL,
        at REAL NOT NULL,
        source TEXT NOT NULL
    );
    CREATE TABLE escalations (
        message_id INTEGER NOT NULL REFERENCES messages(id),
        level INTEGER NOT NULL,
        owner_id TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (message_id, level)
    );
    CREATE TABLE suppressions (
        number TEXT PRIMARY KEY,
        since REAL NOT NULL,
        source TEXT NOT NULL
    );
    """,
    # 2: the route the dialplan named (TEXTBACK_ROUTE), "" when it named none
    """
    ALTER TABLE calls ADD COLUMN route TEXT NOT NULL DEFAULT ''
    """,
    # 3: the name a homeowner's address carried; inbound texts whose sender holds no number
    """
    ALTER TABLE conversations ADD COLUMN contact_name TEXT NOT NULL DEFAULT '';
    CREATE TABLE unroutable_texts (
        id INTEGER PRIMARY KEY,
        sender_raw TEXT NOT NULL,
        recipient TEXT NOT NULL,
        body TEXT NOT NULL,
        gateway TEXT NOT NULL,
        gateway_id TEXT,
        received_at REAL NOT NULL
    );
    CREATE INDEX unroutable_texts_sender ON unroutable_texts (sender_raw);
    CREATE UNIQUE INDEX unroutable_texts_gateway_id ON unroutable_texts (gateway, gateway_id)
        WHERE gateway_id IS NOT NULL
    """,
    # 4: owner alerts are claimed (pending -> sending) before they are mailed and retried at a
    # time kept here, so two workers never mail one twice; notices (short emails to owners and
    # the admin) become rows too, committed before they are mailed. SQLite cannot change a
    # CHECK, so alerts is rebuilt.
    """
    CREATE TABLE alerts_claimed (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        message_id INTEGER NOT NULL REFERENCES messages(id),
        owner_id TEXT NOT NULL,
        recipient TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        sent_at REAL,
        retry_at REAL NOT NULL DEFAULT 0
    );
    INSERT INTO alerts_claimed (id, conversation_id, message_id, owner_id, recipient, subject,
        state, attempts, last_error, created_at, sent_at)
        SELECT id, conversation_id, message_id, owner_id, recipient, subject, state, attempts,
        last_error, created_at, sent_at FROM alerts;
    DROP TABLE alerts;
    ALTER TABLE alerts_claimed RENAME TO alerts;
    CREATE INDEX alerts_state ON alerts (state, retry_at);
    CREATE TABLE notices (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        address TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        retry_at REAL NOT NULL DEFAULT 0,
        sent_at REAL
    );
    CREATE INDEX notices_state ON notices (state, retry_at)
    """,
    # 5: calls recovered from Asterisk's CDR after an AMI gap, and when the last AMI event came
    """
    ALTER TABLE calls ADD COLUMN recovered INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE progress (
        name TEXT PRIMARY KEY,
        value REAL NOT NULL
    )
    """,
    # 6: texts are retried until a deadline: the `expired` state, and when a text was first
    # due (retries move due_at). SQLite cannot change a CHECK, so the table is rebuilt.
    """
    CREATE TABLE outbox_new (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL UNIQUE REFERENCES messages(id),
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        due_at REAL NOT NULL,
        first_due_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'unknown', 'blocked',
                             'expired')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        idempotency_key TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    INSERT INTO outbox_new (id, message_id, sender, recipient, due_at, first_due_at, state,
                            attempts, last_error, idempotency_key, updated_at)
        SELECT id, message_id, sender, recipient, due_at, due_at, state, attempts, last_error,
               idempotency_key, updated_at FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox (state, due_at)
    """,
    # 7: self-tests: their calls and conversations are marked (no scorecard, no owner), and
    # each run is a row, requested by `textback selftest` or the schedule, with its report
    """
    ALTER TABLE calls ADD COLUMN selftest INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN selftest INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE selftests (
        id INTEGER PRIMARY KEY,
        trigger TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'requested'
            CHECK (state IN ('requested', 'running', 'done')),
        requested_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        passed INTEGER,
        steps TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX selftests_state ON selftests (state, requested_at)
    """,
    # 7: incidents the admin was emailed about (AMI down, gateway failing, ...), open until recovered
    """
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        summary TEXT NOT NULL,
        opened_at REAL NOT NULL,
        closed_at REAL
    );
    CREATE UNIQUE INDEX incidents_one_open ON incidents (kind) WHERE closed_at IS NULL
    """,
    # 7: the web inbox. Users (an argon2 hash per owner), server-side sessions (token digests),
    # the nonces of used sign-in links, signing keys, internal notes, who wrote an owner reply.
    # Each conversation keeps its inbox summary, updated in the transaction of each message, so
    # a page costs its size, not the history; a trigram index finds numbers, names and texts.
    """
    CREATE TABLE web_users (
        owner_id TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        changed_at REAL NOT NULL,
        last_sign_in_at REAL
    );
    CREATE TABLE web_sessions (
        token_digest TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        seen_at REAL NOT NULL
    );
    CREATE INDEX web_sessions_seen ON web_sessions (seen_at);
    CREATE TABLE used_links (
        nonce_digest TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        used_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE web_keys (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
    CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        owner_id TEXT NOT NULL,
        body TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX notes_conversation ON notes (conversation_id, at);
    ALTER TABLE messages ADD COLUMN author TEXT NOT NULL DEFAULT '';
    ALTER TABLE conversations ADD COLUMN last_body TEXT NOT NULL DEFAULT '';
    ALTER TABLE conversations ADD COLUMN last_message_at REAL;
    ALTER TABLE conversations ADD COLUMN last_reply TEXT;
    ALTER TABLE conversations ADD COLUMN last_reply_at REAL;
    ALTER TABLE conversations ADD COLUMN last_answer_at REAL;
    ALTER TABLE conversations ADD COLUMN missed_calls INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN unanswered INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN unread INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN waiting_since REAL;
    ALTER TABLE conversations ADD COLUMN snoozed_until REAL;
    ALTER TABLE conversations ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    UPDATE conversations SET
        last_reply = (SELECT body FROM messages WHERE conversation_id = conversations.id
            AND direction = 'in' ORDER BY created_at DESC, id DESC LIMIT 1),
        last_reply_at = (SELECT MAX(created_at) FROM messages
            WHERE conversation_id = conversations.id AND direction = 'in'),
        last_answer_at = (SELECT MAX(created_at) FROM messages
            WHERE conversation_id = conversations.id AND direction = 'out' AND kind = 'owner'),
        missed_calls = (SELECT COUNT(*) FROM calls WHERE conversation_id = conversations.id),
        last_body = COALESCE((SELECT body FROM messages WHERE conversation_id = conversations.id
            ORDER BY created_at DESC, id DESC LIMIT 1), ''),
        last_message_at = (SELECT MAX(created_at) FROM messages
            WHERE conversation_id = conversations.id),
        claimed = EXISTS (SELECT 1 FROM assignments WHERE conversation_id = conversations.id
            AND (reason = 'cli' OR reason LIKE '#assign%')),
        version = id;
    UPDATE conversations SET unanswered = 1 WHERE last_reply_at IS NOT NULL
        AND (last_answer_at IS NULL OR last_answer_at < last_reply_at);
    UPDATE conversations SET unread = (status = 'open'),
        waiting_since = (SELECT MIN(created_at) FROM messages
            WHERE conversation_id = conversations.id AND direction = 'in'
            AND created_at > COALESCE(conversations.last_answer_at, 0))
        WHERE unanswered = 1;
    CREATE INDEX conversations_waiting ON conversations (status, unanswered, last_reply_at);
    CREATE INDEX conversations_recent ON conversations (status, updated_at);
    CREATE INDEX conversations_answered ON conversations (status, unanswered, updated_at);
    CREATE INDEX conversations_unread ON conversations (status, unread);
    CREATE INDEX conversations_version ON conversations (version);
    CREATE INDEX IF NOT EXISTS calls_conversation ON calls (conversation_id, started_at);
    CREATE INDEX IF NOT EXISTS alerts_conversation ON alerts (conversation_id);
    CREATE INDEX IF NOT EXISTS assignments_conversation ON assignments (conversation_id, at);
    CREATE INDEX IF NOT EXISTS outcomes_conversation ON outcomes (conversation_id, at);
    CREATE VIRTUAL TABLE conversation_search USING fts5(conversation_id UNINDEXED, text,
        tokenize = 'trigram');
    INSERT INTO conversation_search (rowid, conversation_id, text)
        SELECT id, conversation_id, body FROM messages;
    INSERT INTO conversation_search (rowid, conversation_id, text)
        SELECT -c.id, c.id, c.caller || ' ' || substr(c.caller, 2) || ' ' || c.contact_name
            || ' ' || COALESCE((SELECT group_concat(DISTINCT caller_name) FROM calls
                                WHERE conversation_id = c.id), '')
        FROM conversations c
    """,
    # 8: the web pages of calls, the scorecard and fraud-guard events read periods of time
    """
    CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
    CREATE INDEX IF NOT EXISTS messages_created ON messages (created_at);
    CREATE INDEX IF NOT EXISTS outcomes_at ON outcomes (at);
    CREATE INDEX IF NOT EXISTS suppressions_since ON suppressions (since)
    """,
    # 9: a caller's class set in the inbox's contact panel; the rules apply it from the next call
    """
    CREATE TABLE contact_classes (
        number TEXT PRIMARY KEY,
        class TEXT NOT NULL CHECK (class IN ('lead', 'client', 'vendor', 'staff', 'blocked')),
        owner_id TEXT NOT NULL,
        at REAL NOT NULL
    )

    """,
    # 7: indexes for every query on a hot path, so a call's cost does not grow with the
    # history (tests/test_query_plans.py checks each plan); the rows still to send or mail
    # indexed apart (partial indexes), so the planner, which cannot tell that `pending` is
    # rare among millions of `sent`, never scans for them; each number's count of
    # conversations, the turn of round-robin assignment, kept instead of counted; and each
    # conversation's latest homeowner text while no owner has answered it, with how many
    # times it was escalated (escalation reads only the texts it may still escalate).
    """
    CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
    CREATE INDEX IF NOT EXISTS calls_conversation ON calls (conversation_id, started_at);
    CREATE INDEX calls_message ON calls (message_id);
    CREATE INDEX IF NOT EXISTS messages_created ON messages (created_at);
    CREATE INDEX alerts_message ON alerts (message_id);
    CREATE INDEX IF NOT EXISTS alerts_conversation ON alerts (conversation_id);
    CREATE INDEX outbox_pending_due ON outbox (due_at) WHERE state = 'pending';
    CREATE INDEX outbox_pending_first_due ON outbox (first_due_at) WHERE state = 'pending';
    CREATE INDEX outbox_sending ON outbox (message_id) WHERE state = 'sending';
    CREATE INDEX alerts_pending ON alerts (id, retry_at) WHERE state = 'pending';
    CREATE INDEX notices_pending ON notices (id, retry_at) WHERE state = 'pending';
    CREATE INDEX IF NOT EXISTS outcomes_at ON outcomes (at);
    CREATE INDEX IF NOT EXISTS suppressions_since ON suppressions (since);
    CREATE INDEX notices_address ON notices (address, subject, created_at);
    CREATE TABLE conversation_turns (
        business_number TEXT PRIMARY KEY,
        started INTEGER NOT NULL
    );
    INSERT INTO conversation_turns (business_number, started)
        SELECT business_number, COUNT(*) FROM conversations WHERE selftest = 0
        GROUP BY business_number;
    CREATE TABLE waiting_texts (
        conversation_id INTEGER PRIMARY KEY REFERENCES conversations(id),
        message_id INTEGER NOT NULL REFERENCES messages(id),
        escalations INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX waiting_texts_to_escalate ON waiting_texts (conversation_id) WHERE escalations < 2;
    INSERT INTO waiting_texts (conversation_id, message_id, escalations)
        SELECT c.id, m.id, (SELECT COUNT(*) FROM escalations e WHERE e.message_id = m.id) FROM conversations c JOIN messages m ON m.id = (
            SELECT id FROM messages WHERE conversation_id = c.id AND direction = 'in'
            ORDER BY created_at DESC, id DESC LIMIT 1)
        WHERE NOT EXISTS (SELECT 1 FROM messages o WHERE o.conversation_id = c.id
            AND o.direction = 'out' AND o.kind = 'owner' AND o.created_at >= m.created_at)
    """,
    # 8: retention: each pruned month's scorecard, per business number, kept before its rows go
    """
    CREATE TABLE monthly_scorecards (
        month TEXT NOT NULL,
        business_number TEXT NOT NULL,
        card TEXT NOT NULL,
        PRIMARY KEY (month, business_number)
    );
    CREATE INDEX waiting_texts_message ON waiting_texts (message_id)
    """,
    # 7: the webhook event outbox: each event committed with the change that caused it, and its
    # deliveries, one per endpoint that takes it, created by the delivery worker from a cursor
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        order_key TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE event_deliveries (
        id INTEGER PRIMARY KEY,
        event INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        endpoint TEXT NOT NULL,
        order_key TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'sending', 'delivered', 'expired', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        retry_at REAL NOT NULL DEFAULT 0,
        last_status INTEGER,
        last_error TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL,
        UNIQUE (event, endpoint)
    );
    CREATE INDEX event_deliveries_due ON event_deliveries (endpoint, state, retry_at);
    CREATE INDEX event_deliveries_order ON event_deliveries (endpoint, order_key, state, event)
    """,
    # 8: the JSON API: bearer tokens (only their SHA-256 is kept), the answers to writes by
    # Idempotency-Key, and the CRM's reference on a conversation
    """
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('read', 'write')),
        hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE api_idempotency (
        token_id INTEGER NOT NULL REFERENCES api_tokens(id),
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        response TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (token_id, key)
    );
    ALTER TABLE conversations ADD COLUMN external_ref TEXT
    """,
    # Each text's cost in SMS segments, kept when it is written, so a scorecard sums a column
    # instead of reading and counting every body of its period (text_segments, registered in
    # Store.open, is sms_gateway.segments.count_segments).
    """
    ALTER TABLE messages ADD COLUMN segments INTEGER NOT NULL DEFAULT 0;
    UPDATE messages SET segments = text_segments(body)
    """,
    # What a person can see and change of a conversation (owner, done or open, snooze, outcome,
    # contact name and class) has its own version, so a form from a page that no longer shows
    # the truth is refused instead of undoing another owner's change. Triggers bump it in the
    # transaction of the change itself, whichever code path makes it; a new text or call bumps
    # it only when it reopens or wakes the conversation. A class is kept per number, so its
    # triggers also bump the live-update version of the number's conversations.
    """
    ALTER TABLE conversations ADD COLUMN state_version INTEGER NOT NULL DEFAULT 0;
    CREATE TRIGGER conversation_state_changed
        AFTER UPDATE OF owner_id, status, snoozed_until, contact_name ON conversations
        WHEN OLD.owner_id IS NOT NEW.owner_id OR OLD.status IS NOT NEW.status
            OR OLD.snoozed_until IS NOT NEW.snoozed_until OR OLD.contact_name IS NOT NEW.contact_name
        BEGIN UPDATE conversations SET state_version = state_version + 1 WHERE id = NEW.id; END;
    CREATE TRIGGER conversation_outcome_added AFTER INSERT ON outcomes
        BEGIN UPDATE conversations SET state_version = state_version + 1
            WHERE id = NEW.conversation_id; END;
    CREATE TRIGGER contact_class_added AFTER INSERT ON contact_classes
        BEGIN UPDATE conversations SET state_version = state_version + 1,
            version = (SELECT COALESCE(MAX(version), 0) + 1 FROM conversations)
            WHERE caller = NEW.number; END;
    CREATE TRIGGER contact_class_changed AFTER UPDATE OF class ON contact_classes
        WHEN OLD.class IS NOT NEW.class
        BEGIN UPDATE conversations SET state_version = state_version + 1,
            version = (SELECT COALESCE(MAX(version), 0) + 1 FROM conversations)
            WHERE caller = NEW.number; END
    """,
    # What the alert email that gave out a reply token showed its owner (JSON list of lines),
    # so a reply to it is stripped of anything it quotes back (textback.replies.strip_repeats).
    # Retention forgets them with the month they quote (reply_tokens_quoting).
    """
    ALTER TABLE reply_tokens ADD COLUMN quoted TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX reply_tokens_quoting ON reply_tokens (created_at) WHERE quoted <> '[]'
    """,
    # Failed sign-ins, kept so a restart does not reset the limits (key: an owner, an unknown
    # account name or a client address). A session remembers the browser and address it
    # started from, for the settings page, and how it ended, so the sign-in page says why.
    """
    CREATE TABLE signin_failures (
        key TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX signin_failures_key ON signin_failures (key, at);
    CREATE INDEX signin_failures_at ON signin_failures (at);
    ALTER TABLE web_sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
    ALTER TABLE web_sessions ADD COLUMN address TEXT NOT NULL DEFAULT '';
    ALTER TABLE web_sessions ADD COLUMN ended_at REAL;
    ALTER TABLE web_sessions ADD COLUMN ended_why TEXT;
    CREATE INDEX web_sessions_owner ON web_sessions (owner_id, ended_at)
    """,
    # Inbound media (MMS): each photo, video or file a text carried, committed with the text;
    # fetched later by the media worker, the file kept under its SHA-256 (textback/store_media.py)
    """
    CREATE TABLE media (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL REFERENCES messages(id),
        position INTEGER NOT NULL,
        url TEXT NOT NULL,
        declared_type TEXT NOT NULL,
        declared_size INTEGER,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'fetching', 'kept', 'failed')),
        shown INTEGER NOT NULL DEFAULT 0,
        content_type TEXT NOT NULL DEFAULT '',
        size INTEGER,
        sha256 TEXT,
        rendition_sha256 TEXT,
        note TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        retry_at REAL NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        fetched_at REAL,
        owner_told INTEGER NOT NULL DEFAULT 0,
        UNIQUE (message_id, position)
    );
    CREATE INDEX media_due ON media (retry_at) WHERE state = 'pending';
    CREATE INDEX media_failed ON media (message_id) WHERE state = 'failed' AND owner_told = 0;
    CREATE INDEX media_sha256 ON media (sha256) WHERE sha256 IS NOT NULL;
    CREATE INDEX media_rendition ON media (rendition_sha256) WHERE rendition_sha256 IS NOT NULL
    """,
    # The consent ledger (textback/consent.py): one row per fact, appended in the transaction of
    # the change it records, never changed or deleted (the triggers refuse), never pruned; and
    # when a text held for the homeowner's quiet hours may go (textback/quiet_hours.py).
    """
    CREATE TABLE consent_ledger (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        fact TEXT NOT NULL,
        number TEXT NOT NULL,
        business_number TEXT NOT NULL DEFAULT '',
        channel TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL DEFAULT '',
        body TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX consent_ledger_number ON consent_ledger (number, at);
    ALTER TABLE outbox ADD COLUMN held_until REAL;
    CREATE TRIGGER consent_ledger_no_update BEFORE UPDATE ON consent_ledger
    BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
    CREATE TRIGGER consent_ledger_no_delete BEFORE DELETE ON consent_ledger
    BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END
    """,
    # Which textback migrated the store to each schema version: an older textback that finds
    # a newer schema names the release to install again (Store.open refuses it).
    """
    CREATE TABLE written_by (
        schema_version INTEGER PRIMARY KEY,
        textback_version TEXT NOT NULL,
        at REAL NOT NULL
    )
    """,
]

# ANALYZE reads at most about this many rows of each index, so it stays quick on a large store.
ANALYSIS_LIMIT = 1000

# An inbound text without a gateway id that repeats the caller's latest one within this many
# seconds is that text delivered again (see Store.record_inbound).
REPEAT_WITHOUT_ID_SECONDS = 300

# The kind of a self-test's text (messages.kind).
SELFTEST_KIND = "selftest"
# What `textback inbox --json` shows of a conversation, in its order.
CLI_INBOX_COLUMNS = ("id", "caller", "business_number", "owner_id", "status", "created_at",
                     "updated_at", "contact_name", "last_reply", "last_reply_at", "last_answer_at",
                     "missed_calls")
# A message retention may delete: before the cutoff, and neither its text nor its alert in flight.
_PRUNABLE_MESSAGE = (
    "m.created_at < ? AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id"
    " AND o.state IN ('pending', 'sending')) AND NOT EXISTS (SELECT 1 FROM alerts a"
    " WHERE a.message_id = m.id AND a.state IN ('pending', 'sending'))")

# The path a text of each kind takes when its writer names none (owner replies always name one).
_QUEUED_BY = {"auto": "automatic", SELFTEST_KIND: "selftest", "help": "sms",
              "optout_confirmation": "sms", "optin_confirmation": "sms"}

# Emails the daemon sends, each a row claimed before it is mailed (see Store.claim_mail).
MAIL_TABLES = ("alerts", "notices")


def statements(script: str) -> list[str]:
    """A migration's SQL statements: split at each ";" that ends one (not those inside a
    trigger's BEGIN ... END), as sqlite3.complete_statement tells."""
    made, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                made.append(pending.strip().rstrip(";"))
            pending = ""
    if pending.strip(" \n;"):
        made.append(pending.strip().rstrip(";"))
    return made


class NotANumber(ValueError):
    """An address reached the store that is not a canonical E.164 number: a bug upstream."""


def _canonical(number: str) -> str:
    """Refuse anything but canonical E.164, so no text or opt-out is ever keyed by a raw string."""
    if not number or to_e164(number, None) != number:
        raise NotANumber(f"not a canonical E.164 number: {number!r}")
    return number
    return number


@dataclass(frozen=True)
class CallRow:
    linkedid: str
    business_number: str
    caller_raw: str
    caller: str | None
    caller_name: str
    started_at: float
    answered_at: float | None
    ended_at: float
    outcome: str
    reason: str
    decision: str
    route: str = ""
    recovered: bool = False  # rebuilt from the CDR: it ended while AMI was not logged in
    selftest: bool = False  # placed by the self-test: never counted, never owned


@dataclass(frozen=True)
class PlannedText:
    """An automatic text to queue with the call, in the same transaction."""

    owner_id: str
    body: str
    due_at: float
    template: str = "default"


@dataclass(frozen=True)
class OutboxItem:
    id: int
    message_id: int
    conversation_id: int
    sender: str
    recipient: str
    body: str
    due_at: float
    attempts: int
    kind: str
    idempotency_key: str
    first_due_at: float
    last_error: str


@dataclass(frozen=True)
class Notice:
    """A short email to an owner or the admin, queued in `notices` before it is mailed."""

    name: str
    address: str
    subject: str
    body: str


@dataclass(frozen=True)
class InboundRecord:
    conversation_id: int
    message_id: int
    alert_id: int
    duplicate: bool


def _connect(path: Path) -> aiosqlite.Connection:
    """aiosqlite's connection, whose worker thread cannot keep the process alive.

    Since aiosqlite 0.22 that thread is not a daemon, so a store left open by
    a crash kept the interpreter from exiting, forever. Every commit is
    awaited before anything is acknowledged, and SQLite rolls back whatever
    was not committed, so nothing is lost by not waiting for the thread.
    """
    connection = aiosqlite.connect(path, isolation_level=None)
    # The thread starts when the connection is awaited; before 0.22 the connection was the thread.
    worker = getattr(connection, "_thread", connection)
    if isinstance(worker, threading.Thread):
        worker.daemon = True
    return connection


def _segments(body: str) -> int:
    return count_segments(body).segments


class StoreTooNew(RuntimeError):
    """The store's schema is newer than this textback knows: a downgrade, refused."""


def textback_version() -> str:
    try:
        return importlib.metadata.version("textback")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


async def _refuse_newer_schema(db: aiosqlite.Connection, path: Path) -> None:
    """Raise StoreTooNew, naming this textback and the one that wrote the store, when the
    store's schema is newer than MIGRATIONS. Reads only."""
    version = (await (await db.execute("PRAGMA user_version")).fetchone())[0]
    if version <= len(MIGRATIONS):
        return
    try:
        row = await (await db.execute("SELECT textback_version FROM written_by "
                                       "WHERE schema_version = ?", (version,))).fetchone()
    except aiosqlite.OperationalError:
        row = None
    writer = f"textback {row[0]}" if row else "a newer textback"
    raise StoreTooNew(
        f"{path} has schema {version}, written by {writer}; this is textback "
        f"{textback_version()}, which knows schema {len(MIGRATIONS)} at most. Nothing was "
        f"written. Install {writer.removeprefix('a ').replace('newer', 'the newer')} again: "
        f"a downgrade is not supported.")


class Store(WebStore, MediaRows):
    """One aiosqlite connection; writes are serialised by a lock and run as IMMEDIATE transactions."""

    def __init__(self, db: aiosqlite.Connection):
        self._db = db
        self._lock = asyncio.Lock()
        self.events_added = asyncio.Event()  # set when a commit carried webhook events
        self._emitted = False

    @classmethod
    async def open(cls, path: Path) -> "Store":
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await _connect(path)
        db.row_factory = aiosqlite.Row
        # First: journal_mode takes a lock, and a CLI command opening the database while the
        # daemon writes must wait for it rather than fail with "database is locked".
        await db.execute("PRAGMA busy_timeout=5000")
        try:  # before journal_mode or a migration: a store this textback cannot read is left as is
            await _refuse_newer_schema(db, path)
        except BaseException:
            await db.close()
            raise
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.create_function("text_segments", 1, _segments, deterministic=True)  # migrations
        store = cls(db)
        try:
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        """Close, refreshing the planner's statistics first where they have gone stale."""
        with contextlib.suppress(aiosqlite.Error):
            await self._db.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
            await self._db.execute("PRAGMA optimize")
        await self._db.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            else:
                await self._db.execute("COMMIT")
                if self._emitted:
                    self.events_added.set()
            finally:
                self._emitted = False

    async def _emit(self, event: Event) -> None:
        """Add a webhook event to the transaction under way: it commits, or not, with the change."""
        await self._db.execute(
            "INSERT INTO events (event_id, type, order_key, body, created_at) VALUES (?,?,?,?,?)",
            (event.id, event.type, event.order_key, event.body, event.at))
        self._emitted = True

    async def _ledger(self, fact: consent.Fact) -> None:
        """Append a consent fact to the transaction under way: it commits, or not, with the change."""
        await self._db.execute(
            f"INSERT INTO consent_ledger ({', '.join(consent.COLUMNS)}) VALUES (?,?,?,?,?,?,?,?)",
            fact.row())

    async def consent_record(self, number: str) -> list[dict[str, Any]]:
        """One number's consent ledger, in time order."""
        return [dict(r) for r in await self._all(
            "SELECT * FROM consent_ledger WHERE number = ? ORDER BY at, id", (number,))]

    async def _migrate(self) -> None:
        async with self._transaction() as db:
            version = (await (await db.execute("PRAGMA user_version")).fetchone())[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements(script):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {number}")
            recorded = await (await db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'written_by'")).fetchone()
            if version < len(MIGRATIONS) and recorded:  # absent only below its own migration
                await db.execute("INSERT OR REPLACE INTO written_by VALUES (?, ?, ?)",
                                 (len(MIGRATIONS), textback_version(), time.time()))
            if 0 < version < len(MIGRATIONS):
                # A store that already holds rows gets statistics for its new indexes at once:
                # without them the planner may prefer a scan (a new store gets them at close).
                await db.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
                await db.execute("ANALYZE")

    # A read runs to its end in one call to the connection's thread: a statement left open
    # between calls would pin an old snapshot, and a transaction another task begins on this
    # connection meanwhile could then not write ("database is locked" at once, no busy wait).

    async def _one(self, sql: str, args: tuple = ()) -> aiosqlite.Row | None:
        rows = await self._db.execute_fetchall(sql, args)
        return rows[0] if rows else None

    async def _all(self, sql: str, args: tuple = ()) -> list[aiosqlite.Row]:
        return list(await self._db.execute_fetchall(sql, args))

    # -- calls and automatic texts -------------------------------------------

    async def record_call(self, call: CallRow, text: PlannedText | None = None,
                          owner_id: str | None = None,
                          dedupe_since: float | None = None,
                          owner_reason: str = "fixed owner") -> int | None:
        """Store a finished call and, when given, queue its text. Returns the outbox id.

        A call already stored (same linkedid, e.g. replayed after a reconnect)
        is ignored, so a call can never queue two texts. Nothing is queued, and
        the call joins the caller's thread with the reason as its decision,
        when since `dedupe_since` the caller's conversation had an automatic
        text (`deduplicated`), or was open with any text in either direction
        (`open_conversation`: the owner and the homeowner are already talking).
        The checks and the insert share one transaction, so two calls ending
        at once cannot both queue.
        """
        now = time.time()
        async with self._transaction():
            if await self._one("SELECT 1 FROM calls WHERE linkedid = ?", (call.linkedid,)):
                return None
            conversation_id, was_open = None, False
            if call.caller and (text or owner_id):
                was_open = bool(await self._one(
                    "SELECT 1 FROM conversations WHERE caller = ? AND business_number = ?"
                    " AND status = 'open'", (call.caller, call.business_number)))
                conversation_id = await self._conversation(
                    call.caller, call.business_number, text.owner_id if text else owner_id, now,
                    owner_reason)
            if text is not None and dedupe_since is not None:
                withheld = await self._dedupe_reason(conversation_id, was_open, dedupe_since)
                if withheld:
                    text = None
                    call = dataclasses.replace(call, decision=withheld)
            message_id = outbox_id = None
            if text is not None:
                message_id, outbox_id = await self._queue(
                    conversation_id, call.business_number, call.caller, text.body, text.due_at, now,
                    template=text.template)
            await self._insert_call(call, conversation_id, message_id)
            await self._ledger_call(call, now)
            if conversation_id is not None:
                await self._summarise_call(conversation_id, call.outcome, call.caller_name)
            owner = conversation_id and await self._one(
                "SELECT owner_id FROM conversations WHERE id = ?", (conversation_id,))
            await self._emit(events.call_finished(
                linkedid=call.linkedid, conversation_id=conversation_id,
                business_number=call.business_number, caller=call.caller,
                caller_name=call.caller_name, started_at=call.started_at,
                answered_at=call.answered_at, ended_at=call.ended_at, outcome=call.outcome,
                reason=call.reason, decision=call.decision, recovered=call.recovered,
                owner_id=owner["owner_id"] if owner else None,
                text_queued=message_id is not None, at=now))
            return outbox_id

    async def _ledger_call(self, call: CallRow, now: float) -> None:
        """The call in the caller's consent record; a text withheld because they opted out too."""
        if not call.caller:
            return  # no number: nothing was or could be texted
        await self._ledger(consent.Fact(
            consent.CALL, call.caller, call.ended_at, call.business_number,
            "cdr" if call.recovered else "ami", detail={
                "linkedid": call.linkedid, "caller_raw": call.caller_raw,
                "started_at": call.started_at, "outcome": call.outcome, "reason": call.reason,
                "decision": call.decision}))
        if call.decision == "opted_out":
            await self._ledger(consent.Fact(
                consent.TEXT_REFUSED, call.caller, now, call.business_number, "", "auto",
                detail={"linkedid": call.linkedid, "why": "the number opted out"}))

    async def _insert_call(self, call: CallRow, conversation_id: int | None,
                           message_id: int | None) -> None:
        await self._db.execute(
            "INSERT INTO calls (linkedid, business_number, caller_raw, caller, caller_name,"
            " started_at, answered_at, ended_at, outcome, reason, decision, route, recovered,"
            " selftest, conversation_id, message_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (call.linkedid, call.business_number, call.caller_raw, call.caller,
             call.caller_name, call.started_at, call.answered_at, call.ended_at,
             call.outcome, call.reason, call.decision, call.route, int(call.recovered),
             int(call.selftest), conversation_id, message_id))

    async def record_selftest_call(self, call: CallRow, recipient: str | None,
                                   text: PlannedText | None) -> int | None:
        """Store a self-test's call and queue its text to `recipient`, in one transaction.

        Its conversation (with the recipient) is marked as a self-test and has
        no owner: no assignment, no round-robin turn, no scorecard. Returns
        the outbox id, or None when nothing was queued.
        """
        now = time.time()
        call = dataclasses.replace(call, selftest=True)
        async with self._transaction() as db:
            conversation_id = message_id = outbox_id = None
            if text is not None and recipient is not None:
                row = await self._one("SELECT id FROM conversations WHERE caller = ? AND"
                                      " business_number = ?", (recipient, call.business_number))
                if row is None:
                    cursor = await db.execute(
                        "INSERT INTO conversations (caller, business_number, owner_id, created_at,"
                        " updated_at, selftest) VALUES (?,?,'',?,?,1)",
                        (_canonical(recipient), call.business_number, now, now))
                    conversation_id = cursor.lastrowid
                else:
                    conversation_id = row["id"]
                message_id, outbox_id = await self._queue(
                    conversation_id, call.business_number, recipient, text.body, text.due_at, now,
                    kind=SELFTEST_KIND, template=text.template)
            await self._insert_call(call, conversation_id, message_id)
            return outbox_id

    async def replies_since(self, conversation_id: int, since: float) -> list[dict[str, Any]]:
        """The texts that came in on a conversation after `since`, with their alert's state."""
        rows = await self._all(
            "SELECT m.id, m.body, m.created_at, a.state AS alert_state, a.recipient AS alerted"
            " FROM messages m LEFT JOIN alerts a ON a.message_id = m.id WHERE m.conversation_id = ?"
            " AND m.direction = 'in' AND m.created_at >= ? ORDER BY m.created_at", (conversation_id, since))
        return [dict(r) for r in rows]

    async def outcomes_of(self, conversation_id: int) -> list[dict[str, Any]]:
        rows = await self._all("SELECT stage, value, at, source FROM outcomes WHERE"
                               " conversation_id = ? ORDER BY at", (conversation_id,))
        return [dict(r) for r in rows]

    async def outbox_row(self, outbox_id: int) -> dict[str, Any]:
        row = await self._one("SELECT * FROM outbox WHERE id = ?", (outbox_id,))
        return dict(row)

    async def cancel_text(self, outbox_id: int, why: str) -> bool:
        """End a text still waiting (pending) as failed, e.g. a self-test's after its run."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE outbox SET state = 'failed', last_error = ?, updated_at = ?"
                " WHERE id = ? AND state = 'pending' RETURNING message_id",
                (why, time.time(), outbox_id))
            row = await cursor.fetchone()
            if row is not None:
                await db.execute("UPDATE messages SET status = 'failed', error = ? WHERE id = ?",
                                 (why, row[0]))
            return row is not None

    # -- self-test runs ----------------------------------------------------------

    async def request_selftest(self, trigger: str) -> int:
        """A run for the daemon to pick up; `textback selftest` then waits for its result."""
        async with self._transaction() as db:
            cursor = await db.execute("INSERT INTO selftests (trigger, requested_at) VALUES (?,?)",
                                      (trigger, time.time()))
            return cursor.lastrowid

    async def claim_selftest(self) -> int | None:
        """The oldest requested run, now running; None when none waits."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE selftests SET state = 'running', started_at = ? WHERE id = ("
                " SELECT id FROM selftests WHERE state = 'requested' ORDER BY requested_at LIMIT 1)"
                " RETURNING id", (time.time(),))
            row = await cursor.fetchone()
            return row[0] if row else None

    async def finish_selftest(self, run_id: int, started_at: float, finished_at: float,
                              passed: bool, steps_json: str) -> None:
        """The run's result, and its selftest.finished event, in one commit."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE selftests SET state = 'done', started_at = ?, finished_at = ?, passed = ?,"
                " steps = ? WHERE id = ? RETURNING id, trigger, started_at, finished_at, steps",
                (started_at, finished_at, int(passed), steps_json, run_id))
            for row in await cursor.fetchall():
                await self._emit_selftest_finished(row)

    async def selftest_run(self, run_id: int) -> dict[str, Any] | None:
        row = await self._one("SELECT * FROM selftests WHERE id = ?", (run_id,))
        return dict(row) if row else None

    async def last_selftest(self) -> dict[str, Any] | None:
        """The latest finished self-test (started, finished, passed, steps as JSON), or None."""
        row = await self._one("SELECT * FROM selftests WHERE state = 'done'"
                              " ORDER BY finished_at DESC, id DESC LIMIT 1")
        return dict(row) if row else None

    async def abandon_selftests(self, why_json: str) -> list[int]:
        """Runs a stop interrupted (`running` at start-up) end as failed: none is left hanging."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE selftests SET state = 'done', passed = 0, finished_at = ?, steps = ?"
                " WHERE state = 'running' RETURNING id, trigger, started_at, finished_at, steps",
                (time.time(), why_json))
            rows = await cursor.fetchall()
            for row in rows:
                await self._emit_selftest_finished(row)
            return [row["id"] for row in rows]

    async def _emit_selftest_finished(self, row) -> None:
        report = Report.from_row(dict(row))
        await self._emit(events.selftest_finished(run_id=row["id"], trigger=row["trigger"],
                                                  report=report, at=report.finished_at))

    async def _dedupe_reason(self, conversation_id: int, was_open: bool, since: float) -> str | None:
        """Why a new automatic text to this conversation would be one too many, or None."""
        if await self._one("SELECT 1 FROM messages WHERE conversation_id = ? AND direction = 'out'"
                           " AND kind = 'auto' AND created_at >= ?", (conversation_id, since)):
            return "deduplicated"
        if was_open and await self._one("SELECT 1 FROM messages WHERE conversation_id = ?"
                                        " AND created_at >= ?", (conversation_id, since)):
            return "open_conversation"
        return None

    async def _conversation(self, caller: str, business_number: str, owner_id: str,
                            now: float, owner_reason: str) -> int:
        """The caller's conversation on this number; a new one belongs to `owner_id`."""
        row = await self._one(
            "SELECT id FROM conversations WHERE caller = ? AND business_number = ?",
            (caller, business_number))
        if row:
            await self._db.execute(
                "UPDATE conversations SET updated_at = ?, status = 'open', snoozed_until = NULL"
                " WHERE id = ?", (now, row["id"]))
            return row["id"]
        cursor = await self._db.execute(
            "INSERT INTO conversations (caller, business_number, owner_id, created_at, updated_at)"
            " VALUES (?,?,?,?,?)", (caller, business_number, owner_id, now, now))
        await self._db.execute(
            "INSERT INTO conversation_turns (business_number, started) VALUES (?, 1)"
            " ON CONFLICT (business_number) DO UPDATE SET started = started + 1", (business_number,))
        await self._db.execute(
            "INSERT INTO assignments (conversation_id, owner_id, at, reason) VALUES (?,?,?,?)",
            (cursor.lastrowid, owner_id, now, owner_reason))
        await self._index_contact(cursor.lastrowid)
        return cursor.lastrowid

    async def _queue(self, conversation_id: int, sender: str, recipient: str, body: str,
                     due_at: float, now: float, kind: str = "auto",
                     template: str = "", author: str = "", channel: str = "") -> tuple[int, int]:
        """A queued outbound message and its outbox row, and its fact in the consent ledger
        (`channel`: the path that wrote it); returns (message id, outbox id)."""
        _canonical(recipient)
        cursor = await self._db.execute(
            "INSERT INTO messages (conversation_id, direction, kind, template, body, segments,"
            " status, created_at, author) VALUES (?, 'out', ?, ?, ?, ?, 'queued', ?, ?)",
            (conversation_id, kind, template, body, _segments(body), now, author))
        message_id = cursor.lastrowid
        await self._summarise_message(conversation_id, message_id, "out", kind, body, now)
        if kind == "owner":  # a person answered: the homeowner's texts so far wait no more
            await self._db.execute("DELETE FROM waiting_texts WHERE conversation_id = ?",
                                   (conversation_id,))
        cursor = await self._db.execute(
            "INSERT INTO outbox (message_id, sender, recipient, due_at, first_due_at, idempotency_key,"
            " updated_at) VALUES (?,?,?,?,?,?,?)",
            (message_id, sender, recipient, due_at, due_at, uuid.uuid4().hex, now))
        await self._ledger(consent.Fact(
            consent.TEXT_QUEUED, recipient, now, sender, channel or _QUEUED_BY.get(kind, ""), kind,
            body, {"message_id": message_id, "outbox_id": cursor.lastrowid, "template": template,
                   "author": author, "due_at": due_at}))
        return message_id, cursor.lastrowid

    # -- the outbox --------------------------------------------------------------

    async def recover_interrupted(self) -> list[int]:
        """Rows a crash left in `sending`: mark them `unknown` rather than risk a second text."""
        async with self._transaction() as db:
            rows = await self._all("SELECT id, message_id FROM outbox WHERE state = 'sending'")
            for row in rows:
                await db.execute(
                    "UPDATE outbox SET state = 'unknown', updated_at = ?,"
                    " last_error = 'interrupted while sending; not re-sent' WHERE id = ?",
                    (time.time(), row["id"]))
                await db.execute("UPDATE messages SET status = 'unknown' WHERE id = ?",
                                 (row["message_id"],))
        return [row["id"] for row in rows]

    async def next_due(self) -> float | None:
        row = await self._one("SELECT MIN(due_at) AS due FROM outbox WHERE state = 'pending'")
        return row["due"] if row else None

    async def due(self, now: float, limit: int = 20) -> list[OutboxItem]:
        """Pending texts due by `now`, oldest first (by when they were first due)."""
        return await self._pending("o.due_at <= ? ORDER BY o.first_due_at, o.id LIMIT ?",
                                   (now, limit))

    async def first_due_before(self, cutoff: float) -> list[OutboxItem]:
        """Pending texts first due before `cutoff`: the ones that may be past their deadline."""
        return await self._pending("o.first_due_at < ? ORDER BY o.first_due_at, o.id", (cutoff,))

    async def _pending(self, where: str, args: tuple) -> list[OutboxItem]:
        rows = await self._all(
            "SELECT o.id, o.message_id, m.conversation_id, o.sender, o.recipient, m.body,"
            " o.due_at, o.attempts, m.kind, o.idempotency_key, o.first_due_at, o.last_error"
            " FROM outbox o JOIN messages m ON m.id = o.message_id"
            f" WHERE o.state = 'pending' AND {where}", args)
        return [OutboxItem(**dict(row)) for row in rows]

    async def bring_forward(self, now: float) -> int:
        """Make every text waiting out a retry delay due now (the link is back); returns how many."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE outbox SET due_at = ?, updated_at = ?"
                " WHERE state = 'pending' AND attempts > 0 AND due_at > ?", (now, time.time(), now))
            return cursor.rowcount

    async def expire(self, item: OutboxItem, gateway: str) -> bool:
        """pending -> expired; False if the row was claimed (or ended) meanwhile."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE outbox SET state = 'expired', updated_at = ? WHERE id = ? AND state = 'pending'",
                (time.time(), item.id))
            if cursor.rowcount != 1:
                return False
            await db.execute("UPDATE messages SET status = 'expired', gateway = ?, error = ?"
                             " WHERE id = ?", (gateway, item.last_error, item.message_id))
            await self._emit(_text_event(events.TEXT_FAILED, item, "expired", item.last_error))
            return True

    async def text_facts(self, message_id: int) -> dict[str, Any]:
        """Who a queued text was for, whose conversation it is, and the missed call it answered."""
        row = await self._one(
            "SELECT c.caller, c.business_number, c.owner_id, m.gateway, k.started_at AS call_at,"
            " k.ended_at AS call_ended_at,"
            " COALESCE(k.reason, '') AS call_reason, COALESCE(("
            "   SELECT caller_name FROM calls WHERE conversation_id = c.id AND caller_name != ''"
            "   ORDER BY started_at DESC LIMIT 1), '') AS caller_name"
            " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " LEFT JOIN calls k ON k.message_id = m.id WHERE m.id = ?", (message_id,))
        return dict(row)

    async def claim(self, outbox_id: int) -> bool:
        """pending -> sending; False if another worker (or an earlier run) already took it."""
        return bool(await self._claim_ids([outbox_id]))

    async def claim_all(self, items: list[OutboxItem]) -> list[OutboxItem]:
        """`claim` for many rows in one transaction; returns the ones this call took."""
        taken = await self._claim_ids([item.id for item in items]) if items else set()
        return [item for item in items if item.id in taken]

    async def _claim_ids(self, ids: list[int]) -> set[int]:
        marks = ",".join("?" * len(ids))
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = ?"
                f" WHERE id IN ({marks}) AND state = 'pending' RETURNING id", (time.time(), *ids))
            return {row[0] for row in await cursor.fetchall()}

    async def mark_sent(self, item: OutboxItem, gateway: str, gateway_id: str | None) -> None:
        await self.mark_all_sent([(item, gateway_id)], gateway)

    async def mark_all_sent(self, sent: list[tuple[OutboxItem, str | None]], gateway: str) -> None:
        """Texts the gateway accepted, with its id for each, in one transaction."""
        now = time.time()
        async with self._transaction() as db:
            await db.executemany("UPDATE outbox SET state = 'sent', updated_at = ? WHERE id = ?",
                                 [(now, item.id) for item, _ in sent])
            await db.executemany(
                "UPDATE messages SET status = 'sent', gateway = ?, gateway_id = ?, sent_at = ?,"
                " error = '' WHERE id = ?", [(gateway, gateway_id, now, item.message_id)
                                  for item, gateway_id in sent])
            for item, gateway_id in sent:
                await self._emit(_text_event(events.TEXT_SENT, item, "sent", "", now))
                await self._ledger(consent.Fact(
                    consent.TEXT_SENT, item.recipient, now, item.sender, gateway, item.kind,
                    item.body, {"message_id": item.message_id, "gateway_id": gateway_id}))

    async def hold(self, item: OutboxItem, until: float, why: str) -> bool:
        """A claimed text the homeowner's quiet hours hold: pending again, due (and first due,
        so its deadline counts from then) at `until`; the message shows `held` and why. False if
        the row was not this claim's."""
        now = time.time()
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE outbox SET state = 'pending', due_at = ?, first_due_at = ?, held_until = ?,"
                " attempts = attempts - 1, updated_at = ? WHERE id = ? AND state = 'sending'",
                (until, until, until, now, item.id))
            if cursor.rowcount != 1:
                return False
            await db.execute("UPDATE messages SET status = 'held', error = ? WHERE id = ?",
                             (why, item.message_id))
            await self._ledger(consent.Fact(
                consent.TEXT_HELD, item.recipient, now, item.sender, "", item.kind, item.body,
                {"message_id": item.message_id, "until": until, "why": why}))
            return True

    async def mark_retry(self, item: OutboxItem, due_at: float, error: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE outbox SET state = 'pending', due_at = ?, last_error = ?, updated_at = ?"
                " WHERE id = ?", (due_at, error, time.time(), item.id))

    async def mark_final(self, item: OutboxItem, state: str, gateway: str, error: str) -> None:
        """End a row that must not be retried: `failed`, or `unknown` (may have been sent)."""
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                "UPDATE outbox SET state = ?, last_error = ?, updated_at = ? WHERE id = ?",
                (state, error, now, item.id))
            await db.execute(
                "UPDATE messages SET status = ?, gateway = ?, error = ? WHERE id = ?",
                (state, gateway, error, item.message_id))
            await self._emit(_text_event(events.TEXT_FAILED, item, state, error, now))
            if state == "blocked":  # refused at the moment of sending: the number opted out
                await self._ledger(consent.Fact(
                    consent.TEXT_REFUSED, item.recipient, now, item.sender, gateway, item.kind,
                    item.body, {"message_id": item.message_id, "why": error}))

    async def update_delivery(self, gateway: str, gateway_id: str, status: str,
                              error_code: str | None) -> int | None:
        """Apply a delivery report; only ever moves forward (queued < sent < final).

        Returns the message's id, or None for an unknown message or a report older than
        what is stored.
        """
        rank = {"queued": 1, "sent": 2, "delivered": 3, "undelivered": 3, "failed": 3}
        async with self._transaction() as db:
            row = await self._one(
                "SELECT m.id, m.status, m.conversation_id, m.body, m.kind, o.sender, o.recipient"
                " FROM messages m JOIN outbox o ON o.message_id = m.id"
                " WHERE m.gateway = ? AND m.gateway_id = ? AND m.direction = 'out'",
                (gateway, gateway_id))
            if row is None or rank.get(status, 0) <= rank.get(row["status"], 0):
                return None
            error = f"provider error {error_code}" if error_code else None
            await db.execute(
                "UPDATE messages SET status = ?, error = COALESCE(?, error) WHERE id = ?",
                (status, error, row["id"]))
            kind = {"delivered": events.TEXT_DELIVERED, "undelivered": events.TEXT_FAILED,
                    "failed": events.TEXT_FAILED}.get(status)
            if kind is not None:
                await self._emit(events.text_event(
                    kind, message_id=row["id"], conversation_id=row["conversation_id"],
                    sender=row["sender"], recipient=row["recipient"], body=row["body"],
                    text_kind=row["kind"], status=status, error=error or "", at=time.time()))
            return row["id"]

    async def sent_text(self, message_id: int) -> OutboxItem | None:
        """A text the gateway took, as its outbox row, with the error its delivery report gave."""
        row = await self._one(
            "SELECT o.id, o.message_id, m.conversation_id, o.sender, o.recipient, m.body,"
            " o.due_at, o.attempts, m.kind, o.idempotency_key, o.first_due_at,"
            " m.error AS last_error FROM outbox o JOIN messages m ON m.id = o.message_id"
            " WHERE o.message_id = ?", (message_id,))
        return OutboxItem(**dict(row)) if row else None

    # -- owners: reply tokens, assignment, outcomes ---------------------------------

    async def reply_token(self, conversation_id: int, owner_id: str, ttl: float,
                          quoted: tuple[str, ...] = ()) -> str:
        """A new unguessable token for reply+TOKEN@domain, bound to one conversation and owner,
        and to what the email carrying it showed (`quoted`, stripped from a reply to it)."""
        token = base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO reply_tokens (token, conversation_id, owner_id, created_at, expires_at,"
                " quoted) VALUES (?,?,?,?,?,?)",
                (token, conversation_id, owner_id, now, now + ttl, json.dumps(list(quoted))))
        return token

    async def token(self, token: str, now: float) -> dict[str, Any] | None:
        """The live binding of a token, or None when unknown or expired; `quoted` is a tuple."""
        row = await self._one(
            "SELECT t.conversation_id, t.owner_id, c.caller, c.business_number, t.quoted"
            " FROM reply_tokens t JOIN conversations c ON c.id = t.conversation_id"
            " WHERE t.token = ? AND t.expires_at > ?", (token, now))
        return {**dict(row), "quoted": tuple(json.loads(row["quoted"]))} if row else None

    async def assign(self, conversation_id: int, owner_id: str, reason: str,
                     expected_state: int | None = None) -> None:
        """A person gives the conversation to an owner (the inbox's Unassigned no longer lists it).

        With `expected_state`, raises StaleState (nothing changed) unless the conversation's
        state_version is still that one."""
        now = time.time()
        async with self._transaction() as db:
            await self._expect_state(conversation_id, expected_state)
            before = await self._one("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
            await db.execute("UPDATE conversations SET owner_id = ?, claimed = 1,"
                             f" version = {NEXT_VERSION} WHERE id = ?", (owner_id, conversation_id))
            await db.execute(
                "INSERT INTO assignments (conversation_id, owner_id, at, reason) VALUES (?,?,?,?)",
                (conversation_id, owner_id, now, reason))
            await self._emit(events.conversation_assigned(
                conversation_id=conversation_id, caller=before["caller"],
                business_number=before["business_number"], owner_id=owner_id,
                previous_owner_id=before["owner_id"], reason=reason, at=now))

    async def record_outcome(self, conversation_id: int, stage: str, value: float | None,
                             source: str, external_ref: str | None = None,
                             expected_state: int | None = None) -> None:
        """Add an outcome; `external_ref` (the CRM's deal id, say) is kept on the conversation.
        `expected_state`: as for assign."""
        now = time.time()
        async with self._transaction() as db:
            await self._expect_state(conversation_id, expected_state)
            await db.execute(
                "INSERT INTO outcomes (conversation_id, stage, value, at, source) VALUES (?,?,?,?,?)",
                (conversation_id, stage, value, now, source))
            if external_ref is not None:
                await db.execute("UPDATE conversations SET external_ref = ? WHERE id = ?",
                                 (external_ref, conversation_id))
            if stage in ("won", "lost", "spam"):
                await db.execute("UPDATE conversations SET status = 'closed', unread = 0,"
                                 f" version = {NEXT_VERSION} WHERE id = ?", (conversation_id,))
            else:
                await self._changed(conversation_id)
            conversation = await self._one("SELECT * FROM conversations WHERE id = ?",
                                           (conversation_id,))
            await self._emit(events.outcome_changed(
                conversation_id=conversation_id, caller=conversation["caller"],
                business_number=conversation["business_number"], stage=stage, value=value,
                source=source, external_ref=conversation["external_ref"], at=now))

    async def waiting_replies(self, older_than: float,
                              escalated_fewer_than: int | None = None) -> list[dict[str, Any]]:
        """Open conversations whose latest homeowner text, sent before `older_than`, has no
        owner answer after it; with how many escalations that text has had (only those
        escalated fewer than `escalated_fewer_than` times, when given).

        Read from `waiting_texts`, kept in the transactions that store a homeowner's text,
        an owner's answer and an escalation, so the cost follows the texts waiting (for
        escalation, those it may still escalate), not the history (CROSS JOIN: the planner
        must start there, whatever its statistics say, not with a range of all messages).
        """
        # Literal bounds, so the partial index of the texts escalated fewer than twice serves.
        below = ("" if escalated_fewer_than is None else
                 f" AND w.escalations < 2 AND w.escalations < {min(int(escalated_fewer_than), 2)}")
        rows = await self._all(
            "SELECT c.id AS conversation_id, c.caller, c.business_number, c.owner_id,"
            " m.id AS message_id, m.created_at, m.body, w.escalations AS escalated,"
            " (SELECT MAX(e.at) FROM escalations e WHERE e.message_id = m.id) AS escalated_at"
            " FROM waiting_texts w CROSS JOIN conversations c ON c.id = w.conversation_id"
            " CROSS JOIN messages m ON m.id = w.message_id"
            f" WHERE m.created_at < ? AND c.status = 'open' AND c.selftest = 0{below}",
            (older_than,))
        media = await self.media_of(r["message_id"] for r in rows)
        # `listed`: the text as a list shows it, "2 photos" or "(empty text)" when it has no words
        return [dict(r) | {"listed": summary(r["body"], shown_items(media[r["message_id"]]))}
                for r in rows]

    async def record_escalation(self, message_id: int, level: int, owner_id: str,
                                notice: Notice) -> int | None:
        """Note that a text was escalated and queue its notice, in one transaction.

        Returns the notice id, or None (nothing queued) if this level was already done: the
        escalation's row is its claim, so no two workers escalate one text twice.
        """
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO escalations (message_id, level, owner_id, at) VALUES (?,?,?,?)",
                (message_id, level, owner_id, time.time()))
            if cursor.rowcount != 1:
                return None
            await db.execute("UPDATE waiting_texts SET escalations = escalations + 1"
                             " WHERE message_id = ?", (message_id,))
            return await self._insert_notice(notice)

    async def set_contact(self, conversation_id: int, name: str | None, kind: str | None,
                          source: str, expected_state: int | None = None) -> None:
        """Name or class the caller of a conversation (a CRM knows them better than caller ID).

        The class goes where the inbox's contact panel keeps it, so the rules apply it from
        the caller's next call whoever set it; the name goes on each of the caller's
        conversations and into their search rows.
        """
        async with self._transaction() as db:
            await self._expect_state(conversation_id, expected_state)
            caller = (await self._one("SELECT caller FROM conversations WHERE id = ?",
                                      (conversation_id,)))["caller"]
            if kind is not None:
                await self._keep_contact_class(caller, kind, source)
            if name is not None:
                ids = [row["id"] for row in await self._all(
                    "SELECT id FROM conversations WHERE caller = ?", (caller,))]
                await db.execute(f"UPDATE conversations SET contact_name = ?, version = {NEXT_VERSION}"
                                 " WHERE caller = ?", (name, caller))
                for each in ids:
                    await self._index_contact(each)

    # -- API tokens and idempotent writes ---------------------------------------------

    async def add_token(self, name: str, scope: str, token_hash: str, prefix: str) -> int:
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO api_tokens (name, scope, hash, prefix, created_at) VALUES (?,?,?,?,?)",
                (name, scope, token_hash, prefix, time.time()))
            return cursor.lastrowid

    async def api_tokens(self) -> list[dict[str, Any]]:
        """Every token, without its hash: name, scope, prefix, created, revoked."""
        rows = await self._all("SELECT id, name, scope, prefix, created_at, revoked_at"
                               " FROM api_tokens ORDER BY id")
        return [dict(r) for r in rows]

    async def revoke_token(self, name: str) -> int:
        """Revoke the live tokens called `name`; how many."""
        async with self._transaction() as db:
            cursor = await db.execute("UPDATE api_tokens SET revoked_at = ? WHERE name = ?"
                                      " AND revoked_at IS NULL", (time.time(), name))
            return cursor.rowcount

    async def live_token(self, token_hash: str) -> dict[str, Any] | None:
        row = await self._one("SELECT id, name, scope FROM api_tokens WHERE hash = ?"
                              " AND revoked_at IS NULL", (token_hash,))
        return dict(row) if row else None

    async def idempotent_answer(self, token_id: int, key: str) -> dict[str, Any] | None:
        row = await self._one("SELECT fingerprint, status, response FROM api_idempotency"
                              " WHERE token_id = ? AND key = ?", (token_id, key))
        return dict(row) if row else None

    async def keep_idempotent_answer(self, token_id: int, key: str, fingerprint: str,
                                     status: int, response: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO api_idempotency (token_id, key, fingerprint, status,"
                " response, created_at) VALUES (?,?,?,?,?,?)",
                (token_id, key, fingerprint, status, response, time.time()))

    # -- opt-outs --------------------------------------------------------------------

    async def is_suppressed(self, number: str) -> bool:
        return await self._one("SELECT 1 FROM suppressions WHERE number = ?", (number,)) is not None

    async def suppress(self, number: str, source: str, business_number: str = "") -> bool:
        """Put a number on the suppression list, for every business number and every kind of
        text (revoke-all); False if it already was. `source` is the channel the request came
        through (sms, web:USER, api:TOKEN, cli), kept in the consent ledger."""
        _canonical(number)
        now = time.time()
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO suppressions (number, since, source) VALUES (?,?,?)",
                (number, now, source))
            if cursor.rowcount != 1:
                return False
            await self._emit(events.optout_changed(number=number, opted_out=True, source=source,
                                                   at=now))
            await self._ledger(consent.Fact(consent.OPTED_OUT, number, now, business_number,
                                            source))
            return True

    async def unsuppress(self, number: str, source: str, business_number: str = "") -> bool:
        """Take a number off the suppression list; False if it was not on it."""
        _canonical(number)
        now = time.time()
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM suppressions WHERE number = ?", (number,))
            if cursor.rowcount != 1:
                return False
            await self._emit(events.optout_changed(number=number, opted_out=False, source=source,
                                                   at=now))
            await self._ledger(consent.Fact(consent.OPTED_IN, number, now, business_number,
                                            source))
            return True

    async def refuse_text(self, recipient: str, business_number: str, kind: str, body: str,
                          channel: str, why: str = "the number opted out") -> None:
        """Keep in the consent ledger a text refused before it was queued (a reply written to a
        number that opted out, through the inbox, the API, email or the CLI)."""
        async with self._transaction():
            await self._ledger(consent.Fact(consent.TEXT_REFUSED, _canonical(recipient),
                                            time.time(), business_number, channel, kind, body,
                                            {"why": why}))

    async def suppressions(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._all("SELECT * FROM suppressions ORDER BY since")]

    async def queue_test_text(self, recipient: str, business_number: str, owner_id: str,
                              body: str) -> int:
        """Queue a test text (`textback test-text`) in the recipient's conversation, due now."""
        now = time.time()
        async with self._transaction():
            conversation_id = await self._conversation(recipient, business_number, owner_id, now,
                                                       "test text")
            _, outbox_id = await self._queue(conversation_id, business_number, recipient, body, now,
                                             now, kind="test", channel="cli")
            return outbox_id

    async def queue_reply(self, conversation_id: int, sender: str, recipient: str, body: str,
                          kind: str, author: str = "", channel: str = "") -> int:
        """Queue a text in an existing conversation, due now (confirmations, help, owner replies);
        `author` is the signed-in owner who wrote it in the web inbox; `channel` the path it
        came by (email:OWNER, web:USER, api:TOKEN, cli), kept in the consent ledger."""
        now = time.time()
        async with self._transaction():
            _, outbox_id = await self._queue(conversation_id, sender, recipient, body, now, now,
                                             kind, author=author, channel=channel)
            return outbox_id

    # -- inbound texts and owner alerts ------------------------------------------

    async def record_inbound(self, caller: str, business_number: str, body: str,
                             gateway: str, gateway_id: str | None,
                             owner_for_new: str, owner_reason: str = "fixed owner",
                             display_name: str = "", keyword: str = "",
                             media: Sequence[NewMedia] = (),
                             media_link: Callable[[int, float], str | None] | None = None
                             ) -> InboundRecord:
        """Commit a homeowner's text and the owner alert it needs, in one transaction.

        A message whose gateway id was already stored (a provider retrying a
        webhook, a carrier re-sending a SIP MESSAGE) is recognised and not
        stored or alerted twice. Without a gateway id, a text is the same
        message again when the caller's latest text on this number through
        this gateway also had none, has the same words, and came at most
        REPEAT_WITHOUT_ID_SECONDS ago (STOP, START, STOP is three texts). The display
        name the sender's address carried becomes the contact name if the
        conversation has none yet. The text's media rows are inserted in the same
        transaction (a photo-only text has an empty body and its media); `media_link` makes
        the signed link its reply.received event gives for each. A `keyword` the text carries
        (STOP, START, HELP, STOP as free text) goes into the consent ledger with it.
        """
        _canonical(caller)
        now = time.time()
        async with self._transaction() as db:
            if gateway_id:
                row = await self._one(
                    "SELECT m.id, m.conversation_id, a.id AS alert_id FROM messages m"
                    " LEFT JOIN alerts a ON a.message_id = m.id"
                    " WHERE m.gateway = ? AND m.gateway_id = ? AND m.direction = 'in'",
                    (gateway, gateway_id))
            else:
                row = await self._one(
                    "SELECT m.id, m.conversation_id, a.id AS alert_id, m.body, m.gateway_id,"
                    " m.created_at FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                    " LEFT JOIN alerts a ON a.message_id = m.id"
                    " WHERE c.caller = ? AND c.business_number = ? AND m.direction = 'in'"
                    " AND m.gateway = ? ORDER BY m.created_at DESC, m.id DESC LIMIT 1",
                    (caller, business_number, gateway))
                if row and (row["gateway_id"] is not None or row["body"] != body
                            or row["created_at"] < now - REPEAT_WITHOUT_ID_SECONDS):
                    row = None
            if row:
                return InboundRecord(row["conversation_id"], row["id"], row["alert_id"], True)
            conversation_id = await self._conversation(caller, business_number, owner_for_new, now,
                                                       owner_reason)
            if display_name:
                cursor = await db.execute("UPDATE conversations SET contact_name = ?"
                                          " WHERE id = ? AND contact_name = ''",
                                          (display_name, conversation_id))
                if cursor.rowcount:
                    await self._index_contact(conversation_id)
            cursor = await db.execute(
                "INSERT INTO messages (conversation_id, direction, body, segments, status, gateway,"
                " gateway_id, created_at) VALUES (?, 'in', ?, ?, 'received', ?, ?, ?)",
                (conversation_id, body, _segments(body), gateway, gateway_id, now))
            message_id = cursor.lastrowid
            await self._insert_media(db, message_id, media, now)
            if keyword:
                await self._ledger(consent.Fact(consent.KEYWORD, caller, now, business_number,
                                                "sms", keyword, body, {"message_id": message_id,
                                                                       "gateway": gateway}))
            listed = summary(body, [Shown(None if item.sha256 and not item.shown
                                          else kind_of(item.declared_type)) for item in media])
            await self._summarise_message(conversation_id, message_id, "in", "", listed, now)
            await db.execute(
                "INSERT INTO waiting_texts (conversation_id, message_id) VALUES (?,?)"
                " ON CONFLICT (conversation_id) DO UPDATE SET message_id = excluded.message_id,"
                " escalations = 0",
                (conversation_id, message_id))
            owner = await self._one("SELECT owner_id FROM conversations WHERE id = ?",
                                    (conversation_id,))
            cursor = await db.execute(
                "INSERT INTO alerts (conversation_id, message_id, owner_id, created_at)"
                " VALUES (?,?,?,?)", (conversation_id, message_id, owner["owner_id"], now))
            contact = await self._one("SELECT contact_name FROM conversations WHERE id = ?",
                                      (conversation_id,))
            listed_media = [
                {"id": row["id"], "content_type": row["declared_type"],
                 "size": row["declared_size"],
                 "url": media_link(row["id"], now) if media_link else None}
                for row in await self._all("SELECT id, declared_type, declared_size FROM media"
                                           " WHERE message_id = ? ORDER BY position", (message_id,))]
            await self._emit(events.reply_received(
                message_id=message_id, conversation_id=conversation_id, caller=caller,
                business_number=business_number, body=body, contact_name=contact["contact_name"],
                owner_id=owner["owner_id"], at=now, media=listed_media))
            return InboundRecord(conversation_id, message_id, cursor.lastrowid, False)

    async def record_unroutable(self, sender_raw: str, recipient: str, body: str,
                                gateway: str, gateway_id: str | None) -> bool:
        """Keep a text that cannot be threaded; True if it is the first from that sender.

        Its sender holds no phone number, or it was sent to a number that is not
        the business's. It is never threaded, answered or suppressed: there is no
        number to do it to. A provider's retry (same gateway id) is stored once.
        """
        async with self._transaction() as db:
            seen = await self._one("SELECT 1 FROM unroutable_texts WHERE sender_raw = ? LIMIT 1",
                                   (sender_raw,))
            await db.execute(
                "INSERT OR IGNORE INTO unroutable_texts (sender_raw, recipient, body, gateway,"
                " gateway_id, received_at) VALUES (?,?,?,?,?,?)",
                (sender_raw, recipient, body, gateway, gateway_id, time.time()))
            return seen is None

    async def mark_alert(self, alert_id: int, state: str, recipient: str = "",
                         subject: str = "", error: str = "") -> None:
        """End a claimed alert: `sent` (to whom, with what subject) or `failed` for good."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE alerts SET state = ?, recipient = ?, subject = ?, last_error = ?,"
                " sent_at = CASE WHEN ? = 'sent' THEN ? END WHERE id = ? AND state = 'sending'",
                (state, recipient, subject, error, state, time.time(), alert_id))

    # -- emails: owner alerts and notices --------------------------------------------
    #
    #   pending --claim--> sending --> sent | failed
    #      ^                  |
    #      +---- retry_at ----+          (sending at start-up --> pending: mailed again)
    #
    # A row left in `sending` by a crash is mailed again rather than marked unknown as a
    # text would be: a second copy of an email to the business's own people costs a glance,
    # a missing one can cost the lead, and a relay that never answered 250 has not taken it.

    async def queue_notice(self, name: str, address: str, subject: str, body: str,
                           unless_since: float | None = None) -> int | None:
        """Commit a notice to mail; the caller then tries it (claim_mail) or the worker does.

        With `unless_since`, nothing is queued (None) if the same address already had a notice
        with the same subject queued since then: checked and inserted in one transaction, so
        it holds across workers and restarts.
        """
        async with self._transaction():
            if unless_since is not None and await self._one(
                    "SELECT 1 FROM notices WHERE address = ? AND subject = ? AND created_at >= ?",
                    (address, subject, unless_since)):
                return None
            return await self._insert_notice(Notice(name, address, subject, body))

    async def _insert_notice(self, notice: Notice) -> int:
        cursor = await self._db.execute(
            "INSERT INTO notices (name, address, subject, body, created_at) VALUES (?,?,?,?,?)",
            (notice.name, notice.address, notice.subject, notice.body, time.time()))
        return cursor.lastrowid

    async def due_mail(self, table: str, now: float, limit: int = 20) -> list[int]:
        """Ids of the rows of `table` waiting to be mailed whose retry time has come."""
        rows = await self._all(f"SELECT id FROM {_mail_table(table)} WHERE state = 'pending'"
                               " AND retry_at <= ? ORDER BY id LIMIT ?", (now, limit))
        return [row["id"] for row in rows]

    async def next_mail_retry(self, table: str) -> float | None:
        row = await self._one(f"SELECT MIN(retry_at) AS at FROM {_mail_table(table)}"
                              " WHERE state = 'pending'")
        return row["at"] if row else None

    async def claim_mail(self, table: str, row_id: int, now: float) -> dict[str, Any] | None:
        """pending -> sending, counting the attempt; the row, or None if another worker has it
        (or it is not due). Only the claimant mails it, so no email goes out twice."""
        table = _mail_table(table)
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE {table} SET state = 'sending', attempts = attempts + 1"
                " WHERE id = ? AND state = 'pending' AND retry_at <= ?", (row_id, now))
            if cursor.rowcount != 1:
                return None
            return dict(await self._one(f"SELECT * FROM {table} WHERE id = ?", (row_id,)))

    async def retry_mail(self, table: str, row_id: int, retry_at: float, error: str) -> None:
        """A claimed row that could not be mailed: pending again from `retry_at`."""
        async with self._transaction() as db:
            await db.execute(
                f"UPDATE {_mail_table(table)} SET state = 'pending', retry_at = ?, last_error = ?"
                " WHERE id = ? AND state = 'sending'", (retry_at, error, row_id))

    async def mark_notice(self, notice_id: int, state: str, error: str = "") -> None:
        """End a claimed notice: `sent`, or `failed` for good."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE notices SET state = ?, last_error = ?,"
                " sent_at = CASE WHEN ? = 'sent' THEN ? END WHERE id = ? AND state = 'sending'",
                (state, error, state, time.time(), notice_id))

    async def recover_interrupted_mail(self) -> dict[str, list[int]]:
        """Rows a crash left in `sending`, per table: pending again, to be mailed again."""
        recovered = {}
        async with self._transaction() as db:
            for table in MAIL_TABLES:
                rows = await self._all(f"SELECT id FROM {table} WHERE state = 'sending'")
                await db.execute(
                    f"UPDATE {table} SET state = 'pending', retry_at = 0,"
                    " last_error = 'interrupted while mailing; mailed again' WHERE state = 'sending'")
                recovered[table] = [row["id"] for row in rows]
        return recovered

    async def notices(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._all("SELECT * FROM notices ORDER BY id")]

    # -- webhook deliveries ------------------------------------------------------------
    #
    #   events --fan_out (per endpoint, from its cursor)--> event_deliveries
    #   pending --claim--> sending --> delivered
    #      ^                  |
    #      +---- retry_at ----+          (sending at start-up --> pending: sent again)
    #   pending past max_age --> expired (the admin is emailed)
    #
    # Deliveries are at least once: a row left in `sending` by a crash is sent again under the
    # same event id, which the receiver dedupes on. Of one endpoint's deliveries sharing an
    # order key (a conversation, a number), only the oldest unfinished one is ever due.

    async def fan_out(self, endpoints: dict[str, tuple[str, ...]], since: float) -> int:
        """Create the deliveries of events new to each endpoint (of the types it takes); an
        endpoint seen for the first time gets the events since `since`. Returns how many."""
        now, created = time.time(), 0
        if not await self._behind(endpoints):
            return 0  # the common case, read without taking the write lock
        async with self._transaction() as db:
            last = (await self._one("SELECT MAX(id) AS id FROM events"))["id"] or 0
            for name, types in endpoints.items():
                cursor_name = f"webhooks.cursor.{name}"
                cursor = await self.progress(cursor_name)
                if cursor is None or cursor < last:
                    marks = ",".join("?" * len(types))
                    inserted = await db.execute(
                        "INSERT OR IGNORE INTO event_deliveries (event, endpoint, order_key,"
                        " updated_at) SELECT id, ?, order_key, ? FROM events"
                        f" WHERE id > ? AND id <= ? AND type IN ({marks}) AND created_at >= ?"
                        " ORDER BY id",
                        (name, now, cursor or 0, last, *types, since if cursor is None else 0))
                    created += inserted.rowcount
                    await db.execute(
                        "INSERT INTO progress (name, value) VALUES (?, ?) ON CONFLICT (name)"
                        " DO UPDATE SET value = excluded.value", (cursor_name, last))
        return created

    async def _behind(self, endpoints: dict[str, tuple[str, ...]]) -> bool:
        """Has any endpoint's cursor an event after it (or none yet)?"""
        last = (await self._one("SELECT MAX(id) AS id FROM events"))["id"] or 0
        for name in endpoints:
            cursor = await self.progress(f"webhooks.cursor.{name}")
            if cursor is None or cursor < last:
                return True
        return False

    async def recover_interrupted_deliveries(self) -> int:
        """Deliveries a crash left in `sending`: pending again, to be sent again (same id)."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE event_deliveries SET state = 'pending', retry_at = 0, updated_at = ?,"
                " last_error = 'interrupted while sending; sent again' WHERE state = 'sending'",
                (time.time(),))
            return cursor.rowcount

    async def due_deliveries(self, endpoint: str, now: float, limit: int) -> list[dict[str, Any]]:
        """An endpoint's deliveries due now, oldest event first, each the head of its order key."""
        rows = await self._all(
            "SELECT d.id, d.attempts, e.event_id, e.type, e.body, e.created_at"
            " FROM event_deliveries d JOIN events e ON e.id = d.event"
            " WHERE d.endpoint = ? AND d.state = 'pending' AND d.retry_at <= ?"
            " AND NOT EXISTS (SELECT 1 FROM event_deliveries p WHERE p.endpoint = d.endpoint"
            "   AND p.order_key = d.order_key AND p.state IN ('pending', 'sending')"
            "   AND p.event < d.event)"
            " ORDER BY d.event LIMIT ?", (endpoint, now, limit))
        return [dict(r) for r in rows]

    async def next_delivery_retry(self) -> float | None:
        row = await self._one("SELECT MIN(retry_at) AS at FROM event_deliveries"
                              " WHERE state = 'pending'")
        return row["at"] if row else None

    async def claim_delivery(self, delivery_id: int) -> bool:
        """pending -> sending, counting the try; False if it is not pending any more."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE event_deliveries SET state = 'sending', attempts = attempts + 1,"
                " updated_at = ? WHERE id = ? AND state = 'pending'", (time.time(), delivery_id))
            return cursor.rowcount == 1

    async def end_delivery(self, delivery_id: int, status: int | None, error: str,
                           retry_at: float | None) -> None:
        """A claimed delivery's try ended: delivered (`retry_at` None) or pending again."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE event_deliveries SET state = ?, retry_at = COALESCE(?, retry_at),"
                " last_status = ?, last_error = ?, updated_at = ? WHERE id = ? AND state = 'sending'",
                ("delivered" if retry_at is None else "pending", retry_at, status, error,
                 time.time(), delivery_id))

    async def expire_deliveries(self, created_before: float) -> list[dict[str, Any]]:
        """Pending deliveries of events older than `created_before` become `expired`; those rows."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE event_deliveries SET state = 'expired', updated_at = ?"
                " WHERE state = 'pending' AND event IN (SELECT id FROM events WHERE created_at < ?)"
                " RETURNING id", (time.time(), created_before))
            ids = [row[0] for row in await cursor.fetchall()]
        return await self.delivery_log(ids=ids) if ids else []

    async def record_test_delivery(self, event: Event, endpoint: str, status: int | None,
                                   error: str, delivered: bool) -> None:
        """Keep a test event's one try in the delivery log (it is never queued or retried)."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO events (event_id, type, order_key, body, created_at) VALUES (?,?,?,?,?)",
                (event.id, event.type, event.order_key, event.body, event.at))
            await db.execute(
                "INSERT INTO event_deliveries (event, endpoint, order_key, state, attempts,"
                " last_status, last_error, updated_at) VALUES (?,?,?,?,1,?,?,?)",
                (cursor.lastrowid, endpoint, event.order_key,
                 "delivered" if delivered else "failed", status, error, time.time()))

    async def delivery_log(self, limit: int = 50, endpoint: str | None = None,
                           ids: list[int] | None = None) -> list[dict[str, Any]]:
        """Deliveries, newest event first: endpoint, event, state, tries, last status and error."""
        where, args = ["1"], []
        if endpoint is not None:
            where.append("d.endpoint = ?")
            args.append(endpoint)
        if ids is not None:
            where.append(f"d.id IN ({','.join('?' * len(ids))})")
            args += ids
        rows = await self._all(
            "SELECT d.id, d.endpoint, e.event_id, e.type, e.created_at, d.state, d.attempts,"
            " d.last_status, d.last_error, d.updated_at FROM event_deliveries d"
            f" JOIN events e ON e.id = d.event WHERE {' AND '.join(where)}"
            " ORDER BY d.event DESC, d.id DESC LIMIT ?", (*args, limit if ids is None else len(ids)))
        return [dict(r) for r in rows]

    async def prune_events(self, before: float) -> int:
        """Forget events older than `before` whose deliveries have all ended (or that had none)."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM events WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM"
                " event_deliveries d WHERE d.event = events.id AND d.state IN ('pending', 'sending'))",
                (before,))
            return cursor.rowcount

    # -- reading -------------------------------------------------------------------

    async def conversation(self, conversation_id: int) -> dict[str, Any] | None:
        row = await self._one("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
        return dict(row) if row else None

    async def conversation_history(self, conversation_id: int) -> dict[str, list[dict[str, Any]]]:
        calls = await self._all(
            "SELECT * FROM calls WHERE conversation_id = ? ORDER BY started_at", (conversation_id,))
        messages = await self._all(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY created_at, id",
            (conversation_id,))
        return {"calls": [dict(r) for r in calls], "messages": [dict(r) for r in messages]}

    async def inbox(self, limit: int = 50) -> list[dict[str, Any]]:
        """Open conversations: unanswered replies first (oldest waiting first), then the newest.

        The web inbox's query (`inbox_page`, view "open"), with the columns `textback inbox` shows.
        """
        rows = await self.inbox_page("open", now=time.time(), limit=limit)
        return [{key: row[key] for key in CLI_INBOX_COLUMNS} | {"unanswered": bool(row["unanswered"])}
                for row in rows]

    async def recent_auto_texts(self, now: float, prefix: str) -> tuple[int, int, int]:
        """Automatic texts queued in the last hour, the last day, and the last hour to `prefix`."""
        row = await self._one(
            "SELECT SUM(m.created_at >= ?) AS hour, COUNT(*) AS day,"
            " SUM(m.created_at >= ? AND o.recipient LIKE ? || '%') AS prefix"
            " FROM messages m JOIN outbox o ON o.message_id = m.id"
            " WHERE m.kind = 'auto' AND m.created_at >= ?",
            (now - 3600, now - 3600, prefix, now - 86400))
        return row["hour"] or 0, row["day"] or 0, row["prefix"] or 0

    async def conversations_started(self, business_number: str) -> int:
        """How many conversations this number has had: the turn for round-robin assignment."""
        row = await self._one("SELECT started FROM conversation_turns WHERE business_number = ?",
                              (business_number,))
        return row["started"] if row else 0

    async def conversation_for(self, caller: str, business_number: str | None = None
                               ) -> dict[str, Any] | None:
        """A caller's most recently active conversation (on one business number, if given)."""
        if business_number:
            row = await self._one("SELECT * FROM conversations WHERE caller = ? AND"
                                  " business_number = ?", (caller, business_number))
        else:
            row = await self._one("SELECT * FROM conversations WHERE caller = ?"
                                  " ORDER BY updated_at DESC LIMIT 1", (caller,))
        return dict(row) if row else None

    async def timeline(self, caller: str) -> list[dict[str, Any]]:
        """Everything that happened with one caller, oldest first: calls, texts, alerts; a
        homeowner's text lists its media (type, size, state)."""
        rows = await self._all(
            "SELECT 'call' AS kind, started_at AS at, business_number, outcome AS status,"
            "  reason AS detail, '' AS body, caller_name AS extra, '' AS gateway,"
            "  NULL AS message_id FROM calls WHERE caller = ?"
            " UNION ALL"
            " SELECT CASE m.direction WHEN 'in' THEN 'text_in' ELSE 'text_out' END,"
            "  COALESCE(m.sent_at, m.created_at), c.business_number, m.status, m.error,"
            "  m.body, COALESCE(m.gateway_id, ''), m.gateway, m.id FROM messages m"
            "  JOIN conversations c ON c.id = m.conversation_id WHERE c.caller = ?"
            " UNION ALL"
            " SELECT 'alert', COALESCE(a.sent_at, a.created_at), c.business_number, a.state,"
            "  a.recipient, a.subject, a.owner_id, '', NULL FROM alerts a"
            "  JOIN conversations c ON c.id = a.conversation_id WHERE c.caller = ?"
            " ORDER BY at", (caller, caller, caller))
        timeline = [dict(r) for r in rows]
        media = await self.media_of(r["message_id"] for r in timeline if r["kind"] == "text_in")
        for row in timeline:
            message_id = row.pop("message_id")
            if row["kind"] == "text_in":
                row["media"] = [{key: item[key] for key in (
                    "id", "declared_type", "content_type", "size", "state", "shown", "note")}
                    for item in media[message_id]]
        return timeline

    async def call_decision(self, linkedid: str) -> str | None:
        """The decision stored with a call (the rules' reason, or why the store withheld its text)."""
        row = await self._one("SELECT decision FROM calls WHERE linkedid = ?", (linkedid,))
        return row["decision"] if row else None

    async def progress(self, name: str) -> float | None:
        row = await self._one("SELECT value FROM progress WHERE name = ?", (name,))
        return row["value"] if row else None

    async def note_progress(self, name: str, value: float) -> None:
        """Keep one named moment, e.g. when the last AMI event arrived."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO progress (name, value) VALUES (?, ?)"
                             " ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))

    async def calls(self, since: float, limit: int = 200) -> list[dict[str, Any]]:
        """Calls that started after `since`, newest first, with the fate of their text."""
        rows = await self._all(
            "SELECT c.*, COALESCE(CASE WHEN m.status IN ('undelivered', 'failed') THEN m.status END,"
            " o.state) AS text_state, COALESCE(m.error, '') AS text_error,"
            " COALESCE(m.gateway, '') AS text_gateway FROM calls c"
            " LEFT JOIN outbox o ON o.message_id = c.message_id"
            " LEFT JOIN messages m ON m.id = c.message_id"
            " WHERE c.started_at >= ? ORDER BY c.started_at DESC LIMIT ?",
            (since, limit))
        return [dict(r) for r in rows]

    async def report_rows(self, start: float, end: float) -> dict[str, list[dict[str, Any]]]:
        """The raw rows of a scorecard period, for textback.scorecard.build (which says what
        each holds). The funnel follows the conversations with a missed call in the period
        past its end: their replies and outcomes count whenever they came. Self-tests never count."""
        calls = await self._all(
            "SELECT k.business_number, k.outcome, k.reason, k.conversation_id, k.started_at,"
            " t.status AS text_status, COALESCE(t.sent_at, t.created_at) AS text_at,"
            " t.template AS text_template FROM calls k"
            " LEFT JOIN messages t ON t.id = k.message_id AND t.direction = 'out'"
            " AND t.kind = 'auto' WHERE k.started_at >= ? AND k.started_at < ? AND k.selftest = 0",
            (start, end))
        messages = await self._all(
            "SELECT m.id, m.conversation_id, c.business_number, m.direction, m.kind, m.status,"
            " m.created_at, m.template, m.segments FROM messages m JOIN conversations c"
            " ON c.id = m.conversation_id WHERE m.created_at >= ? AND m.created_at < ?"
            " AND c.selftest = 0", (start, end))
        missed = ("SELECT conversation_id FROM calls WHERE started_at >= ? AND started_at < ?"
                  " AND outcome = 'missed' AND selftest = 0 AND conversation_id IS NOT NULL")
        outcomes = await self._all(
            "SELECT o.conversation_id, o.stage, o.value, o.at FROM outcomes o"
            f" WHERE o.conversation_id IN ({missed}) AND o.at >= ?", (start, end, start))
        replies = await self._all(
            "SELECT m.conversation_id, m.created_at FROM messages m"
            f" WHERE m.conversation_id IN ({missed}) AND m.direction = 'in' AND m.created_at >= ?",
            (start, end, start))
        opt_outs = await self._all(
            "SELECT c.business_number FROM suppressions s JOIN conversations c"
            " ON c.caller = s.number WHERE s.since >= ? AND s.since < ? AND c.selftest = 0",
            (start, end))
        return {name: [dict(r) for r in rows] for name, rows in (
            ("calls", calls), ("messages", messages), ("outcomes", outcomes),
            ("opt_outs", opt_outs), ("replies", replies))}

    async def scorecard(self, start: float, end: float,
                        month: str | None = None) -> list[dict[str, Any]]:
        """A period's scorecard, one dict per business number: what `textback report`, its CSV,
        the web page, the API and the monthly email all show. A whole month that retention
        pruned gives the scorecard kept before it went."""
        kept = await self.monthly_scorecard(month) if month else None
        if kept is not None:
            return kept
        return [card.as_dict() for card in build_scorecard(**await self.report_rows(start, end))]

    async def open_incident(self, kind: str, summary: str, at: float) -> int | None:
        """Record that an incident of `kind` began; None when one is already open."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO incidents (kind, summary, opened_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING", (kind, summary, at))
            return cursor.lastrowid if cursor.rowcount else None

    async def close_incident(self, incident_id: int, at: float) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute("UPDATE incidents SET closed_at = ? WHERE id = ?"
                                      " AND closed_at IS NULL", (at, incident_id))
            return cursor.rowcount == 1

    async def open_incidents(self) -> list[dict[str, Any]]:
        rows = await self._all("SELECT * FROM incidents WHERE closed_at IS NULL ORDER BY opened_at")
        return [dict(r) for r in rows]

    async def closed_incidents(self, limit: int = 10) -> list[dict[str, Any]]:
        """The incidents that recovered, the latest recovery first."""
        rows = await self._all("SELECT * FROM incidents WHERE closed_at IS NOT NULL"
                               " ORDER BY closed_at DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    async def outbox_backlog(self, now: float) -> tuple[int, float | None]:
        """Texts waiting to be sent, and when the oldest of those already due was first due."""
        row = await self._one(
            "SELECT COUNT(*) AS pending, MIN(CASE WHEN due_at <= ? THEN first_due_at END) AS oldest"
            " FROM outbox WHERE state IN ('pending', 'sending')", (now,))
        return row["pending"], row["oldest"]

    async def ping(self) -> None:
        """A read that proves the database answers."""
        await self._one("SELECT 1")

    # -- retention -------------------------------------------------------------------
    #
    # Calls, messages and alerts older than retention.months go (textback/pruning.py); each
    # month's scorecard is kept first. Conversations, outcomes and opt-outs stay.

    async def oldest_activity(self) -> float | None:
        """When the oldest call or message that is still kept happened."""
        row = await self._one("SELECT MIN(at) AS at FROM (SELECT MIN(started_at) AS at FROM calls"
                              " UNION ALL SELECT MIN(created_at) FROM messages)")
        return row["at"]

    async def monthly_scorecard(self, month: str) -> list[dict[str, Any]] | None:
        """The scorecard kept for a pruned month (YYYY-MM), or None when none was kept."""
        rows = await self._all("SELECT card FROM monthly_scorecards WHERE month = ?"
                               " ORDER BY business_number", (month,))
        return [json.loads(row["card"]) for row in rows] if rows else None

    async def keep_monthly_scorecard(self, month: str, cards: list[dict[str, Any]]) -> None:
        """Keep a month's scorecard; one kept earlier stays (its month may be partly pruned)."""
        async with self._transaction() as db:
            await db.executemany(
                "INSERT OR IGNORE INTO monthly_scorecards (month, business_number, card)"
                " VALUES (?,?,?)", [(month, card["business_number"], json.dumps(card))
                                    for card in cards])

    async def prunable(self, cutoff: float) -> dict[str, int]:
        """How many calls, messages, alerts and media items (and their bytes) `prune_batch` would
        delete before `cutoff`."""
        calls = await self._one("SELECT COUNT(*) AS n FROM calls WHERE started_at < ?", (cutoff,))
        messages = await self._one(
            f"SELECT COUNT(*) AS n, SUM((SELECT COUNT(*) FROM alerts a WHERE a.message_id = m.id))"
            f" AS alerts FROM messages m WHERE {_PRUNABLE_MESSAGE}", (cutoff,))
        quotes = await self._one("SELECT COUNT(*) AS n FROM reply_tokens"
                                 " WHERE quoted <> '[]' AND created_at < ?", (cutoff,))
        media = await self._one(
            f"SELECT COUNT(*) AS n, COALESCE(SUM(d.size), 0) AS bytes FROM media d"
            f" JOIN messages m ON m.id = d.message_id WHERE {_PRUNABLE_MESSAGE}", (cutoff,))
        return {"calls": calls["n"], "messages": messages["n"], "alerts": messages["alerts"] or 0,
                "media": media["n"], "media_bytes": media["bytes"], "quotes": quotes["n"]}

    async def prune_batch(self, cutoff: float, limit: int) -> dict[str, int]:
        """Delete up to `limit` calls and `limit` messages (with their alerts, outbox rows,
        escalations and media rows) from before `cutoff`, and forget what up to `limit` reply
        tokens' alerts quoted, in one short transaction; the media files their rows named are
        removed afterwards (pruning.remove_unreferenced_files). A text or an email still being
        sent is never pruned."""
        async with self._transaction() as db:
            ids = [row["id"] for row in await self._all(
                f"SELECT id FROM messages m WHERE {_PRUNABLE_MESSAGE} ORDER BY created_at LIMIT ?",
                (cutoff, limit))]
            marks = ",".join("?" * len(ids))
            alerts = media = media_bytes = 0
            if ids:
                alerts = (await db.execute(f"DELETE FROM alerts WHERE message_id IN ({marks})",
                                           ids)).rowcount
                row = await self._one(f"SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes"
                                      f" FROM media WHERE message_id IN ({marks})", tuple(ids))
                media, media_bytes = row["n"], row["bytes"]
                await db.execute(f"DELETE FROM media WHERE message_id IN ({marks})", ids)
                for table in ("outbox", "escalations", "waiting_texts"):
                    await db.execute(f"DELETE FROM {table} WHERE message_id IN ({marks})", ids)
                # A message's row in the search index has its id (the conversation's own is -id).
                await db.execute(f"DELETE FROM conversation_search WHERE rowid IN ({marks})", ids)
                await db.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)
            calls = (await db.execute(
                "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE started_at < ?"
                " ORDER BY started_at LIMIT ?)", (cutoff, limit))).rowcount
            quotes = (await db.execute(
                "UPDATE reply_tokens SET quoted = '[]' WHERE token IN (SELECT token FROM"
                " reply_tokens WHERE quoted <> '[]' AND created_at < ? LIMIT ?)",
                (cutoff, limit))).rowcount
        return {"calls": calls, "messages": len(ids), "alerts": alerts, "media": media,
                "media_bytes": media_bytes, "quotes": quotes}

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self._all("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
        return {row["state"]: row["n"] for row in rows}


def _text_event(kind: str, item: OutboxItem, status: str, error: str,
                at: float | None = None) -> Event:
    return events.text_event(kind, message_id=item.message_id,
                             conversation_id=item.conversation_id, sender=item.sender,
                             recipient=item.recipient, body=item.body, text_kind=item.kind,
                             status=status, error=error, at=at or time.time())


def _mail_table(table: str) -> str:
    """`table` if it is one of MAIL_TABLES: table names cannot be SQL parameters."""
    if table not in MAIL_TABLES:
        raise ValueError(f"not a mail table: {table!r}")
    return table
