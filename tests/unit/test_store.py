"""What only the SQLite store has: its file in the state folder, the schema and its
migrations, WAL, names kept as BLOBs, what outlives a reopening, read-only opening and
the health check. Everything the store promises is in store_contract/, run on
this backend and the in-memory one alike."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from folderseal.core.errors import StateUnavailable
from folderseal.store.sqlite import _SQL, SqliteStore, migrations
from tests.store_backends import T0, Clock, acquired, formed_batch


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "folderseal.sqlite"


@pytest.fixture
def store(db: Path, clock: Clock) -> Iterator[SqliteStore]:
    opened = SqliteStore(db, "node-a", clock=clock)
    yield opened
    opened.close()


def rows(db: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()


# -- schema ----------------------------------------------------------------------------------

def _normalised_schema(conn: sqlite3.Connection) -> set[tuple[str, str, str]]:
    found = set()
    for kind, name, sql in conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
        # A renamed table is quoted where SQLite rewrote its name: the same schema.
        text = re.sub(r"--[^\n]*", "", sql or "").replace('"', "")
        found.add((kind, name, " ".join(text.split())))
    return found


def test_schema_equals_all_migrations(tmp_path: Path) -> None:
    """Applying every migration gives exactly the tables and indexes of schema.sql."""
    from_migrations = sqlite3.connect(tmp_path / "migrated.sqlite")
    for _, sql in migrations():
        from_migrations.executescript(sql)
    from_schema = sqlite3.connect(tmp_path / "schema.sqlite")
    from_schema.executescript((_SQL / "schema.sql").read_text(encoding="utf-8"))
    try:
        expected = _normalised_schema(from_schema)
        assert {name for _, name, _ in expected} >= {"meta", "batches", "files", "events", "nodes"}
        assert _normalised_schema(from_migrations) == expected
    finally:
        from_migrations.close()
        from_schema.close()


def test_store_migrates_to_the_schema(store: SqliteStore, tmp_path: Path) -> None:
    """A new store file holds the schema.sql schema and records the last migration number."""
    reference = sqlite3.connect(tmp_path / "schema.sqlite")
    reference.executescript((_SQL / "schema.sql").read_text(encoding="utf-8"))
    migrated = sqlite3.connect(store.path)
    try:
        assert _normalised_schema(migrated) == _normalised_schema(reference)
        version = migrated.execute("PRAGMA user_version").fetchone()[0]
        assert version == max(n for n, _ in migrations())
    finally:
        reference.close()
        migrated.close()


def test_migrations_are_numbered_without_gaps() -> None:
    """Migrations are 1, 2, 3, … so none is skipped by a user_version check."""
    numbers = [n for n, _ in migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


def test_wal_mode_and_synchronous_full(store: SqliteStore) -> None:
    """The store uses WAL and synchronous = FULL (durable before the next step starts)."""
    journal = rows(store.path, "PRAGMA journal_mode")[0][0]
    assert journal.lower() == "wal"
    # synchronous is a per-connection setting: ask the store's own connection.
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_store_id_is_created_once(db: Path, clock: Clock) -> None:
    """A new store gets a random id that stays the same when it is opened again."""
    first = SqliteStore(db, "node-a", clock=clock)
    store_id = first.store_id
    first.close()
    assert re.fullmatch(r"[0-9a-f]{32}", store_id)
    second = SqliteStore(db, "node-b", clock=clock)
    try:
        assert second.store_id == store_id
    finally:
        second.close()
    other = SqliteStore(db.with_name("other.sqlite"), "node-a", clock=clock)
    try:
        assert other.store_id != store_id
    finally:
        other.close()


def test_open_creates_the_state_dir(tmp_path: Path) -> None:
    """SqliteStore.open makes state_dir and the SQLite file in it."""
    store = SqliteStore.open(tmp_path / "state" / "deep", "node-a")
    try:
        assert (tmp_path / "state" / "deep" / "folderseal.sqlite").is_file()
    finally:
        store.close()



# -- what is on disk -------------------------------------------------------------------------

def test_non_utf8_names_are_stored_as_blobs(store: SqliteStore) -> None:
    """A name with invalid UTF-8 (surrogateescape) is stored as its raw bytes, a BLOB."""
    store.add_claim(id="f1", folder="scans", source="sub/caf\udce9.txt", dev=1, ino=2, size=3,
                    mtime_ns=4, sha256=None, seen_at=T0)
    raw = rows(store.path, "SELECT typeof(source), source FROM files WHERE id = 'f1'")[0]
    assert raw[0] == "blob"
    assert bytes(raw[1]) == b"sub/caf\xe9.txt"


def test_postponed_attempts_survive_reopening(db: Path, clock: Clock) -> None:
    """The attempt count is on disk: a restarted daemon keeps backing off longer."""
    store = SqliteStore(db, "node-a", clock=clock)
    formed_batch(store)
    batch = acquired(store)
    store.postpone(batch, lambda n: 1.0, "transient", "down")
    clock.advance(1)
    batch = acquired(store)
    store.postpone(batch, lambda n: 1.0, "transient", "down")
    store.close()
    reopened = SqliteStore(db, "node-a", clock=clock)
    try:
        stored = reopened.batch("job1")
        assert stored is not None and stored.attempts == 2
        clock.advance(1)
        batch = acquired(reopened)
        assert batch.attempts == 2
        assert reopened.postpone(batch, lambda n: 100.0 * n, "transient", "down")[0] == 3
    finally:
        reopened.close()


def test_an_upload_noted_before_migration_4_stays_noted(db: Path, clock: Clock) -> None:
    """A batch waiting in CREATED whose upload was noted in an event (before the column
    existed) keeps it after the upgrade: it never gets a second upload."""
    old = sqlite3.connect(db)
    for number, sql in migrations():
        if number < 4:
            old.executescript(sql)
            old.execute(f"PRAGMA user_version = {number}")
    old.execute("INSERT INTO meta VALUES ('store_id', 'old')")
    old.execute("INSERT INTO jobs (id, folder, provider, state, remote_id, created_at, "
                "updated_at) VALUES ('j1', 'scans', 'seal', 'CREATED', 'r2', 1, 1)")
    for at, remote in ((5.0, "r1"), (7.0, "r2"), (9.0, "r2")):
        old.execute("INSERT INTO events (at, node, job_id, kind, detail) VALUES "
                    "(?, 'n', 'j1', 'batch.upload_sent', ?)", (at, remote))
    old.commit()
    old.close()
    store = SqliteStore(db, "node-a", clock=clock)
    try:
        assert store.upload_sent_at("j1", "r2") == 7.0
        assert store.upload_sent_at("j1", "r1") is None
        assert store.abandons("j1") == (0, 0)
    finally:
        store.close()


# -- reading only, and the health check ------------------------------------------------------

def test_a_store_opened_to_read_sees_everything_and_writes_nothing(
        store: SqliteStore, db: Path) -> None:
    """``folderseal status`` opens the store read only: it reads what the daemon wrote,
    and a write is refused as a state folder that takes no writes, the file unchanged."""
    batch = formed_batch(store)
    reader = SqliteStore.reading(db, "status")
    try:
        seen = reader.batch(batch.id)
        assert seen is not None and seen.state == batch.state
        assert reader.count_by_state() == {"scans": {"BATCHED": 2}}
        before = db.read_bytes()
        with pytest.raises(StateUnavailable, match="takes no writes"):
            reader.add_claim(id="f9", folder="scans", source="x.pdf", dev=1, ino=9, size=1,
                             mtime_ns=1, sha256=None, seen_at=T0)
        assert db.read_bytes() == before and store.file("f9") is None
    finally:
        reader.close()


def test_a_missing_store_is_not_made_by_reading(tmp_path: Path) -> None:
    """Opening to read makes no file where there is none."""
    with pytest.raises(sqlite3.OperationalError):
        SqliteStore.reading(tmp_path / "folderseal.sqlite", "status").nodes()
    assert not (tmp_path / "folderseal.sqlite").exists()


def test_why_unavailable_names_what_the_store_answers(store: SqliteStore, db: Path) -> None:
    """The health check reads the file on a connection of its own: None while it answers,
    SQLite's words once it does not (here: the file replaced by something else)."""
    assert store.why_unavailable() is None
    store.close()
    for name in ("folderseal.sqlite-wal", "folderseal.sqlite-shm"):
        (db.parent / name).unlink(missing_ok=True)
    db.write_bytes(b"not a database, just some bytes of something else" * 100)
    assert "not a database" in (store.why_unavailable() or "")


def test_connect_opens_another_connection_to_the_same_file(
        store: SqliteStore, db: Path) -> None:
    """Another thread's connection: the same file, as another node if asked, its own leases."""
    formed_batch(store)
    batch = acquired(store)
    other = store.connect("node-b")
    try:
        assert other.path == db and other.node == "node-b"
        seen = other.batch(batch.id)
        assert seen is not None and seen.claimed_by == batch.claimed_by
        again = store.connect()
        assert again.node == "node-a"
        again.close()
    finally:
        other.close()
