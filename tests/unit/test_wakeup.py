"""Wake-up on a PostgreSQL store (folderseal/store/wakeup.py and migration 0004): the
batches trigger notifies when a batch becomes runnable for another node, and the listener
calls back within a second, reconnects after its backend is killed, and ends promptly
when stopped. Each test works in a schema of its own (tests/postgres.py)."""

from __future__ import annotations

import io
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from folderseal.store import wakeup
from folderseal.store.postgres import PostgresStore
from tests.postgres import own_schema
from tests.store_backends import acquired, formed_batch

PASSWORD = "pw-Wake-never-shown"
PROMPTLY = 1.0  # seconds: what "within a second" means here


class Heard:
    """The listener's callback: counts its calls, and lets a test wait for the next."""

    def __init__(self) -> None:
        self.calls = 0
        self._changed = threading.Condition()

    def __call__(self) -> None:
        with self._changed:
            self.calls += 1
            self._changed.notify_all()

    def more_than(self, calls: int, timeout: float) -> bool:
        """Whether it was called more than ``calls`` times within ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self.calls > calls, timeout)


@pytest.fixture
def store(postgres_url: str, tmp_path: Path) -> Iterator[PostgresStore]:
    """Another node's store (migrated): what makes and releases batches."""
    opened = PostgresStore.open(postgres_url, "node-b", tmp_path, auto_migrate=True)
    yield opened
    opened.close()


class Listening:
    """:func:`wakeup.listen` on its own thread, as the daemon runs it."""

    def __init__(self, url: str, **options: float) -> None:
        self.node = f"node-{uuid.uuid4().hex[:8]}"
        self.heard = Heard()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=wakeup.listen,
                                       args=(url, self.node, self.heard, self.stop),
                                       kwargs=options, daemon=True)
        self.thread.start()

    def backends(self, url: str) -> list[int]:
        """The server processes of this listener's connections."""
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                (f"folderseal {self.node} wakeup",)).fetchall()
        return [pid for pid, in rows]

    def ended(self, timeout: float) -> bool:
        self.stop.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()


@pytest.fixture
def listening(store: PostgresStore, postgres_url: str) -> Iterator[Listening]:
    """A listener on the store's schema, once it listens (it calls back on connecting)."""
    running = Listening(postgres_url)
    assert running.heard.more_than(0, 10), "the listener never connected"
    yield running
    assert running.ended(5)


def test_a_new_batch_and_a_released_one_wake_the_listener_within_a_second(
        store: PostgresStore, listening: Listening) -> None:
    """Another connection makes a batch through the store: the callback runs within a
    second; taking it wakes nobody; releasing it wakes the listener again."""
    before = listening.heard.calls
    formed_batch(store, "job1")
    assert listening.heard.more_than(before, PROMPTLY)

    batch = acquired(store)
    time.sleep(0.5)  # the notification of the making, if late, is in by now
    before = listening.heard.calls
    store.renew_lease(batch.id)
    assert not listening.heard.more_than(before, 0.5)  # held: nothing for anyone to do

    store.release(batch, store.clock())
    assert listening.heard.more_than(before, PROMPTLY)


def test_after_its_backend_is_killed_the_listener_reconnects_and_wakes_again(
        debug_log: io.StringIO, store: PostgresStore, listening: Listening,
        postgres_url: str) -> None:
    """pg_terminate_backend of the listening connection: a warning names the cause and that
    polling goes on, the listener connects again after its first retry delay (calling back
    once: what was notified meanwhile is looked for), and the next new batch wakes it."""
    (pid,) = listening.backends(postgres_url)
    before = listening.heard.calls
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    assert listening.heard.more_than(before, wakeup.FIRST_RETRY_SECONDS + 10)
    new = listening.backends(postgres_url)
    assert len(new) == 1 and new != [pid]
    log = debug_log.getvalue()
    assert "store.wakeup_lost" in log and "server closed the connection" in log
    assert "reconnecting in 1 s; polling goes on" in log

    before = listening.heard.calls
    formed_batch(store, "job2")
    assert listening.heard.more_than(before, PROMPTLY)


def test_stopping_ends_the_listener_promptly_and_closes_its_connection(
        listening: Listening, postgres_url: str) -> None:
    assert listening.backends(postgres_url) != []
    started = time.monotonic()
    assert listening.ended(timeout=5)
    assert time.monotonic() - started < 2 * wakeup.STOP_CHECK_SECONDS + 0.5
    gone_by = time.monotonic() + 5  # the server ends the backend just after the close
    while listening.backends(postgres_url) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert listening.backends(postgres_url) == []


def test_a_quiet_listener_runs_its_keepalive_query(store: PostgresStore,
                                                   postgres_url: str) -> None:
    """With nothing notified, the listening connection runs ``SELECT 1`` after each
    keepalive period (its last query, as the server shows it)."""
    running = Listening(postgres_url, keepalive_seconds=0.3)
    try:
        assert running.heard.more_than(0, 10)
        deadline = time.monotonic() + 5
        last: list[tuple[object, ...]] = []
        while time.monotonic() < deadline:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                last = conn.execute("SELECT query FROM pg_stat_activity WHERE "
                                    "application_name = %s",
                                    (f"folderseal {running.node} wakeup",)).fetchall()
            if last == [("SELECT 1",)]:
                break
            time.sleep(0.1)
        assert last == [("SELECT 1",)]
    finally:
        assert running.ended(5)


def test_a_server_it_cannot_reach_is_retried_with_a_growing_delay_and_no_password(
        debug_log: io.StringIO) -> None:
    """No server at the URL: each failure is a warning (password never shown) naming the
    next delay, which doubles up to its bound; a stop during the wait ends it at once."""
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{_closed_port()}/test"
    running = Listening(url, max_retry_seconds=2.0)
    deadline = time.monotonic() + 15
    while debug_log.getvalue().count("store.wakeup_lost") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    assert running.ended(timeout=5)
    assert time.monotonic() - started < 1
    log = debug_log.getvalue()
    assert [f"reconnecting in {n} s" in log for n in (1, 2)] == [True, True]
    assert "reconnecting in 4 s" not in log
    assert running.heard.calls == 0
    assert PASSWORD not in log


def test_the_trigger_notifies_only_the_schema_of_the_store_and_only_runnable_batches(
        store: PostgresStore, postgres_url: str, postgres_server: str,
        tmp_path: Path) -> None:
    """On the store's channel, a batch made, released, resumed or due earlier notifies;
    taking it, renewing its lease or releasing it with nothing left to do does not. A
    listener of another store (another schema of the same database) hears none of it."""
    with own_schema(postgres_server) as other_url:
        other = PostgresStore.open(other_url, "node-c", tmp_path, auto_migrate=True)
        try:
            with _listener(other_url) as theirs, _listener(postgres_url) as ours:
                formed_batch(store, "job1")
                assert _heard(ours) == 1  # one transaction, one notification
                batch = acquired(store)
                store.renew_lease(batch.id)
                assert _heard(ours) == 0
                store.release(batch, None)  # nothing left to do: runnable for nobody
                assert _heard(ours) == 0
                store.resume_batch(batch, batch.state, "a test")  # due again, now
                assert _heard(ours) == 1
                batch = acquired(store)
                store.release(batch, store.clock() + 60)  # released, due later
                assert _heard(ours) == 1
                assert store.wake_batch(batch.id)  # due now rather than in a minute
                assert _heard(ours) == 1
                assert _heard(theirs) == 0
        finally:
            other.close()


def _closed_port() -> int:
    """A port of this host nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _listener(url: str) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(url, autocommit=True)
    (channel,), = conn.execute(wakeup._CHANNEL).fetchall()
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(str(channel))))
    return conn


def _heard(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The notifications that came in (within half a second of the last write)."""
    return sum(1 for _ in conn.notifies(timeout=0.5))
