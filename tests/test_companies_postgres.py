"""Companies on one PostgreSQL database, kept apart by the database itself (migration 30):
two stores, each opened for its own company as a daemon's role (no superuser, no BYPASSRLS),
write alike rows; neither reads, changes or deletes the other's, by the port's methods or by
any SQL on its connections, and a connection that names no company reads nothing at all.
A row cannot name another company's row either (migration 36): each reference between two
company tables carries the company, which a key check (blind to row-level security) compares."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from textback.core.fleet import pbx_lock_key
from textback.store import CallRow, NewMedia, PlannedText, UpgradeRefused
from textback.store.postgres import PostgresStore
from textback.store.postgres.connection import describe_database
from textback.mediafiles import MediaStore
from textback.store.postgres import migrations as pg_migrations
from tests.store_helpers import execute

NUMBER, CALLER = "+12125550100", "+12125550123"
MEDIA_URL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"


def missed(linkedid: str) -> CallRow:
    now = time.time()
    return CallRow(linkedid=linkedid, business_number=NUMBER, caller_raw=CALLER, caller=CALLER,
                   caller_name="", started_at=now - 10, answered_at=None, ended_at=now,
                   outcome="missed", reason="no_answer", decision="missed_call_text")


@pytest.fixture
def shared_database(postgres_server, postgres_template):
    """One database at the current schema, reached as the daemons' role."""
    return postgres_server.new_database(template=postgres_template,
                                        owner=postgres_server.daemon_role())


@pytest.fixture
async def companies(shared_database):
    """Two stores on the shared database: acme's and birch's, each with a missed call (the
    same PBX call id, caller and number in both), its text, a reply with a photo, an event,
    an opt-out of acme's only, a progress mark and an incident."""
    stores = {}
    for slug, name in (("acme", "Acme Remodeling"), ("birch", "Birch & Sons")):
        store = await PostgresStore.open(shared_database, company=slug, company_name=name)
        stores[slug] = store
        await store.record_call(missed("1700000000.1"), PlannedText("dana", f"Hi from {slug}", 0))
        await store.record_inbound(CALLER, NUMBER, f"a photo for {slug}", "twilio", "MM1", "dana",
                                   media=[NewMedia(MEDIA_URL, "image/jpeg")])
        await store.note_progress("last_ami_event", 100.0 if slug == "acme" else 200.0)
        await store.open_incident("ami_down", f"{slug}'s PBX", time.time())
    await stores["acme"].suppress(CALLER, "STOP", NUMBER)
    yield stores
    for store in stores.values():
        await store.close()


async def ids_of(store: PostgresStore) -> dict[str, int]:
    conversation = await store.conversation_for(CALLER, NUMBER)
    [call] = await store.calls(0)
    [media] = await store._all("SELECT id FROM media")
    [event] = await store._all("SELECT id FROM events ORDER BY id LIMIT 1")
    return {"conversation": conversation["id"], "call": call["id"], "media": media["id"],
            "event": event["id"]}


async def test_each_company_has_its_own_rows_under_the_same_keys(companies):
    acme, birch = companies["acme"], companies["birch"]
    assert acme.company_id != birch.company_id
    mine, theirs = await ids_of(acme), await ids_of(birch)
    assert all(mine[kind] != theirs[kind] for kind in mine)  # same call id, caller, number
    assert (await acme.thread(mine["conversation"]))["messages"][0]["body"] == "Hi from acme"
    assert (await birch.thread(theirs["conversation"]))["messages"][0]["body"] == "Hi from birch"
    assert [i["summary"] for i in await acme.open_incidents()] == ["acme's PBX"]
    assert await acme.progress("last_ami_event") == 100.0
    assert await birch.progress("last_ami_event") == 200.0


async def test_an_opt_out_stops_only_the_company_it_was_sent_to(companies):
    acme, birch = companies["acme"], companies["birch"]
    assert await acme.is_suppressed(CALLER)
    assert not await birch.is_suppressed(CALLER)  # another sender: its texts still go
    assert [row["number"] for row in await acme.suppressions()] == [CALLER]
    assert await birch.suppressions() == []
    assert await birch.suppress(CALLER, "STOP", NUMBER)  # its own opt-out, apart
    assert await birch.unsuppress(CALLER, "START", NUMBER)
    assert await acme.is_suppressed(CALLER)


async def test_a_company_cannot_read_another_companys_rows_by_id(companies):
    acme, birch = companies["acme"], companies["birch"]
    theirs = await ids_of(birch)
    assert await acme.conversation(theirs["conversation"]) is None
    thread = await acme.thread(theirs["conversation"])
    assert not any(thread.values())
    assert await acme.media_item(theirs["media"]) is None
    assert await acme.conversation_history(theirs["conversation"]) == {"calls": [], "messages": []}
    assert [c["id"] for c in await acme.calls(0)] != [theirs["call"]]
    tables = [row[0] for row in await acme._all(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND column_name = 'company_id'")]
    assert {"conversations", "messages", "daemons"} <= set(tables)
    for table in tables:  # whatever the SQL: not a row of birch's in any table
        rows = await acme._all(f"SELECT company_id FROM {table}")
        assert {row[0] for row in rows} <= {acme.company_id}, table
    assert await acme._one("SELECT id FROM calls WHERE id = ?", (theirs["call"],)) is None
    assert await acme._one("SELECT id FROM events WHERE id = ?", (theirs["event"],)) is None


async def test_a_company_cannot_change_or_delete_another_companys_rows(companies):
    acme, birch = companies["acme"], companies["birch"]
    theirs = await ids_of(birch)
    before = await birch.conversation(theirs["conversation"])
    await execute(acme, "UPDATE conversations SET status = 'done', contact_name = 'x'"
                        " WHERE id = ?", (theirs["conversation"],))
    await execute(acme, "UPDATE calls SET outcome = 'answered' WHERE id = ?", (theirs["call"],))
    await execute(acme, "UPDATE media SET state = 'failed' WHERE id = ?", (theirs["media"],))
    for table in ("media", "event_deliveries", "events", "suppressions", "progress", "incidents"):
        await execute(acme, f"DELETE FROM {table}")
    assert await birch.conversation(theirs["conversation"]) == before
    [call] = await birch.calls(0)
    assert call["outcome"] == "missed"
    assert (await birch.media_item(theirs["media"]))["state"] == "pending"
    assert await birch._one("SELECT id FROM events WHERE id = ?", (theirs["event"],))
    assert await birch.progress("last_ami_event") == 200.0
    assert len(await birch.open_incidents()) == 1
    assert await acme._all("SELECT id FROM media") == []  # its own rows went


async def test_a_row_cannot_be_written_into_another_company(companies):
    acme, birch = companies["acme"], companies["birch"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        await execute(acme, "INSERT INTO progress (name, value, company_id) VALUES (?, ?, ?)",
                      ("planted", 1.0, birch.company_id))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        await execute(acme, "UPDATE progress SET company_id = ?", (birch.company_id,))
    assert await birch.progress("planted") is None


async def test_a_connection_that_names_no_company_reads_and_writes_nothing(
        companies, shared_database):
    with psycopg.connect(shared_database, autocommit=True) as connection:
        for table in ("conversations", "suppressions", "calls"):
            with pytest.raises(psycopg.errors.UndefinedObject, match="textback.company"):
                connection.execute(f"SELECT * FROM {table}")
        with pytest.raises(psycopg.errors.UndefinedObject, match="textback.company"):
            connection.execute("INSERT INTO progress (name, value) VALUES ('x', 1)")
        # The list of companies is no company's: each daemon finds its own there.
        assert connection.execute("SELECT slug, name FROM companies ORDER BY id").fetchall() == [
            ("default", ""), ("acme", "Acme Remodeling"), ("birch", "Birch & Sons")]


async def test_a_company_opened_again_is_the_same_company(companies, shared_database):
    again = await PostgresStore.open(shared_database, company="acme")
    try:
        assert again.company_id == companies["acme"].company_id
        assert await again.is_suppressed(CALLER)
    finally:
        await again.close()
    with psycopg.connect(shared_database) as connection:  # a name left out keeps the known one
        assert connection.execute("SELECT name FROM companies WHERE slug = 'acme'").fetchone() == (
            "Acme Remodeling",)


async def test_check_warns_when_the_role_escapes_row_level_security(
        postgres_server, shared_database):
    line, warning = await describe_database(shared_database, company="acme")
    assert warning is None and "company 'acme', new: `textback run` adds it" in line
    superuser_url = shared_database.replace(f"{postgres_server.daemon_role()}@", "textback@")
    line, warning = await describe_database(superuser_url, company="default")
    assert line.endswith("company 'default'")  # migration 30 made it
    assert "'textback' is a superuser" in warning and "NOBYPASSRLS" in warning
    role = postgres_server.daemon_role()
    postgres_server.admin(f'ALTER ROLE "{role}" BYPASSRLS')
    try:
        _, warning = await describe_database(shared_database)
        assert f"'{role}' is BYPASSRLS" in warning
    finally:
        postgres_server.admin(f'ALTER ROLE "{role}" NOBYPASSRLS')


def test_each_company_holds_its_own_lease_on_a_shared_pbx():
    default = pbx_lock_key("pbx.example", 5038)
    assert pbx_lock_key("pbx.example", 5038, "default") == default  # as before companies
    keys = {pbx_lock_key("pbx.example", 5038, slug) for slug in ("default", "acme", "birch")}
    assert len(keys) == 3
    assert pbx_lock_key("PBX.example", 5038, "acme") == pbx_lock_key("pbx.example", 5038, "acme")


async def test_rows_from_before_companies_are_the_company_default(postgres_server):
    """A fleet's database from before migration 30, with rows: they become `default`'s, which
    a config without `company:` opens, and no other company sees them."""
    from textback.store.postgres.migrations import MIGRATIONS
    url = postgres_server.new_database(owner=postgres_server.daemon_role())
    with psycopg.connect(url, autocommit=True) as db:  # the schema 29 a store made then
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for script in MIGRATIONS[:29]:
            if script:
                db.execute(script)
        db.execute("INSERT INTO schema_version VALUES (29)")
        db.execute("INSERT INTO suppressions (number, since, source) VALUES (%s, 1, 'STOP')",
                   (CALLER,))
    default = await PostgresStore.open(url)
    acme = await PostgresStore.open(url, company="acme")
    try:
        assert await default.is_suppressed(CALLER)
        assert not await acme.is_suppressed(CALLER)
        assert default.company == "default" and default.company_id != acme.company_id
    finally:
        await default.close()
        await acme.close()


# Each foreign key whose table and parent both hold company rows (a company_id column), with
# its columns and its parent's, read from the catalog: not from COMPANY_REFERENCES, so a
# reference added later without the company is found too.
REFERENCES_BETWEEN_COMPANY_TABLES = """
SELECT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o),
       c.convalidated
FROM pg_constraint c
WHERE c.contype = 'f'
  AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.conrelid AND attname = 'company_id')
  AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.confrelid AND attname = 'company_id')
ORDER BY 2, 1
"""


def references_between_company_tables(url: str) -> list[tuple]:
    with psycopg.connect(url) as db:
        return db.execute(REFERENCES_BETWEEN_COMPANY_TABLES).fetchall()


def test_every_reference_between_company_tables_names_the_company(shared_database):
    references = references_between_company_tables(shared_database)
    assert len(references) >= 19  # the query saw them: messages, media, outbox, deliveries...
    for name, table, parent, columns, keys, validated in references:
        assert columns[0] == "company_id" and keys == ["company_id", "id"], (name, table, parent)
        assert len(columns) == 2 and validated, name
    assert {(table, columns[1], parent) for _, table, parent, columns, _, _ in references} == {
        (table, column, parent) for table, column, parent, _ in pg_migrations.COMPANY_REFERENCES}


async def test_a_row_cannot_name_another_companys_row(companies):
    """As the daemons' role, row-level security on: a row of acme naming birch's conversation,
    message or event is refused by the key, as a row naming one that does not exist is (the
    refusal tells acme nothing of birch's ids); naming acme's own still works."""
    acme, birch = companies["acme"], companies["birch"]
    theirs, mine = await ids_of(birch), await ids_of(acme)
    # The reply: the text out already has its outbox row, one per message.
    [their_message] = await birch._one("SELECT id FROM messages WHERE direction = 'in'")
    [my_message] = await acme._one("SELECT id FROM messages ORDER BY id LIMIT 1")
    now = time.time()
    rows = {
        "messages": ("INSERT INTO messages (conversation_id, direction, body, status, created_at)"
                     " VALUES (?, 'in', 'planted', 'received', ?)", "conversation"),
        "notes": ("INSERT INTO notes (conversation_id, owner_id, body, at)"
                  " VALUES (?, 'dana', 'planted', ?)", "conversation"),
        "media": ("INSERT INTO media (message_id, position, url, declared_type, created_at)"
                  " VALUES (?, 7, 'https://x/planted', 'image/jpeg', ?)", "message"),
        "outbox": ("INSERT INTO outbox (message_id, sender, recipient, due_at, first_due_at,"
                   " idempotency_key, updated_at) VALUES (?, '+1', '+2', 0, 0, 'planted', ?)",
                   "message"),
        "event_deliveries": ("INSERT INTO event_deliveries (event, endpoint, order_key, updated_at)"
                             " VALUES (?, 'planted', 'k', ?)", "event"),
    }
    their_ids = {"conversation": theirs["conversation"], "message": their_message,
                 "event": theirs["event"]}
    for table, (sql, kind) in rows.items():
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match=f"{table}_.*_fkey"):
            await execute(acme, sql, (their_ids[kind], now))
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match=f"{table}_.*_fkey"):
            await execute(acme, sql, (10**12, now))  # no such row: the same answer
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="calls_conversation_id_fkey"):
        await execute(acme, "UPDATE calls SET conversation_id = ? WHERE id = ?",
                      (theirs["conversation"], mine["call"]))
    assert (await birch.thread(theirs["conversation"]))["notes"] == []
    assert (await birch._one("SELECT COUNT(*) FROM media"))[0] == 1
    # The same rows naming acme's own conversation and message are taken.
    await execute(acme, rows["notes"][0], (mine["conversation"], now))
    await execute(acme, rows["media"][0], (my_message, now))
    await execute(acme, rows["event_deliveries"][0], (mine["event"], now))
    assert [n["body"] for n in (await acme.thread(mine["conversation"]))["notes"]] == ["planted"]


# The migrations after 36, which this code writes through (e.g. 37's `outbox.notice_owed`).
AFTER_36 = pg_migrations.MIGRATIONS[36:]


async def at_schema_35(url: str, monkeypatch) -> dict[str, PostgresStore]:
    """acme's and birch's stores on `url`, brought to schema 35 (before the references named
    the company): the migrations past it are hidden while they open. The migrations after 36
    are applied as well, as SQL, since this code writes through their columns; the store still
    says 35, and `past_36` opens it running 36 alone."""
    with monkeypatch.context() as patched:
        patched.setattr(pg_migrations, "MIGRATIONS", pg_migrations.MIGRATIONS[:35])
        stores = {slug: await PostgresStore.open(url, company=slug) for slug in ("acme", "birch")}
    with psycopg.connect(url) as db:
        # A table made later takes its rows' company from the session, as the store sets it.
        db.execute("SELECT set_config('textback.company', id::text, false) FROM companies"
                   " WHERE slug = 'acme'")
        for script in AFTER_36:
            db.execute(script)
    return stores


async def past_36(url: str, company: str, monkeypatch) -> PostgresStore:
    """The store of `company` opened by this textback from `at_schema_35`: migration 36 runs,
    those after it (applied already) are skipped."""
    with monkeypatch.context() as patched:
        patched.setattr(pg_migrations, "MIGRATIONS",
                        [*pg_migrations.MIGRATIONS[:36], *([""] * len(AFTER_36))])
        return await PostgresStore.open(url, company=company)


async def company_counts(stores: dict[str, PostgresStore]) -> dict[tuple[str, str], int]:
    return {(slug, table): (await store._one(f"SELECT COUNT(*) FROM {table}"))[0]
            for slug, store in stores.items() for table in pg_migrations.CURRENT_COMPANY_TABLES}


async def test_a_store_of_two_companies_at_35_upgrades(postgres_server, tmp_path, monkeypatch):
    """A fleet's database at schema 35 holding every kind of row of two companies, their ids
    interleaved: the references become per company, every row stays, both companies write on."""
    from lab.history import build_history
    from tests.test_migrate_store import everything_else
    url = postgres_server.new_database(owner=postgres_server.daemon_role())
    old = await at_schema_35(url, monkeypatch)
    for seed, (slug, store) in enumerate(old.items(), start=1):
        await build_history(store, 12, time.time() - 3600, seed=seed)
        await everything_else(store, MediaStore(Path(tmp_path) / slug), slug)
    before = await company_counts(old)
    for store in old.values():
        await store.close()
    assert all(columns[0] != "company_id" for *_, columns, _, _ in
               references_between_company_tables(url))
    assert before[("acme", "media")] and before[("birch", "outbox")]

    new = {slug: await past_36(url, slug, monkeypatch) for slug in ("acme", "birch")}
    try:
        assert await company_counts(new) == before
        for name, _, _, columns, keys, validated in references_between_company_tables(url):
            assert columns[0] == "company_id" and keys == ["company_id", "id"] and validated, name
        with psycopg.connect(url) as db:
            assert db.execute("SELECT version FROM schema_version").fetchone() == (
                len(pg_migrations.MIGRATIONS),)
        for slug, store in new.items():
            await store.record_call(missed(f"1800000000.{slug}"),
                                    PlannedText("dana", f"after the upgrade, {slug}", 0))
            assert len(await store.calls(0)) == before[(slug, "calls")] + 1
    finally:
        for store in new.values():
            await store.close()


async def test_a_row_naming_another_company_stops_the_upgrade(postgres_server, monkeypatch):
    """At 35 a row of acme could name birch's conversation; the migration that closes that
    finds it (its check reads past row-level security), refuses, and leaves the database at
    35 as it was, for a person to look at the row its error names."""
    url = postgres_server.new_database(owner=postgres_server.daemon_role())
    old = await at_schema_35(url, monkeypatch)
    try:
        for slug, store in old.items():
            await store.record_call(missed("1700000000.1"), PlannedText("dana", slug, 0))
        theirs = await ids_of_conversation(old["birch"])
        await execute(old["acme"], "INSERT INTO notes (conversation_id, owner_id, body, at)"
                                   " VALUES (?, 'dana', 'planted', 1)", (theirs,))
    finally:
        for store in old.values():
            await store.close()
    with pytest.raises(UpgradeRefused) as refused:
        await past_36(url, "acme", monkeypatch)
    message = str(refused.value)
    assert "upgrade to schema 36 stopped" in message and "stays at schema 35" in message
    # The table, the key and the row's ids: what a person needs to find the row.
    assert "notes; notes_conversation_id_fkey; Key (company_id, conversation_id)=(" in message
    assert f", {theirs}) is not present" in message
    assert isinstance(refused.value.__cause__, psycopg.errors.ForeignKeyViolation)
    with psycopg.connect(url) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (35,)
        assert all(columns[0] != "company_id" for *_, columns, _, _ in
                   references_between_company_tables(url))


async def ids_of_conversation(store: PostgresStore) -> int:
    return (await store.conversation_for(CALLER, NUMBER))["id"]
