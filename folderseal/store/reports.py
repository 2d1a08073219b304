"""What the store answers for ``folderseal status`` and the status page (read only): counts,
the batches still open, recent failures, suspected fragments, deliveries per minute, and
the events themselves."""

from __future__ import annotations

import json
import os
from typing import Any

from folderseal.core.model import FileRecord, FileState
from folderseal.store import ActiveBatch, EventRecord
from folderseal.store.base import StoreBase
from folderseal.store.batches import batch_record
from folderseal.store.files import file_record


class ReportQueries(StoreBase):
    """Read-only questions about a folder, answered by the store's own queries so that
    they stay fast on a store of many files."""

    def count_batches_by_state(self) -> dict[str, dict[str, int]]:
        """folder → batch state → how many batches of that folder are in it."""
        counts: dict[str, dict[str, int]] = {}
        for row in self._run("count_batches_by_state"):
            counts.setdefault(row["folder"], {})[row["state"]] = row["n"]
        return counts

    def claims_by_node(self) -> dict[str | None, int]:
        """node → how many of its claims wait outside a batch (None: claims of no node)."""
        return {row["node"]: row["n"] for row in self._run("claims_by_node")}

    def active_batches(self, folder: str) -> list[ActiveBatch]:
        """The batches of ``folder`` not finished (CLEANED or FAILED) or due again, the
        oldest first, each with how many files it holds and how far the provider is."""
        return [ActiveBatch(batch=batch_record(r), files=r["files"], progress=r["progress"])
                for r in self._run("active_batches", folder=folder)]

    def last_changed(self, folder: str, state: FileState,
                     limit: int) -> list[tuple[FileRecord, float]]:
        """(record, when it last changed) of at most ``limit`` files of ``folder`` in
        ``state``, the latest first."""
        return [(file_record(r), r["updated_at"])
                for r in self._run("last_changed", folder=folder, state=state, limit=limit)]

    def records_failed(self, folder: str, limit: int) -> list[tuple[str, str, int, float]]:
        """(id, source, how many, when) of at most ``limit`` delivered files of ``folder``
        whose provider reports records of them it could not load, the latest first."""
        return [(r["id"], os.fsdecode(r["source"]), int(r["bad"]), r["updated_at"])
                for r in self._run("records_failed", folder=folder, limit=limit)]

    def oldest_in_flight(self, folder: str) -> float | None:
        """When the oldest file :meth:`count_in_flight` counts was claimed (None: none)."""
        row = self._run("oldest_in_flight", folder=folder).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def suspected_fragments(self, folder: str,
                            since: float) -> list[tuple[str, str, float, str | None]]:
        """(the earlier claim's id and source, when, why) of each file of ``folder`` found
        after ``since`` where one was claimed moments before (``file.fragment_suspected``),
        newest first."""
        return [(r["file_id"], os.fsdecode(r["source"]), r["at"], r["detail"])
                for r in self._run("suspected_fragments", folder=folder, since=since)]

    def outputs_in_state(self, folder: str, state: FileState) -> list[tuple[dict[str, Any], ...]]:
        """The outputs planned for each file of ``folder`` in ``state``."""
        return [tuple(json.loads(r["outputs"])) if r["outputs"] else ()
                for r in self._run("outputs_in_state", folder=folder, state=state)]

    def changes_per_minute(self, folder: str, state: FileState, now: float,
                           minutes: int) -> list[int]:
        """How many files of ``folder`` in ``state`` last changed in each of the
        ``minutes`` minutes before ``now``, the oldest minute first."""
        per_minute = [0] * minutes
        for row in self._run("changes_per_minute", folder=folder, state=state, until=now,
                             since=now - 60 * minutes):
            if 0 <= row[0] < minutes:
                per_minute[minutes - 1 - row[0]] = row[1]
        return per_minute

    def count_stale(self, folder: str, state: FileState, before: float) -> int:
        """How many files of ``folder`` are in ``state`` and last changed before ``before``."""
        return int(self._run("count_stale", folder=folder, state=state,
                             before=before).fetchone()[0])

    def events(self, *, batch_id: str | None = None, file_id: str | None = None,
               kind: str | None = None) -> list[EventRecord]:
        """The recorded events that match every filter given, in the order they happened."""
        return [event_record(r) for r in self._run("events", batch_id=batch_id, file_id=file_id,
                                                    kind=kind)]


def event_record(row: Any) -> EventRecord:
    return EventRecord(at=row["at"], node=row["node"], batch_id=row["batch_id"],
                       file_id=row["file_id"], kind=row["kind"], from_state=row["from_state"],
                       to_state=row["to_state"], detail=row["detail"], epoch=row["epoch"])
