"""Connections to the PostgreSQL store, and what their failures say.

Every connection sets what a fleet needs of it: TCP keepalives and a user timeout (a
node cut off from the database finds out in seconds, not at the kernel's two hours),
and ``idle_in_transaction_session_timeout`` (a node paused inside a transaction — SIGSTOP,
a hung disk — loses its session and its row locks well before its leases lapse, so the
batches it held can be taken over). A failure to reach the server is
:class:`~folderseal.core.errors.StateUnavailable` (transient: folderseal retries), and no
message ever carries the URL's password.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import RowMaker

from folderseal.core.errors import ConfigError, StateUnavailable
from folderseal.core.redact import MASK, REDACTOR
from folderseal.store import LEASE_SECONDS

CONNECT_TIMEOUT = 10  # seconds; the store is unavailable after that
# A session idle inside a transaction this long is ended by the server (its locks
# released) while the leases it may hold still have half their time to go.
def idle_ms(lease_seconds: float) -> int:
    """How long a session may sit idle inside a transaction: half a lease, so a node
    paused in one loses its row locks before its leases could be taken over."""
    return int(lease_seconds * 1000 / 2)


KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3, "tcp_user_timeout": 30_000}


class Row(dict[str, Any]):
    """A row: its columns by name, or by position, as sqlite3.Row is read."""

    __slots__ = ("_values",)

    def __init__(self, names: list[str], values: tuple[Any, ...]) -> None:
        super().__init__(zip(names, values, strict=True))
        self._values = values

    def __getitem__(self, key: str | int) -> Any:
        return self._values[key] if isinstance(key, int) else super().__getitem__(key)


def rows(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    """psycopg's row factory for :class:`Row`."""
    names = [column.name for column in cursor.description or ()]

    def make(values: Any) -> Row:
        return Row(names, tuple(values))
    return make


Connection = psycopg.Connection[Row]


def _parsed(url: str) -> dict[str, Any] | None:
    """The URL's connection parameters; None if libpq cannot read it (its message may
    quote the URL, password and all, so it is dropped here)."""
    try:
        return conninfo_to_dict(url)
    except psycopg.Error:
        return None


def masked(text: str, url: str) -> str:
    """``text`` without the URL's password (nor any secret registered elsewhere)."""
    password = (_parsed(url) or {}).get("password")
    if password:
        text = text.replace(str(password), MASK)
    return REDACTOR.text(text)


def describe(url: str) -> str:
    """Where the store is, for a message: ``user@host:port/database``, never a password."""
    params = _parsed(url)
    if params is None:
        return "(a store URL that cannot be read)"
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    return masked(f"{user}{params.get('host') or 'localhost'}{port}/{params.get('dbname') or ''}",
                  url)


def unavailable(url: str, exc: psycopg.Error) -> StateUnavailable:
    """What to say when the server cannot be reached, or takes no writes now."""
    reason = masked(" ".join(str(exc).split()), url)
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return StateUnavailable(
            f"the PostgreSQL store {describe(url)} takes no writes now ({reason}): it is "
            "opened to read, or the URL reaches a standby; point [store] url at the "
            "primary; folderseal retries")
    return StateUnavailable(
        f"the PostgreSQL store {describe(url)} cannot be reached ({reason}): check that the "
        "database server is running and that this host reaches it over the network "
        "(firewall, DNS, credentials); folderseal retries")


def connect(url: str, node: str, *, read_only: bool = False, timeout: float = CONNECT_TIMEOUT,
            statement_timeout_ms: int = 0, lease_seconds: float = LEASE_SECONDS) -> Connection:
    """A new connection (autocommit: :meth:`PostgresStore.transaction` opens transactions)."""
    params = _parsed(url)
    if params is None:
        raise ConfigError("the store URL cannot be read: write it as "
                          "postgresql://user@host:port/database")
    settings = [params.get("options") or "",  # the URL's own (a search_path, say) first
                f"-c idle_in_transaction_session_timeout={idle_ms(lease_seconds)}"]
    if read_only:  # status and the health check: the server refuses their writes
        settings.append("-c default_transaction_read_only=on")
    if statement_timeout_ms:
        settings.append(f"-c statement_timeout={statement_timeout_ms}")
    params.update(KEEPALIVES, options=" ".join(s for s in settings if s),
                  connect_timeout=max(1, round(timeout)))
    params.setdefault("application_name", f"folderseal {node}"[:63])
    # Raised outside the except clause: nothing of libpq's own message rides along.
    failure: psycopg.Error
    try:
        # No server-side prepared statements: a rolling upgrade adds columns under running
        # nodes, and a prepared SELECT * would fail from then on ("cached plan must not
        # change result type").
        return psycopg.connect(autocommit=True, row_factory=rows, prepare_threshold=None,
                               **params)
    except psycopg.Error as exc:
        failure = exc
    if isinstance(failure, psycopg.OperationalError):
        raise unavailable(url, failure)
    raise ConfigError(f"the store URL cannot be used: {masked(str(failure), url)}")
