"""A provider's request limit kept for the whole fleet, in the PostgreSQL store.

On one node a provider spaces its calls with its own limiter
(:class:`~folderseal.providers.http.RateLimiter`); in a fleet every node would then
spend the whole budget by itself. :class:`SharedBudget` keeps the same rules with the
turns reserved in the database: the row of the limit's key holds the first start not
yet reserved, and reserving a turn is one atomic statement (``budgets.sql``), so nodes
never wait on each other's locks. The wait is the difference of two readings of the
database's clock taken by that one statement; a node's own clock is never compared
with a time the database or another node wrote (it only measures the sleep).

The budget satisfies the providers' ``RequestBudget`` protocol structurally (the store
does not import the providers; the daemon hands it over: ``service/budgets.py``). It
keeps its own connection, opened at first use and again after it was cut, and serves
every batch thread (one statement at a time; nobody sleeps under its lock). When the
database cannot be reached, no turn is given: the call raises :class:`NotSent` (nothing
was sent; the batch waits and tries again), never goes out without a turn.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import psycopg

from folderseal.core.errors import ConfigError, NotSent, StateUnavailable, Throttled
from folderseal.store import pgconnect
from folderseal.store.postgres import on_the_database
from folderseal.store.sqltext import SQL

_QUERIES = on_the_database(SQL / "postgresql" / "budgets.sql")
MAX_SLEEP = 1.0          # a turn this close is slept until; a later one is Throttled
MAX_TICKETS = 10_000     # holders that never came back (their batch went to another node)
VOID_AFTER = 60.0        # a ticket its holder did not use for this long is given up
# A batch thread waits this long at most for the database before its call gives up.
TIMEOUT_SECONDS = 5.0


class SharedBudget:
    """Request starts ``60 / per_minute`` seconds apart across every node using ``key``.

    The rules of the local limiter: a turn within :data:`MAX_SLEEP` seconds is slept
    until; a later one is kept as a ticket for its ``holder`` (a batch) and the caller
    gets :class:`Throttled` with the seconds until it. The ticket is this node's memory
    of a start the database already reserved for it (no other node can take it), so a
    holder that comes back uses it and no later caller overtakes it.

    :meth:`hold_for` (a 429's Retry-After) moves the shared first free start past the
    hold, for every node. A ticket reserved before a hold that falls within it cannot be
    moved on the nodes that hold it (no node knows another's tickets), so it is given up
    when its holder comes back and a new turn is reserved after the hold. That is safe:
    the limit still holds (every start is a turn the database reserved, and no turn in a
    hold is used), and the holder loses its place once per hold at most (it queues again
    behind the callers that came during the hold; the queue is first come first served,
    so it is never starved). The local limiter keeps such tickets' order instead; only
    the order differs."""

    def __init__(self, url: str, node: str, key: str, per_minute: float,
                 what: str = "the provider",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url
        self.node = node
        self.key = key
        self.per_minute = per_minute
        self.spacing = 60.0 / per_minute
        self.what = what
        self.sleep = sleep
        self._lock = threading.Lock()   # the one connection, one statement at a time
        self._conn: pgconnect.Connection | None = None
        self._tickets: OrderedDict[str, float] = OrderedDict()   # holder → start (database)

    def wait(self, holder: str = "") -> float:
        """Wait for this request's turn (the seconds waited), or raise :class:`Throttled`
        when it is more than MAX_SLEEP seconds away (kept for ``holder``); :class:`NotSent`
        when the database cannot give one."""
        with self._lock:
            start = self._tickets.pop(holder, None) if holder else None
            if start is not None:
                try:
                    held_until, now = self._run("held")
                except NotSent:
                    self._tickets[holder] = start   # still its own when the database is back
                    raise
                # Used even when its holder comes back late; one a minute old is void.
                if start < held_until or start < now - VOID_AFTER:
                    start = None
            if start is None:
                start, now = self._run("reserve", spacing=self.spacing)
            wait = start - now
            if wait > MAX_SLEEP:
                if holder:
                    self._tickets[holder] = start
                    if len(self._tickets) > MAX_TICKETS:
                        self._tickets.popitem(last=False)
                raise Throttled(f"{self.what}'s request budget (max_requests_per_minute = "
                                f"{self.per_minute:g}, shared by every node of the fleet) is "
                                f"spent for now; this call waits {wait:.0f} s for its turn",
                                retry_after=wait)
        if wait > 0:
            self.sleep(wait)
        return max(0.0, wait)

    def hold_for(self, seconds: float) -> None:
        """No call of any node starts for ``seconds`` from now (a 429's Retry-After).
        When the database cannot be reached the hold is skipped: the caller is told to
        wait all the same, and no turn is given until the database answers again."""
        with self._lock, contextlib.suppress(NotSent):
            self._run("hold", seconds=seconds)

    def close(self) -> None:
        """Close the connection (the next call opens another)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, name: str, **params: Any) -> tuple[float, float]:
        """Run one of ``budgets.sql``'s statements (under the lock); its row as floats
        ((0, 0) for a statement that returns none)."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = pgconnect.connect(
                    self.url, self.node, timeout=TIMEOUT_SECONDS,
                    statement_timeout_ms=int(TIMEOUT_SECONDS * 1000))
            cursor = self._conn.execute(_QUERIES[name], {"key": self.key, **params})
            row = cursor.fetchone() if cursor.description else (0.0, 0.0)
        except (StateUnavailable, ConfigError, psycopg.Error) as exc:
            if self._conn is not None and self._conn.broken:
                self._conn = None   # opened again at the next call
            reason = pgconnect.masked(" ".join(str(exc).split()), self.url)
            raise NotSent(f"{self.what}'s request budget, shared by the fleet in the "
                          f"PostgreSQL store {pgconnect.describe(self.url)}, cannot be read "
                          f"({reason}); nothing was sent without a turn, and the call is "
                          "tried again later: check that the database server is running "
                          "and reachable from this host") from None
        assert row is not None
        return float(row[0]), float(row[1])
