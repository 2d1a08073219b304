"""What only the PostgreSQL store has: its schema and migrations (and two nodes migrating
at once), refusing a schema not migrated (one for newer code only: test_store_versions.py),
its connections (settings, a server that cuts them, messages without the URL's password),
reading only, and time taken from the database's clock. Everything the store promises is
in store_contract/, run on this backend too. Each test works in a schema of its own
(tests/postgres.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from folderseal.core.errors import ConfigError, FolderSealError, StateUnavailable
from folderseal.store import LEASE_SECONDS, pgconnect, postgres
from folderseal.store.postgres import QUERIES, PostgresStore, _psycopg, migrate, migrations
from folderseal.store.sqlite import QUERIES as SQLITE_QUERIES
from folderseal.store.sqltext import SQL
from tests.postgres import own_schema
from tests.store_backends import acquired, claim, formed_batch

PASSWORD = "pw-S3cret-never-shown"


@pytest.fixture
def url(postgres_url: str) -> str:
    """A URL whose connections work in a schema of this test's own, not migrated yet."""
    return postgres_url


@pytest.fixture
def store(url: str, tmp_path: Path) -> Iterator[PostgresStore]:
    """The daemon's store: migrated at opening, on the database's clock."""
    opened = PostgresStore.open(url, "node-a", tmp_path, auto_migrate=True)
    yield opened
    opened.close()


def sql(url: str, query: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params or None)
        return cursor.fetchall() if cursor.description else []


def database_time(url: str) -> float:
    (now,), = sql(url, "SELECT extract(epoch FROM clock_timestamp())")
    return float(str(now))


# -- queries, schema, migrations -----------------------------------------------------------

def test_queries_are_the_shared_ones_in_psycopg_form() -> None:
    """PostgreSQL answers the same query names as SQLite; :name becomes %(name)s, a cast's
    :: and a LIKE's % stay what they are, and a comment's :name is no parameter."""
    assert set(QUERIES) == set(SQLITE_QUERIES)
    converted = _psycopg("-- :holder is a comment\nSELECT CAST(:a AS jsonb)::text, x::int "
                         "FROM t WHERE y LIKE :b || '/%' AND z = :now")
    assert converted == ("SELECT CAST(%(a)s AS jsonb)::text, x::int FROM t "
                         "WHERE y LIKE %(b)s || '/%%' AND z = %(now)s")
    assert _psycopg("SELECT :now, :nowhere", "clock()") == "SELECT clock(), %(nowhere)s"


def _catalog(url: str, schema: str) -> set[tuple[object, ...]]:
    """The tables' columns, constraints, indexes and triggers, and the functions, of
    ``schema``, as PostgreSQL has them."""
    columns = sql(url, "SELECT table_name, column_name, data_type, is_nullable, column_default,"
                       " is_identity, collation_name FROM information_schema.columns"
                       " WHERE table_schema = %s", schema)
    constraints = sql(url, "SELECT conrelid::regclass::text, conname,"
                           " pg_get_constraintdef(c.oid) FROM pg_constraint c"
                           " JOIN pg_namespace n ON n.oid = c.connamespace WHERE nspname = %s",
                      schema)
    indexes = [(table, name, str(definition).replace(f"{schema}.", "")) for table, name, definition
               in sql(url, "SELECT tablename, indexname, indexdef FROM pg_indexes"
                           " WHERE schemaname = %s", schema)]
    triggers = [(str(d).replace(f"{schema}.", ""),) for d, in sql(
        url, "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c"
             " ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
             " WHERE nspname = %s AND NOT tgisinternal", schema)]
    functions = [(str(d).replace(f"{schema}.", ""),) for d, in sql(
        url, "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
             " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = %s", schema)]
    return {("column", *r) for r in columns} | {("constraint", *r) for r in constraints} | \
        {("index", *r) for r in indexes} | {("trigger", *r) for r in triggers} | \
        {("function", *r) for r in functions}


def test_schema_equals_all_migrations(postgres_server: str) -> None:
    """Applying every migration gives exactly the tables, columns, constraints, indexes,
    triggers and functions of postgresql/schema.sql."""
    with own_schema(postgres_server) as migrated, own_schema(postgres_server) as written:
        for _, script in migrations():
            sql(migrated, script)
        sql(written, (SQL / "postgresql" / "schema.sql").read_text(encoding="utf-8"))
        first, second = (sql(u, "SELECT current_schema()")[0][0] for u in (migrated, written))
        expected = _catalog(written, str(second))
        assert len(expected) > 60  # the catalog was read at all
        assert {"trigger", "function"} <= {kind for kind, *_ in expected}
        assert _catalog(migrated, str(first)) == expected


def test_migrations_are_numbered_without_gaps() -> None:
    numbers = [n for n, _ in migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


def test_migrate_applies_each_migration_once_and_records_it(url: str) -> None:
    """The first migrate applies every migration and makes the store's id; the next one
    applies nothing; the schema records each version and the code that applied it."""
    latest = migrations()[-1][0]
    assert migrate(url) == list(range(1, latest + 1))
    store_id = sql(url, "SELECT value FROM meta WHERE key = 'store_id'")
    assert migrate(url) == []
    assert sql(url, "SELECT value FROM meta WHERE key = 'store_id'") == store_id
    assert sql(url, "SELECT version, applied_by FROM schema_migrations ORDER BY version") == \
        [(n, "0.1.0") for n in range(1, latest + 1)]


def test_two_nodes_migrating_at_once_apply_each_migration_once(url: str) -> None:
    """Two threads (as two nodes starting with auto_migrate) migrate the same empty store
    at the same moment: the advisory lock lets one apply everything, the other nothing."""
    start = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(migrate(url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [[], [n for n, _ in migrations()]]
    assert sql(url, "SELECT count(*) FROM schema_migrations") == [(len(migrations()),)]
    assert sql(url, "SELECT count(*) FROM meta WHERE key = 'store_id'") == [(1,)]


# -- refusing a schema it cannot use -------------------------------------------------------

def test_open_without_auto_migrate_refuses_a_store_not_migrated(url: str,
                                                                tmp_path: Path) -> None:
    """Without auto_migrate a node never changes the schema: an empty database, or one a
    migration behind, is refused with the command that fixes it."""
    with pytest.raises(ConfigError, match="no folderseal schema: run 'folderseal migrate'"):
        PostgresStore.open(url, "node-a", tmp_path, auto_migrate=False)
    # One migration behind: every migration but the latest applied, as an older
    # folderseal's migrate left the schema.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(postgres._OWN["create_migrations_table"], {})
        for number, text in migrations()[:-1]:
            conn.execute(text)  # a migration script, as migrate runs it
            conn.execute(postgres._OWN["record_migration"], {"version": number, "code": "0"})
    with pytest.raises(ConfigError, match=r"needs version \d+: run 'folderseal migrate'"):
        PostgresStore.open(url, "node-a", tmp_path, auto_migrate=False)
    with pytest.raises(ConfigError, match="run 'folderseal migrate'"):
        PostgresStore.reading(url, "status", tmp_path)
    migrate(url)  # what 'folderseal migrate' does: the missing one applied
    opened = PostgresStore.open(url, "node-a", tmp_path, auto_migrate=False)
    assert opened.state_dir == tmp_path and not any(tmp_path.iterdir())  # nothing kept there
    opened.close()


# -- connections ----------------------------------------------------------------------------

def test_connections_set_keepalives_and_an_idle_in_transaction_timeout(
        store: PostgresStore) -> None:
    """A node cut off finds out by its keepalives; one paused in a transaction loses its
    session (and its row locks) before its leases would lapse."""
    conn = store._conn  # the connection's settings are the point
    params = conn.info.get_parameters()
    assert params["keepalives"] == "1" and int(params["keepalives_idle"]) <= 30
    assert int(params["tcp_user_timeout"]) > 0
    timeout = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
    assert timeout is not None and timeout[0] == f"{int(LEASE_SECONDS / 2)}s"


def test_the_idle_in_transaction_timeout_follows_the_configured_lease(
        url: str, tmp_path: Path) -> None:
    """[store] lease_seconds = 12: a session idle in a transaction ends after 6 s, on
    every connection of the store (another thread's too)."""
    store = PostgresStore.open(url, "node-a", tmp_path, auto_migrate=True, lease_seconds=12)
    other = store.connect()
    try:
        for conn in (store._conn, other._conn):
            shown = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
            assert shown is not None and shown[0] == "6s"
    finally:
        other.close()
        store.close()


def test_a_session_ended_idle_in_a_transaction_is_transient_and_reopened(
        url: str, tmp_path: Path) -> None:
    """A node paused inside a transaction past half its lease finds its session ended by
    the server (SQLSTATE 25P03, not an OperationalError): StateUnavailable, as any cut
    connection (the caller retries, never crashes), and the next call connects again."""
    store = PostgresStore.open(url, "node-a", tmp_path, auto_migrate=True, lease_seconds=2)
    try:
        with pytest.raises(StateUnavailable, match="cannot be reached"), store.transaction():
            store.clock()
            time.sleep(1.6)  # idle in the transaction past 1 s: the server ends it
            store.clock()
        assert store.clock() > 0
    finally:
        store.close()


def _url_with_password(url: str, **changes: object) -> str:
    return make_conninfo(url, password=PASSWORD, **changes)


def _messages(exc: BaseException) -> str:
    """Every message an exception carries, its causes and contexts too."""
    found: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        found += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(found)


def test_a_password_in_the_url_never_shows_in_a_message(url: str, tmp_path: Path) -> None:
    """A server down, a URL libpq cannot read, a URL it refuses, the health check: each
    says what to do, and none says the URL's password."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down = _url_with_password(url, port=closed_port, connect_timeout=2)
    with pytest.raises(StateUnavailable, match="check that the database server") as refused:
        PostgresStore(down, "node-a", tmp_path)
    raised: list[BaseException] = [refused.value]
    for bad in (f"postgresql://folderseal:{PASSWORD}%zz@db.example.org/folderseal",
                f"host=db.example.org password={PASSWORD} sslmode",
                f"postgresql://folderseal:{PASSWORD}@127.0.0.1/x?no_such_option=1"):
        with pytest.raises(FolderSealError) as failed:
            PostgresStore.open(bad, "node-a", tmp_path, auto_migrate=True)
        raised.append(failed.value)
    migrate(url)
    store = PostgresStore(_url_with_password(url), "node-a", tmp_path)  # trust: unused
    try:
        assert store.why_unavailable() is None
        store._url = down  # the server gone, as the health check sees it
        why = store.why_unavailable()
        assert why is not None and "refused" in why.lower()
        assert PASSWORD not in why
    finally:
        store.close()
    # A server's message that would quote it (none known does) is masked all the same.
    raised.append(pgconnect.unavailable(down, psycopg.OperationalError(f"no: {PASSWORD}")))
    for exc in raised:
        assert PASSWORD not in _messages(exc), _messages(exc)


def test_a_connection_the_server_cut_is_unavailable_then_opened_again(
        store: PostgresStore, url: str) -> None:
    """The server ends the session (a restart, a failover, an admin): the next call is
    StateUnavailable (transient: folderseal retries), and the one after it works on a
    new connection."""
    claim(store, "f1")
    pid = store._conn.info.backend_pid  # the session to end
    sql(url, "SELECT pg_terminate_backend(%s)", pid)
    with pytest.raises(StateUnavailable, match="cannot be reached"):
        store.file("f1")
    record = store.file("f1")
    assert record is not None and record.id == "f1"
    assert store._conn.info.backend_pid != pid


def test_a_transaction_the_server_cut_is_undone_and_unavailable(
        store: PostgresStore, url: str) -> None:
    """A session ended mid-transaction: nothing of it is kept, and the store says so as
    StateUnavailable; the next transaction runs on a new connection."""
    with pytest.raises(StateUnavailable), store.transaction():
        claim(store, "f1")
        sql(url, "SELECT pg_terminate_backend(%s)", store._conn.info.backend_pid)
        claim(store, "f2")
    assert store.file("f1") is None and store.file("f2") is None
    claim(store, "f3")
    assert store.file("f3") is not None


def test_a_column_added_under_a_running_node_breaks_none_of_its_queries(
        store: PostgresStore, url: str) -> None:
    """A rolling upgrade: a newer node migrates (an added column) while this one runs on;
    its queries, run many times before, still answer (no plan is cached on the server)."""
    claim(store, "f1")
    for _ in range(10):
        assert store.file("f1") is not None
    sql(url, "ALTER TABLE files ADD COLUMN added_by_a_newer_node TEXT")
    record = store.file("f1")
    assert record is not None and record.id == "f1"


def test_a_store_opened_to_read_sees_everything_and_writes_nothing(
        store: PostgresStore, url: str, tmp_path: Path) -> None:
    """``folderseal status`` reads what the daemon wrote; the server refuses its writes,
    and the store says so as a store that takes no writes."""
    batch = formed_batch(store)
    reader = PostgresStore.reading(url, "status", tmp_path)
    try:
        seen = reader.batch(batch.id)
        assert seen is not None and seen.state == batch.state
        assert reader.count_by_state() == {"scans": {"BATCHED": 2}}
        with pytest.raises(StateUnavailable, match="takes no writes"):
            claim(reader, "f9")
        assert store.file("f9") is None
        assert reader.connect().count_by_state() == {"scans": {"BATCHED": 2}}
    finally:
        reader.close()


# -- time from the database -----------------------------------------------------------------

def test_a_store_without_a_clock_stamps_with_the_database_clock(
        store: PostgresStore, url: str) -> None:
    """Its clock is the database's; events and claims are stamped by clock_timestamp()
    (not now(): two events of one transaction are apart by the time between them)."""
    before = database_time(url)
    assert before <= store.clock() <= database_time(url)
    with store.transaction():
        claim(store, "f1")
        time.sleep(0.2)
        store.event("file.note", file_id="f1")
    after = database_time(url)
    claimed, noted = store.events(file_id="f1")
    assert before <= claimed.at < noted.at <= after
    assert noted.at - claimed.at >= 0.2
    record = store.file("f1")  # claimed by the statement before the event's
    assert record is not None and before <= record.claimed_at <= claimed.at


def test_a_lease_on_the_database_clock_lapses_by_it(url: str, tmp_path: Path) -> None:
    """A lease taken on the database's clock runs out by that clock: another node (on it
    too) finds the batch taken, then free once the lease's time has passed there."""
    store = PostgresStore.open(url, "node-a", tmp_path, auto_migrate=True, lease_seconds=0.5)
    formed_batch(store)
    before = store.clock()
    batch = acquired(store)
    assert batch.lease_until is not None and 0.5 <= batch.lease_until - before < 1.5
    other = store.connect("node-b")
    try:
        assert other.acquire_batch() is None
        time.sleep(max(0.0, batch.lease_until - other.clock()) + 0.05)
        taken = other.acquire_batch()
        assert taken is not None and taken.id == batch.id
        assert taken.claimed_by is not None and taken.claimed_by.startswith("node-b/")
        assert taken.epoch == batch.epoch + 1
    finally:
        other.close()
        store.close()


def test_a_steps_write_keeps_a_takeover_out_until_it_commits(url: str,
                                                             tmp_path: Path) -> None:
    """A write of a batch's step checks the lease first and locks the batch's row: while
    the write's transaction is open, no other node takes the batch over, even once the
    lease's time has passed; after it commits, the batch is taken, and the late node's
    next write is refused (LeaseLost)."""
    from folderseal.core.errors import LeaseLost

    store = PostgresStore.open(url, "node-a", tmp_path, auto_migrate=True, lease_seconds=0.5)
    formed_batch(store)
    batch = acquired(store)
    [first, _] = store.files_of_batch(batch.id)
    other = store.connect("node-b")
    try:
        with store.holding(batch.id):
            with store.transaction():  # the lease checked: the row is this write's
                assert batch.lease_until is not None
                # Busy past the lease (a transaction idle for half a lease is ended by
                # the server: a paused node loses its locks that way).
                wait = max(0.0, batch.lease_until - other.clock()) + 0.1
                store._conn.execute("SELECT pg_sleep(%s)", (wait,))
                assert other.acquire_batch() is None  # lapsed, but locked
                store.note_remote_document(batch.id, first.id, {"batch": "r1", "id": None})
            taken = other.acquire_batch()
            assert taken is not None and taken.epoch == batch.epoch + 1
            with pytest.raises(LeaseLost):
                store.note_remote_document(batch.id, first.id, {"batch": "r1", "id": "d1"})
        assert store.remote_documents(batch.id) == {first.id: {"batch": "r1", "id": None}}
    finally:
        other.close()
        store.close()


def test_the_lease_keeper_does_not_queue_behind_a_steps_write(url: str,
                                                              tmp_path: Path) -> None:
    """The lease keeper (a connection of the same node) renews without waiting: a batch
    whose row a step's write holds is left for its next round, where the renewal goes
    through; so one long write never starves the node's other leases."""
    store = PostgresStore.open(url, "node-a", tmp_path, auto_migrate=True)
    formed_batch(store)
    batch = acquired(store)
    keeper = store.connect()  # shares the node's leases
    try:
        with store.holding(batch.id), store.transaction():
            started = time.monotonic()
            keeper.renew_lease(batch.id, wait=False)
            assert time.monotonic() - started < 1.0
            renewed = keeper.batch(batch.id)
            assert renewed is not None and renewed.lease_until == batch.lease_until
        keeper.renew_lease(batch.id, wait=False)
        renewed = keeper.batch(batch.id)
        assert renewed is not None and renewed.lease_until is not None
        assert batch.lease_until is not None and renewed.lease_until > batch.lease_until
    finally:
        keeper.close()
        store.close()


def test_a_postponed_batch_is_due_by_the_database_clock(store: PostgresStore) -> None:
    """The next attempt is the database's time plus the delay, computed by the database,
    and the time postpone answers is the one recorded."""
    formed_batch(store)
    batch = acquired(store)
    before = store.clock()
    attempts, at = store.postpone(batch, lambda n: 30.0 * n, "busy", "later")
    recorded = store.batch(batch.id)
    assert attempts == 1 and recorded is not None and recorded.next_attempt_at == at
    assert before + 30.0 <= at <= store.clock() + 30.0
    assert store.next_due() == at
