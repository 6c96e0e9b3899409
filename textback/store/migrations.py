"""The SQLite schema as a list of migrations, applied in order; a new one is appended at the END."""

from __future__ import annotations

import sqlite3

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
    # Store.open, is textback.core.segments.count_segments).
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
    # so a reply to it is stripped of anything it quotes back (textback.core.replies.strip_repeats).
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
    # The consent ledger (textback/core/consent.py): one row per fact, appended in the transaction of
    # the change it records, never changed or deleted (the triggers refuse), never pruned; and
    # when a text held for the homeowner's quiet hours may go (textback/core/quiet_hours.py).
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
    # When the text the homeowner's quiet hours hold will go: the inbox row says so without a
    # join (set with the hold, cleared when no held text of the conversation remains).
    """
    ALTER TABLE conversations ADD COLUMN held_until REAL
    """,
    # An owner's own mobile: its texts with textback (alerts out, answers in) are one
    # conversation per business number, marked, so it is never a lead, listed or counted; each
    # alert text remembers which homeowner's conversation it showed (its code, #12); each answer
    # relayed from the mobile, whose owner is told by text if it fails later.
    """
    ALTER TABLE conversations ADD COLUMN owner_line INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE owner_alert_texts (
        message_id INTEGER PRIMARY KEY REFERENCES messages(id),
        owner_id TEXT NOT NULL,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        created_at REAL NOT NULL
    );
    CREATE INDEX owner_alert_texts_owner ON owner_alert_texts (owner_id, created_at);
    CREATE INDEX owner_alert_texts_conversation ON owner_alert_texts (conversation_id);
    CREATE TABLE owner_answers (
        message_id INTEGER PRIMARY KEY REFERENCES messages(id),
        owner_id TEXT NOT NULL
    )
    """,
    # Web Push: each owner's subscribed browsers, the pushes to them (claimed before sending,
    # one per device and change), and the alert channels each owner chose.
    """
    CREATE TABLE push_subscriptions (
        id INTEGER PRIMARY KEY,
        owner_id TEXT NOT NULL,
        endpoint TEXT NOT NULL UNIQUE,
        p256dh TEXT NOT NULL,
        auth TEXT NOT NULL,
        device TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        last_sent_at REAL,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX push_subscriptions_owner ON push_subscriptions (owner_id);
    CREATE TABLE push_messages (
        id INTEGER PRIMARY KEY,
        subscription_id INTEGER NOT NULL REFERENCES push_subscriptions(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('reply', 'assigned', 'escalation')),
        ref TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'expired')),
        attempts INTEGER NOT NULL DEFAULT 0,
        retry_at REAL NOT NULL DEFAULT 0,
        happened_at REAL NOT NULL,
        deadline REAL NOT NULL,
        created_at REAL NOT NULL,
        sent_at REAL,
        last_error TEXT NOT NULL DEFAULT '',
        UNIQUE (subscription_id, kind, ref)
    );
    CREATE INDEX push_messages_due ON push_messages (retry_at) WHERE state = 'pending';
    CREATE INDEX push_messages_subscription ON push_messages (subscription_id);
    CREATE INDEX escalations_at ON escalations (at);
    CREATE TABLE owner_alert_channels (
        owner_id TEXT PRIMARY KEY,
        channels TEXT NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
    # Intake facts (textback/core/intake.py): each extraction from a homeowner's text and each
    # person's correction, with the words that caused it; the conversation keeps their merge
    # (a person's value wins) for the inbox's labels and filters. What was read from a text
    # (its evidence and cause are the homeowner's words) goes when retention prunes the text.
    """
    CREATE TABLE intake_facts (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        message_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
        field TEXT NOT NULL,
        value TEXT NOT NULL,
        label TEXT NOT NULL,
        evidence TEXT NOT NULL,
        why TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('extracted', 'suggested', 'person')),
        author TEXT NOT NULL,
        cause TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX intake_facts_conversation ON intake_facts (conversation_id);
    ALTER TABLE conversations ADD COLUMN intake_project TEXT;
    ALTER TABLE conversations ADD COLUMN intake_area TEXT;
    ALTER TABLE conversations ADD COLUMN intake_labels TEXT NOT NULL DEFAULT ''
    """,
    # PostgreSQL only: the fleet's wake-up triggers (NOTIFY). SQLite has one daemon, whose
    # workers its own writes wake; the version number stays the same on both backends.
    """
    -- nothing to do on SQLite
    """,
    # An owner may choose no alert emails (owners[].alerts.channels): their reply alerts end as
    # 'skipped', kept so the thread says why no email went. SQLite cannot change a CHECK, so
    # alerts is rebuilt (on PostgreSQL: drop and add the constraint).
    """
    CREATE TABLE alerts_skippable (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        message_id INTEGER NOT NULL REFERENCES messages(id),
        owner_id TEXT NOT NULL,
        recipient TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        sent_at REAL,
        retry_at REAL NOT NULL DEFAULT 0
    );
    INSERT INTO alerts_skippable (id, conversation_id, message_id, owner_id, recipient, subject,
        state, attempts, last_error, created_at, sent_at, retry_at)
        SELECT id, conversation_id, message_id, owner_id, recipient, subject, state, attempts,
        last_error, created_at, sent_at, retry_at FROM alerts;
    DROP TABLE alerts;
    ALTER TABLE alerts_skippable RENAME TO alerts;
    CREATE INDEX alerts_state ON alerts (state, retry_at);
    CREATE INDEX alerts_conversation ON alerts (conversation_id);
    CREATE INDEX alerts_message ON alerts (message_id);
    CREATE INDEX alerts_pending ON alerts (id, retry_at) WHERE state = 'pending'
    """,
    # The owner's own quiet hours for their alerts, set on the settings page beside the
    # channels: NULL keeps the config's (owners[].alerts.quiet_hours), '' is none.
    """
    ALTER TABLE owner_alert_channels ADD COLUMN quiet_hours TEXT
    """,
    # Retention deletes the reply tokens that have expired (they take no reply any more).
    """
    CREATE INDEX reply_tokens_expiry ON reply_tokens (expires_at)
    """,
    # PostgreSQL only: companies, each row its company's, kept apart by row-level security
    # (textback/store/postgres/migrations.py). A SQLite file is one company's store.
    """
    -- nothing to do on SQLite
    """,
    # Who claimed each row in flight: the daemon (a row of `daemons`, one per start) whose claim
    # moved it out of its waiting state. Recovery takes only rows whose claimer is gone (on
    # SQLite, one daemon by the run lock: every claimer but the running one).
    """
    CREATE TABLE daemons (
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at REAL NOT NULL
    );
    ALTER TABLE outbox ADD COLUMN claimed_by INTEGER;
    ALTER TABLE alerts ADD COLUMN claimed_by INTEGER;
    ALTER TABLE notices ADD COLUMN claimed_by INTEGER;
    ALTER TABLE event_deliveries ADD COLUMN claimed_by INTEGER;
    ALTER TABLE selftests ADD COLUMN claimed_by INTEGER;
    ALTER TABLE media ADD COLUMN claimed_by INTEGER;
    ALTER TABLE push_messages ADD COLUMN claimed_by INTEGER
    """,
    # An incident may be about one PBX (AMI down): the PBX it names ('' for none, or the single
    # `ami:` form's), and one open incident per kind and PBX.
    """
    ALTER TABLE incidents ADD COLUMN pbx TEXT NOT NULL DEFAULT '';
    DROP INDEX incidents_one_open;
    CREATE UNIQUE INDEX incidents_one_open ON incidents (kind, pbx) WHERE closed_at IS NULL
    """,
    # One record of the conversations waiting for the company's answer: the conversation's
    # own summary (unanswered, waiting_since, last_reply_at) and now the id of the text that
    # waits (last_reply_id); waiting_texts, which kept the same a second time, is dropped
    # (escalation counts are the escalations' own rows). Waiting as textback/core/waiting.py
    # defines it: a conversation done or closed by an outcome since its text, a caller who
    # opted out since, or a text already pruned waits no more (one marked done and reopened by
    # a call since cannot be told apart, and still waits).
    """
    ALTER TABLE conversations ADD COLUMN last_reply_id INTEGER;
    UPDATE conversations SET last_reply_id = (SELECT id FROM messages
        WHERE conversation_id = conversations.id AND direction = 'in'
        ORDER BY created_at DESC, id DESC LIMIT 1)
        WHERE last_reply_at IS NOT NULL;
    UPDATE conversations SET unanswered = 0, waiting_since = NULL
        WHERE unanswered = 1 AND (status = 'closed' OR last_reply_id IS NULL
            OR EXISTS (SELECT 1 FROM outcomes o WHERE o.conversation_id = conversations.id
                       AND o.stage IN ('won', 'lost', 'spam') AND o.at >= conversations.last_reply_at)
            OR EXISTS (SELECT 1 FROM suppressions s WHERE s.number = conversations.caller
                       AND s.since >= conversations.last_reply_at));
    DROP TABLE waiting_texts
    """,
    # The daemon (a row of `daemons`) that opened an incident: a kind judged from a daemon's
    # own view (textback/core/incidents.py, OWN_VIEW_KINDS) is closed by that daemon alone,
    # or taken over once it is gone. NULL: opened before, or by a store with no claimer.
    """
    ALTER TABLE incidents ADD COLUMN opened_by INTEGER
    """,
    # PostgreSQL only: a reference between two company tables names the company as well as
    # the row, so a row of one company cannot name another's (a key check looks past
    # row-level security). A SQLite file is one company's store.
    """
    -- nothing to do on SQLite
    """,
    # A text recovery marked `unknown` owes its owner a notice until one is queued
    # (OutboxWorker.report_interrupted): the mark and the notice are two transactions, and a
    # daemon that dies between them leaves the debt for the next start or a fleet's sweep.
    """
    ALTER TABLE outbox ADD COLUMN notice_owed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX outbox_notice_owed ON outbox (id) WHERE notice_owed = 1
    """,
    # The MSP console's sessions (textback/web/msp.py), kept in the store of the process's
    # first company: a restart keeps them, and the daemons of a fleet serving the same
    # companies share them. `credential` is the digest of the admin's password hash at
    # sign-in: a password changed ends the sessions begun with the old one.
    """
    CREATE TABLE console_sessions (
        token_digest TEXT PRIMARY KEY,
        admin_id TEXT NOT NULL,
        credential TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        seen_at REAL NOT NULL
    );
    CREATE INDEX console_sessions_seen ON console_sessions (seen_at)
    """,
]


# ANALYZE reads at most about this many rows of each index, so it stays quick on a large store.
ANALYSIS_LIMIT = 1000


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
