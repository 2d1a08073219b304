"""The in-memory store's tables, its rows and answers, and what its queries share.

Every query of ``sql/queries.sql`` is answered in Python (:mod:`.file_queries`,
:mod:`.batch_queries`, :mod:`.report_queries`):
one function per query name, registered with :func:`query`, taking the query's
parameters and giving the same rows (by column name, or by position as SQLite's rows
are) and the same count of rows changed. SQL's NULL rules are kept: a comparison with
None is never true.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

FILE_COLUMNS = ("id", "folder", "source", "state", "dev", "ino", "size", "mtime_ns", "sha256",
                "batch_id", "entry", "attempts", "result", "outputs", "error_code",
                "error_message", "seen_at", "claimed_at", "updated_at", "remote_document",
                "node")
BATCH_COLUMNS = ("id", "folder", "provider", "state", "claimed_by", "lease_until",
               "next_attempt_at", "attempts", "remote_id", "package_sha256", "package_bytes",
               "failed_step", "error_code", "error_message", "created_at", "updated_at",
               "abandoned_lost", "abandoned_mismatch", "upload_sent_remote", "upload_sent_at",
               "progress", "publish_key", "epoch", "takeovers")
FINISHED_BATCHES = ("CLEANED", "FAILED")  # active_batches shows them only when due again
IN_FLIGHT = ("CLAIMED", "BATCHED", "READY", "REJECTED")
DELIVERED = ("PUBLISHED", "DONE")


class Row(dict[str, Any]):
    """A row: its columns by name, or by position as SQLite's rows are."""

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)


@dataclass
class Result:
    """What a query answers: its rows, and for a write how many rows it changed."""

    rows: list[Row] = field(default_factory=list)
    rowcount: int = -1

    def fetchone(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)


@dataclass
class Tables:
    """The store's tables, as schema.sql has them, in plain dicts and lists."""

    meta: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    output_names: dict[tuple[str, str, bytes], str] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def copy(self) -> Tables:
        """A copy to roll back to (the values in a row are immutable)."""
        return Tables(dict(self.meta), {k: dict(v) for k, v in self.files.items()},
                      {k: dict(v) for k, v in self.batches.items()}, list(self.events),
                      dict(self.output_names), {k: dict(v) for k, v in self.nodes.items()})


Query = Callable[..., Result]
QUERIES: dict[str, Query] = {}


def query(function: Query) -> Query:
    """Answer the query of the function's name with it."""
    QUERIES[function.__name__] = function
    return function


def answer(found: Iterable[dict[str, Any]]) -> Result:
    """Rows found (copied: a later write must not change them)."""
    return Result([Row(r) for r in found])


def one_value(value: Any) -> Result:
    """One row of one column."""
    return Result([Row({"value": value})])


def update(found: list[dict[str, Any]], **values: Any) -> Result:
    """Set ``values`` in each row found; as many rows changed."""
    for row in found:
        row.update(values)
    return Result(rowcount=len(found))


def real(value: float | None) -> float | None:
    """A REAL column's value as SQLite keeps it."""
    return None if value is None else float(value)


def free(batch: dict[str, Any], now: float) -> bool:
    """Nobody holds the batch's lease, or it lapsed."""
    until = batch["lease_until"]
    return batch["claimed_by"] is None or (until is not None and until <= now)


def leased(batch: dict[str, Any], holder: str, now: float) -> bool:
    """``holder`` holds the batch's lease, and it has not lapsed."""
    until = batch["lease_until"]
    return batch["claimed_by"] == holder and until is not None and until > now


def held(t: Tables, id: str, holder: str, now: float, *states: str) -> list[dict[str, Any]]:
    """The batch, if ``holder`` holds its lease (and it is in one of ``states``, if given)."""
    batch = t.batches.get(id)
    return [batch] if batch is not None and leased(batch, holder, now) and (
        not states or batch["state"] in states) else []


def file_if(t: Tables, id: str, test: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The file of that id, if it passes ``test`` (what a guarded UPDATE matches)."""
    row = t.files.get(id)
    return [row] if row is not None and test(row) else []


def batch_if(t: Tables, id: str, test: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The batch of that id, if it passes ``test``."""
    row = t.batches.get(id)
    return [row] if row is not None and test(row) else []


def like(value: str | None, pattern: str) -> bool:
    """SQLite's LIKE: % and _ are wildcards, ASCII letters match either case."""
    if value is None:
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.ASCII | re.DOTALL) is not None


def unique(taken: bool, what: str) -> None:
    if taken:  # what SQLite raises for a second row with the same key
        raise sqlite3.IntegrityError(f"UNIQUE constraint failed: {what}")


def counts(keys: Iterable[tuple[Any, ...]], names: tuple[str, ...]) -> Result:
    """``GROUP BY names`` with ``count(*) AS n``."""
    return answer({**dict(zip(names, key, strict=True)), "n": n}
                 for key, n in sorted(Counter(keys).items()))


