"""Wake-up on a PostgreSQL store: idle batch threads learn at once that work appeared.

The batches table's trigger (migration 0004) notifies the store's channel when a batch
becomes runnable for any node: made, released, or due earlier. :func:`listen` keeps a
connection of its own listening on that channel and calls back on each notification;
the batch threads then look for work instead of sleeping out their poll.

A notification is only a hint: nothing is read from it, and none is needed. Polling the
store (``next_due`` on the database's clock) goes on beside it, so a notification lost
while the listener was away (the server restarted, the network cut) costs at most one
poll's delay. So a lost connection is a warning, never a failure: the listener waits a
bounded, growing delay and connects again until it is stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from folderseal.core.errors import ConfigError, StateUnavailable
from folderseal.core.logs import get as get_logger
from folderseal.store import pgconnect
from folderseal.store.sqltext import SQL, read_queries

KEEPALIVE_SECONDS = 5.0   # an idle connection runs a query this often: a dead one shows
STOP_CHECK_SECONDS = 0.25  # how long a wait for notifications may hold up a stop
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0
STATEMENT_TIMEOUT_MS = 10_000  # LISTEN and the keepalive query take no longer than this

_CHANNEL = read_queries(SQL / "postgresql" / "plumbing.sql")["wakeup_channel"]


def listen(url: str, node: str, on_notify: Callable[[], None], stop: threading.Event, *,
           keepalive_seconds: float = KEEPALIVE_SECONDS,
           max_retry_seconds: float = MAX_RETRY_SECONDS) -> None:
    """Call ``on_notify`` for each notification of the store at ``url`` until ``stop`` is
    set; reconnect (after FIRST_RETRY_SECONDS, doubling up to ``max_retry_seconds``)
    whenever the connection is lost. ``on_notify`` is also called after each connection
    is made: what was notified while nobody listened is looked for at once."""
    log = get_logger(node=node)
    retry = FIRST_RETRY_SECONDS
    while not stop.is_set():
        try:
            with _listening(url, node) as conn:
                retry = FIRST_RETRY_SECONDS  # listening again: the next loss starts over
                on_notify()
                _wait(conn, on_notify, stop, keepalive_seconds)
        except (ConfigError, StateUnavailable, psycopg.Error) as exc:
            if stop.is_set():
                return
            reason = pgconnect.masked(" ".join(str(exc).split()), url)
            log.warning("store.wakeup_lost", store=pgconnect.describe(url), reason=reason,
                        next_step=f"reconnecting in {retry:g} s; polling goes on, so no "
                        "batch waits for long meanwhile (if this repeats, check that the "
                        "database server answers)")
            stop.wait(retry)
            retry = min(retry * 2, max_retry_seconds)


def _listening(url: str, node: str) -> pgconnect.Connection:
    """A new autocommit connection (pgconnect's keepalives and timeouts), listening."""
    conn = pgconnect.connect(url, f"{node} wakeup", statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    try:
        row = conn.execute(_CHANNEL).fetchone()
        channel = None if row is None else row[0]
        if channel is None:
            raise ConfigError("the store has no batches table in its search path: run "
                              "'folderseal migrate'")
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    except BaseException:
        conn.close()
        raise
    return conn


def _wait(conn: pgconnect.Connection, on_notify: Callable[[], None], stop: threading.Event,
          keepalive_seconds: float) -> None:
    """Call back on each notification until ``stop``; a query after ``keepalive_seconds``
    of quiet proves the connection alive (a lost one raises psycopg.Error)."""
    heard_at = time.monotonic()
    while not stop.is_set():
        # Returns at its timeout: a stop is seen within STOP_CHECK_SECONDS.
        for _ in conn.notifies(timeout=STOP_CHECK_SECONDS):
            heard_at = time.monotonic()
            on_notify()
        if time.monotonic() - heard_at >= keepalive_seconds:
            conn.execute("SELECT 1")  # a notification it brings waits for notifies()
            heard_at = time.monotonic()
