"""The daemon's wake-up thread, in process: on a PostgreSQL store it listens on the
store's channel and wakes the batch threads; on SQLite it has nothing to do."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from folderseal.core import config
from folderseal.core.errors import ExitCode
from folderseal.service.daemon import Daemon
from folderseal.store import wakeup
from tests.helpers import Layout

LISTENER = "folderseal test-node wakeup"  # the application_name of its connection


def _listeners(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (LISTENER,)).fetchone()
    return int(row[0]) if row else 0


def test_on_postgresql_a_notification_wakes_the_batch_threads_and_stop_ends_the_listener(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running daemon on a PostgreSQL store keeps one listening connection; a
    notification on its store's channel (what the trigger sends for a new batch) wakes the
    batch threads at once; once the daemon stopped the connection is gone."""
    layout = Layout(tmp_path)
    layout.extra = f'\n[store]\nurl = "{postgres_url}"\nauto_migrate = true\n'
    layout.write()
    daemon = Daemon(config.load(layout.config), batch_threads=1)
    daemon.prepare()
    woken = threading.Semaphore(0)
    wake_batch_threads = daemon._batches_ready

    def counted() -> None:
        woken.release()
        wake_batch_threads()

    monkeypatch.setattr(daemon, "_batches_ready", counted)  # what the listener calls
    seen: dict[str, object] = {}

    def check_then_stop() -> None:
        try:
            seen["connected"] = woken.acquire(timeout=20)  # called back once it listens
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                (channel,), = conn.execute(wakeup._CHANNEL).fetchall()
                seen["listening"] = _listeners(postgres_url)
                conn.execute("SELECT pg_notify(%s, '')", (channel,))
            seen["woken"] = woken.acquire(timeout=1)
        finally:
            daemon.stop.set()

    checker = threading.Thread(target=check_then_stop)
    checker.start()
    unstopped = threading.Timer(60, daemon.stop.set)  # else a daemon that runs on
    unstopped.start()
    try:
        started = time.monotonic()
        assert daemon.run() == ExitCode.OK
    finally:
        unstopped.cancel()
        checker.join()
    assert seen == {"connected": True, "listening": 1, "woken": True}
    assert time.monotonic() - started < 30
    gone_by = time.monotonic() + 5  # the server ends the backend just after the close
    while _listeners(postgres_url) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert _listeners(postgres_url) == 0
