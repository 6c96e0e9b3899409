"""The store's side of the web inbox: users, sessions, sign-in links, the inbox summary, notes.

A part of `textback.store.Store` (a mixin): it uses the store's connection,
lock and transactions. Each conversation row carries its inbox summary (last
message, last reply and its id, last human answer, unread, waiting since, snoozed until,
done as status 'closed'; the one record of who waits for an answer, textback/core/waiting.py) and a `version` that grows with every change; they
are updated in the transaction that stores each message, call or action, so
an inbox page reads one index range of its own size whatever the history,
and the live page asks only for versions it has not seen.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

# The next change number: MAX over the version index is one index probe.
NEXT_VERSION = "(SELECT COALESCE(MAX(version), 0) + 1 FROM conversations)"
# A conversation's homeowner waits no more (an answer, done, an opt-out, its text pruned):
# the assignments that end waiting (textback/core/waiting.py), in an UPDATE of conversations.
STOP_WAITING = "unanswered = 0, waiting_since = NULL"

INBOX_VIEWS = ("mine", "unassigned", "all", "waiting", "snoozed", "done")
AWAKE = "(snoozed_until IS NULL OR snoozed_until <= :now)"
# Each view: its filter, and whether replies waiting for an answer come first.
_VIEW_FILTERS = {
    "open": ("status = 'open'", True),  # `textback inbox`: every open conversation
    "all": ("status = 'open'", True),
    "mine": (f"status = 'open' AND owner_id = :owner AND {AWAKE}", True),
    "unassigned": (f"status = 'open' AND claimed = 0 AND {AWAKE}", True),
    "waiting": (f"status = 'open' AND unanswered = 1 AND {AWAKE}", True),
    "snoozed": ("status = 'open' AND snoozed_until > :now", False),
    "done": ("status = 'closed'", False),
}
INBOX_COLUMNS = (
    "c.id, c.caller, c.business_number, c.owner_id, c.status, c.created_at, c.updated_at,"
    " c.contact_name, c.last_reply, c.last_reply_at, c.last_answer_at, c.missed_calls,"
    " c.last_body, c.last_message_at, c.unanswered, c.unread, c.waiting_since, c.snoozed_until,"
    " c.claimed, c.version, c.external_ref, c.held_until, c.intake_project, c.intake_area,"
    " c.intake_labels, COALESCE((SELECT caller_name FROM calls WHERE conversation_id = c.id"
    "   AND caller_name != '' ORDER BY started_at DESC LIMIT 1), '') AS caller_name,"
    " (SELECT outcome || ': ' || reason FROM calls WHERE conversation_id = c.id"
    "   ORDER BY started_at DESC LIMIT 1) AS last_call")
ENDED_SESSION_DAYS = 30  # an ended session is remembered this long, to tell its browser why
CALL_FILTERS = ("outcome", "reason", "decision", "business_number")
MIN_SEARCH_CHARS = 3  # the trigram index finds substrings of three characters or more
PHONE_LIKE = re.compile(r"^[\d\s().+-]+$")


def search_text(query: str) -> str | None:
    """What to look for in the trigram index: a number's digits, or the words as they are."""
    text = " ".join(query.split())
    if PHONE_LIKE.match(text):
        text = re.sub(r"\D", "", text)
    return text if len(text) >= MIN_SEARCH_CHARS else None


def search_phrase(query: str) -> str | None:
    """The search as one FTS5 phrase (SQLite's trigram index)."""
    text = search_text(query)
    return None if text is None else '"' + text.replace('"', '""') + '"'


class StaleState(Exception):
    """A change was asked of a conversation whose state changed since the asker last read it."""


class WebStore:
    async def _expect_state(self, conversation_id: int, expected: int | None) -> None:
        """Inside a write transaction: raise StaleState unless the conversation's state_version
        is `expected` (None: no check), so the check and the change are one atomic step."""
        if expected is None:
            return
        row = await self._one("SELECT state_version FROM conversations WHERE id = ?",
                              (conversation_id,))
        if row is None or row["state_version"] != expected:
            raise StaleState(conversation_id)

    async def latest_outcome(self, conversation_id: int) -> str:
        """The stage of the conversation's latest outcome, "" when it has none."""
        row = await self._one("SELECT stage FROM outcomes WHERE conversation_id = ?"
                              " ORDER BY at DESC, id DESC LIMIT 1", (conversation_id,))
        return row["stage"] if row else ""

    # -- summary upkeep, called inside the store's own write transactions -----------

    async def _changed(self, conversation_id: int) -> None:
        await self._db.execute(f"UPDATE conversations SET version = {NEXT_VERSION} WHERE id = ?",
                               (conversation_id,))

    async def _summarise_message(self, conversation_id: int, message_id: int, direction: str,
                                 kind: str, body: str, now: float, waits: bool = True) -> None:
        """A message was stored: its conversation's summary and search index follow, same commit.
        A homeowner's text makes the conversation wait (and reopens it) unless `waits` is False:
        an opt-out repeated by a number already out, which only joins the thread."""
        await self._db.execute(
            "INSERT INTO conversation_search (rowid, conversation_id, text) VALUES (?,?,?)",
            (message_id, conversation_id, body))
        if direction == "in" and waits:
            await self._db.execute(
                "UPDATE conversations SET last_body = :body, last_message_at = :now,"
                " last_reply = :body, last_reply_at = :now, last_reply_id = :message,"
                " unanswered = 1, unread = 1, waiting_since = COALESCE(waiting_since, :now),"
                f" snoozed_until = NULL, status = 'open', version = {NEXT_VERSION} WHERE id = :id",
                {"body": body, "now": now, "message": message_id, "id": conversation_id})
        elif kind == "owner":
            await self._db.execute(
                "UPDATE conversations SET last_body = :body, last_message_at = :now,"
                f" last_answer_at = :now, unread = 0, {STOP_WAITING},"
                f" version = {NEXT_VERSION} WHERE id = :id",
                {"body": body, "now": now, "id": conversation_id})
        else:
            await self._db.execute(
                "UPDATE conversations SET last_body = :body, last_message_at = :now,"
                f" version = {NEXT_VERSION} WHERE id = :id",
                {"body": body, "now": now, "id": conversation_id})

    async def _summarise_call(self, conversation_id: int, outcome: str, caller_name: str) -> None:
        await self._db.execute(
            "UPDATE conversations SET missed_calls = missed_calls + 1,"
            " unread = CASE WHEN ? != 'answered' THEN 1 ELSE unread END,"
            f" version = {NEXT_VERSION} WHERE id = ?",
            (outcome, conversation_id))
        if caller_name:
            await self._index_contact(conversation_id)

    async def _index_contact(self, conversation_id: int) -> None:
        """The searchable number and names of a conversation: one index row, rowid -id."""
        await self._db.execute("DELETE FROM conversation_search WHERE rowid = ?", (-conversation_id,))
        await self._db.execute(
            "INSERT INTO conversation_search (rowid, conversation_id, text)"
            " SELECT -c.id, c.id, c.caller || ' ' || substr(c.caller, 2) || ' ' || c.contact_name"
            " || ' ' || COALESCE((SELECT group_concat(DISTINCT caller_name) FROM calls"
            "   WHERE conversation_id = c.id), '') FROM conversations c WHERE c.id = ?",
            (conversation_id,))

    # -- the inbox ---------------------------------------------------------------------

    async def inbox_page(self, view: str, now: float, owner_id: str = "", search: str = "",
                         limit: int = 50, project: str = "", area: str = ""
                         ) -> list[dict[str, Any]]:
        """One page of a view (see INBOX_VIEWS), or of a search over every conversation;
        `project` and `area` keep those whose intake facts name that project type or say
        in / out of the service area.

        Replies nobody has answered come first, the longest waiting first; then the most
        recently active. Each part is one range of an index, read no further than `limit`.
        """
        if search:
            return await self._search(search, limit)
        where, waiting_first = _VIEW_FILTERS[view]
        # A self-test's conversation is nobody's to answer; an owner's own phone is no lead.
        where += " AND selftest = 0 AND owner_line = 0"
        if project:
            where += " AND (',' || intake_project || ',') LIKE :project"
        if area:
            where += " AND intake_area = :area"
        args = {"now": now, "owner": owner_id, "limit": limit,
                "project": f"%,{project.replace('%', '').replace('_', '')},%", "area": area}
        rows: list[Any] = []
        if waiting_first:
            rows = await self._all(
                f"SELECT {INBOX_COLUMNS} FROM conversations c WHERE {where} AND c.unanswered = 1"
                " ORDER BY c.last_reply_at, c.id LIMIT :limit", args)
            where += " AND unanswered = 0"
        if len(rows) < limit:
            args["limit"] = limit - len(rows)
            rows += await self._all(
                f"SELECT {INBOX_COLUMNS} FROM conversations c WHERE {where}"
                " ORDER BY c.updated_at DESC, c.id DESC LIMIT :limit", args)
        return [dict(r) for r in rows]

    async def _search(self, query: str, limit: int) -> list[dict[str, Any]]:
        phrase = search_phrase(query)
        if phrase is None:
            return []
        rows = await self._all(
            f"SELECT {INBOX_COLUMNS} FROM conversations c WHERE c.id IN ("
            "  SELECT conversation_id FROM conversation_search WHERE conversation_search MATCH ?"
            "  ORDER BY rowid DESC LIMIT 1000) AND c.selftest = 0 AND c.owner_line = 0"
            " ORDER BY c.updated_at DESC, c.id DESC LIMIT ?", (phrase, limit))
        return [dict(r) for r in rows]

    async def unread_count(self) -> int:
        row = await self._one("SELECT COUNT(*) AS n FROM conversations"
                              " WHERE status = 'open' AND unread = 1 AND selftest = 0"
                              " AND owner_line = 0")
        return row["n"]

    async def changes_since(self, version: int, limit: int = 100) -> list[dict[str, Any]]:
        """Conversations changed after `version`, in the order of their changes."""
        rows = await self._all("SELECT id, version FROM conversations WHERE version > ?"
                               " AND owner_line = 0 ORDER BY version LIMIT ?", (version, limit))
        return [dict(r) for r in rows]

    async def latest_version(self) -> int:
        row = await self._one("SELECT COALESCE(MAX(version), 0) AS v FROM conversations")
        return row["v"]

    async def thread(self, conversation_id: int) -> dict[str, list[dict[str, Any]]]:
        """Everything about one conversation, each kind oldest first, for the thread page."""
        queries = {
            "calls": "SELECT * FROM calls WHERE conversation_id = ? ORDER BY started_at",
            "messages": "SELECT * FROM messages WHERE conversation_id = ? ORDER BY created_at, id",
            "alerts": "SELECT * FROM alerts WHERE conversation_id = ? ORDER BY id",
            "assignments": "SELECT * FROM assignments WHERE conversation_id = ? ORDER BY at, id",
            "outcomes": "SELECT * FROM outcomes WHERE conversation_id = ? ORDER BY at, id",
            "notes": "SELECT * FROM notes WHERE conversation_id = ? ORDER BY at, id",
        }
        return {name: [dict(r) for r in await self._all(sql, (conversation_id,))]
                for name, sql in queries.items()}

    # -- actions from the inbox -----------------------------------------------------------

    async def add_note(self, conversation_id: int, owner_id: str, body: str) -> None:
        """An internal note: shown to the team in the thread, never texted."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO notes (conversation_id, owner_id, body, at) VALUES (?,?,?,?)",
                             (conversation_id, owner_id, body, time.time()))
            await self._changed(conversation_id)

    async def snooze(self, conversation_id: int, until: float, expected_state: int | None = None) -> None:
        """Out of the inbox until `until`, or until the homeowner writes or calls again."""
        async with self._transaction() as db:
            await self._expect_state(conversation_id, expected_state)
            await db.execute("UPDATE conversations SET snoozed_until = ?, status = 'open',"
                             f" version = {NEXT_VERSION} WHERE id = ?", (until, conversation_id))

    async def mark_done(self, conversation_id: int, expected_state: int | None = None) -> None:
        """Done: read, answered, and out of the inbox until the homeowner writes or calls
        again (a call reopens it, but only a new text makes it wait)."""
        async with self._transaction() as db:
            await self._expect_state(conversation_id, expected_state)
            await db.execute("UPDATE conversations SET status = 'closed', unread = 0,"
                             f" snoozed_until = NULL, {STOP_WAITING}, version = {NEXT_VERSION}"
                             " WHERE id = ?", (conversation_id,))

    async def set_contact_name(self, conversation_id: int, name: str,
                               expected_state: int | None = None) -> None:
        async with self._transaction() as db:
            await self._expect_state(conversation_id, expected_state)
            await db.execute(f"UPDATE conversations SET contact_name = ?, version = {NEXT_VERSION}"
                             " WHERE id = ?", (name, conversation_id))
            await self._index_contact(conversation_id)

    async def contact_class(self, number: str) -> str | None:
        """The class an owner gave this number in the inbox, or None (the config decides)."""
        row = await self._one("SELECT class FROM contact_classes WHERE number = ?", (number,))
        return row["class"] if row else None

    async def set_contact_class(self, number: str, kind: str, owner_id: str) -> None:
        async with self._transaction():
            await self._keep_contact_class(number, kind, owner_id)

    async def _keep_contact_class(self, number: str, kind: str, who: str) -> None:
        """Inside a transaction: `number` is now of class `kind`, as `who` said."""
        await self._db.execute(
            "INSERT INTO contact_classes (number, class, owner_id, at) VALUES (?,?,?,?)"
            f" ON CONFLICT ({self._company_key('number')}) DO UPDATE SET class = excluded.class,"
            " owner_id = excluded.owner_id, at = excluded.at", (number, kind, who, time.time()))

    # -- users, sessions, sign-in links ----------------------------------------------------

    async def web_key(self, name: str) -> bytes:
        """A random key kept in the store (made on first use), e.g. to sign sign-in links."""
        row = await self._one("SELECT value FROM web_keys WHERE name = ?", (name,))
        if row is not None:
            return row["value"]
        async with self._transaction() as db:
            await db.execute("INSERT INTO web_keys (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                             (name, secrets.token_bytes(32)))
        return (await self._one("SELECT value FROM web_keys WHERE name = ?", (name,)))["value"]

    async def set_password_hash(self, owner_id: str, password_hash: str) -> None:
        """Set an owner's password (its argon2 hash), ending every session they had."""
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO web_users (owner_id, password_hash, changed_at) VALUES (?,?,?)"
                f" ON CONFLICT ({self._company_key('owner_id')}) DO UPDATE SET password_hash = excluded.password_hash,"
                " changed_at = excluded.changed_at", (owner_id, password_hash, now))
            await db.execute("UPDATE web_sessions SET ended_at = ?, ended_why = 'password_changed'"
                             " WHERE owner_id = ? AND ended_at IS NULL", (now, owner_id))

    async def password_hash(self, owner_id: str) -> str | None:
        row = await self._one("SELECT password_hash FROM web_users WHERE owner_id = ?", (owner_id,))
        return row["password_hash"] if row else None

    async def web_users(self) -> dict[str, dict[str, Any]]:
        """Per owner id: whether a password is set and when they last signed in."""
        rows = await self._all("SELECT owner_id, password_hash != '' AS has_password, changed_at,"
                               " last_sign_in_at FROM web_users")
        return {row["owner_id"]: dict(row) for row in rows}

    async def start_session(self, owner_id: str, token_digest: str, csrf: str, now: float,
                            idle_seconds: float, user_agent: str = "", address: str = "") -> None:
        """A signed-in browser. Sessions idle for longer than `idle_seconds` are ended; ended
        ones are kept ENDED_SESSION_DAYS, so a browser coming back learns why."""
        async with self._transaction() as db:
            await db.execute("UPDATE web_sessions SET ended_at = seen_at + ?, ended_why = 'idle'"
                             " WHERE seen_at < ? AND ended_at IS NULL",
                             (idle_seconds, now - idle_seconds))
            await db.execute("DELETE FROM web_sessions WHERE ended_at < ?",
                             (now - ENDED_SESSION_DAYS * 86400,))
            await db.execute("INSERT INTO web_sessions (token_digest, owner_id, csrf, created_at,"
                             " seen_at, user_agent, address) VALUES (?,?,?,?,?,?,?)",
                             (token_digest, owner_id, csrf, now, now, user_agent, address))
            await db.execute(
                "INSERT INTO web_users (owner_id, password_hash, changed_at, last_sign_in_at)"
                f" VALUES (?, '', ?, ?) ON CONFLICT ({self._company_key('owner_id')}) DO UPDATE SET"
                " last_sign_in_at = excluded.last_sign_in_at", (owner_id, now, now))

    async def session(self, token_digest: str) -> dict[str, Any] | None:
        """A session by its digest, ended or not (`ended_why` says how it ended)."""
        row = await self._one("SELECT * FROM web_sessions WHERE token_digest = ?", (token_digest,))
        return dict(row) if row else None

    async def live_sessions(self, owner_id: str) -> list[dict[str, Any]]:
        """An owner's sessions that have not ended, the most recently seen first."""
        rows = await self._all("SELECT * FROM web_sessions WHERE owner_id = ? AND ended_at IS NULL"
                               " ORDER BY seen_at DESC", (owner_id,))
        return [dict(r) for r in rows]

    async def touch_session(self, token_digest: str, now: float) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE web_sessions SET seen_at = ? WHERE token_digest = ?",
                             (now, token_digest))

    async def end_session(self, token_digest: str, why: str) -> None:
        """End one session; `why` (signed_out, idle, no_owner...) is what its browser is told."""
        async with self._transaction() as db:
            await db.execute("UPDATE web_sessions SET ended_at = ?, ended_why = ?"
                             " WHERE token_digest = ? AND ended_at IS NULL",
                             (time.time(), why, token_digest))

    async def end_other_sessions(self, owner_id: str, keep_digest: str) -> int:
        """End every live session of `owner_id` but `keep_digest`; how many were ended."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE web_sessions SET ended_at = ?, ended_why = 'ended_elsewhere'"
                " WHERE owner_id = ? AND token_digest != ? AND ended_at IS NULL",
                (time.time(), owner_id, keep_digest))
            return cursor.rowcount

    # -- the MSP console's sessions (textback/web/msp.py: in its home company's store) ------

    async def start_console_session(self, token_digest: str, admin_id: str, credential: str,
                                    csrf: str, now: float, idle_seconds: float) -> None:
        """A browser signed in to the MSP console; sessions idle longer than `idle_seconds` go
        (a console session that ended leaves nothing to tell: its page just asks again)."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM console_sessions WHERE seen_at < ?",
                             (now - idle_seconds,))
            await db.execute("INSERT INTO console_sessions (token_digest, admin_id, credential,"
                             " csrf, created_at, seen_at) VALUES (?,?,?,?,?,?)",
                             (token_digest, admin_id, credential, csrf, now, now))

    async def console_session(self, token_digest: str) -> dict[str, Any] | None:
        row = await self._one("SELECT * FROM console_sessions WHERE token_digest = ?",
                              (token_digest,))
        return dict(row) if row else None

    async def touch_console_session(self, token_digest: str, now: float) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE console_sessions SET seen_at = ? WHERE token_digest = ?",
                             (now, token_digest))

    async def end_console_session(self, token_digest: str) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM console_sessions WHERE token_digest = ?",
                             (token_digest,))

    # -- failed sign-ins ---------------------------------------------------------------------

    async def sign_in_failures(self, keys: list[str], since: float) -> dict[str, list[float]]:
        """The times of each key's failed sign-ins since `since`."""
        marks = ",".join("?" * len(keys))
        rows = await self._all(f"SELECT key, at FROM signin_failures WHERE key IN ({marks})"
                               " AND at > ?", (*keys, since))
        failures: dict[str, list[float]] = {key: [] for key in keys}
        for row in rows:
            failures[row["key"]].append(row["at"])
        return failures

    async def note_sign_in_failure(self, keys: list[str], now: float, window: float) -> None:
        """A failed sign-in counted under each key; failures older than `window` are swept."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM signin_failures WHERE at <= ?", (now - window,))
            await db.executemany("INSERT INTO signin_failures (key, at) VALUES (?, ?)",
                                 [(key, now) for key in keys])

    async def clear_sign_in_failures(self, key: str) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM signin_failures WHERE key = ?", (key,))

    async def link_used(self, nonce_digest: str) -> bool:
        return await self._one("SELECT 1 FROM used_links WHERE nonce_digest = ?",
                               (nonce_digest,)) is not None

    async def use_link(self, nonce_digest: str, owner_id: str, expires_at: float, now: float) -> bool:
        """Spend a sign-in link's nonce; False if it was spent before. Expired ones are swept."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM used_links WHERE expires_at < ?", (now,))
            cursor = await db.execute(
                "INSERT INTO used_links (nonce_digest, owner_id, used_at, expires_at)"
                " VALUES (?,?,?,?) ON CONFLICT DO NOTHING", (nonce_digest, owner_id, now, expires_at))
            return cursor.rowcount == 1

    # -- the calls, admin pages ----------------------------------------------------------

    async def calls_page(self, since: float, until: float, limit: int = 200,
                         **equal: str) -> list[dict[str, Any]]:
        """Inbound calls in [since, until), newest first, where each given column equals its value
        (outcome, reason, decision, business_number), with the fate of their text."""
        where = "".join(f" AND c.{column} = :{column}" for column in sorted(equal)
                        if column in CALL_FILTERS)
        rows = await self._all(
            "SELECT c.*, o.state AS text_state FROM calls c"
            " LEFT JOIN outbox o ON o.message_id = c.message_id"
            f" WHERE c.started_at >= :since AND c.started_at < :until{where}"
            " ORDER BY c.started_at DESC LIMIT :limit",
            {"since": since, "until": until, "limit": limit, **equal})
        return [dict(r) for r in rows]

    async def fraud_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """Calls a fraud guard kept from being texted, newest first."""
        rows = await self._all("SELECT * FROM calls WHERE decision LIKE 'fraud\\_%' ESCAPE '\\'"
                               " ORDER BY started_at DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]
