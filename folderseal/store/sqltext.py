"""What the two SQL backends share: named queries read from ``.sql`` files (the shared
``sql/queries.sql``, then a dialect's overrides of some of them), numbered migration
scripts, and the check that this code is new enough for the schema it finds.

Rolling upgrades: migrations are additive, so older code keeps working on a newer schema
unless a migration says otherwise. One that does records, in the ``meta`` row
``oldest_code``, the oldest folderseal version that can use the schema after it (absent:
any); older code refuses to start with :func:`check_code_version` instead of misreading it.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

from folderseal import __version__
from folderseal.core.errors import ConfigError

SQL = resources.files("folderseal.store") / "sql"
OLDEST_CODE = "oldest_code"  # the meta key a migration sets when older code must stop


def read_queries(file: Traversable) -> dict[str, str]:
    """The queries of a file, by the name of their ``-- name:`` header."""
    queries: dict[str, str] = {}
    for chunk in re.split(r"^-- name: ", file.read_text(encoding="utf-8"), flags=re.M)[1:]:
        name, _, body = chunk.partition("\n")
        queries[name.strip()] = body.strip()
    return queries


def dialect_queries(overrides: Traversable) -> dict[str, str]:
    """The shared queries, each replaced by the dialect's own where it has one.

    An override must replace a shared query: a name only the dialect knows would be a
    query the other backends (and the in-memory fake) do not answer."""
    queries = read_queries(SQL / "queries.sql")
    own = read_queries(overrides)
    unknown = sorted(set(own) - set(queries))
    if unknown:
        raise ValueError(f"{overrides} overrides queries that queries.sql lacks: {unknown}")
    return {**queries, **own}


def read_migrations(folder: Traversable) -> list[tuple[int, str]]:
    """The numbered migration scripts of a folder (``0001_what.sql``), in order."""
    found = []
    for item in folder.iterdir():
        match = re.match(r"^(\d+)_.*\.sql$", item.name)
        if match:
            found.append((int(match.group(1)), item.read_text(encoding="utf-8")))
    return sorted(found)


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.10.2"`` → ``(1, 10, 2)``: compared as numbers, a suffix (``rc1``) ignored."""
    parts = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def check_code_version(oldest: str | None, store: str, code: str = __version__) -> None:
    """ConfigError (exit 78) if this code is older than the oldest version the schema
    of ``store`` allows (``oldest``, from its meta row; None: any version may use it)."""
    if oldest is None or version_tuple(code) >= version_tuple(oldest):
        return
    raise ConfigError(
        f"the store {store} was migrated for folderseal {oldest} or newer, and this is "
        f"folderseal {code}: upgrade folderseal on this node to {oldest} or newer (its "
        "schema is not one this version can use)")
