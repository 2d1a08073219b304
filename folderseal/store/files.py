"""The store's records of files: claims, their hashes, results and planned output names."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from folderseal.core.errors import StateConflict
from folderseal.core.model import DocumentResult, FileRecord, FileState
from folderseal.core.redact import REDACTOR
from folderseal.store.base import ALL, StoreBase


class FileRecords(StoreBase):
    """What the store knows of each claimed file.

    One method per store operation on files: each is one named query."""

    def add_claim(self, *, id: str, folder: str, source: str, dev: int, ino: int, size: int,
                  mtime_ns: int, sha256: str | None, seen_at: float) -> None:
        self.add_claims([{"id": id, "folder": folder, "source": source, "dev": dev, "ino": ino,
                          "size": size, "mtime_ns": mtime_ns, "sha256": sha256,
                          "seen_at": seen_at}])

    def add_claims(self, rows: list[dict[str, Any]]) -> list[str]:
        """Record files this node claimed (keys as :meth:`add_claim`'s arguments) in one
        transaction; the ids of those another node had recorded already (it took this
        node's claims over while this node was paused), which stay that node's."""
        now = self._now()
        taken = []
        with self.transaction():
            for row in rows:
                added = self._run("insert_file", **{**row, "source": os.fsencode(row["source"])},
                                  node=self.node, now=now).rowcount
                if added:
                    self.event("file.claimed", file_id=row["id"], to_state=FileState.CLAIMED)
                else:
                    taken.append(row["id"])
        return taken

    def file(self, file_id: str) -> FileRecord | None:
        row = self._run("get_file", id=file_id).fetchone()
        return None if row is None else file_record(row)

    def files_in_state(self, folder: str, state: FileState) -> list[FileRecord]:
        return [file_record(r) for r in self._run("files_in_state", folder=folder, state=state)]

    def unfinished_claims(self, folder: str) -> list[FileRecord]:
        """This node's claims left half done: never hashed, or rejected but not yet in
        errors."""
        return [file_record(r) for r in self._run("unfinished_claims", folder=folder,
                                                  node=self.node)]

    def own_claims(self, folder: str, limit: int = ALL) -> list[FileRecord]:
        """This node's hashed claims, oldest first (the first ``limit``): what it may
        batch."""
        return [file_record(r) for r in self._run("own_claims", folder=folder, node=self.node,
                                                  limit=limit)]

    def adopt_claims(self, folder: str, alive_seconds: float) -> int:
        """Make this node's the unbatched claims of every node that has not beaten
        within ``alive_seconds`` on the store's clock (and those of no node); how many."""
        with self.transaction():
            return int(self._run("adopt_claims", folder=folder, node=self.node,
                                 alive_seconds=alive_seconds, now=self._now()).rowcount)

    def files_of_batch(self, batch_id: str) -> list[FileRecord]:
        return [file_record(r) for r in self._run("files_of_batch", batch_id=batch_id)]

    def failed_files(self) -> list[FileRecord]:
        return [file_record(r) for r in self._run("failed_files")]

    def recent_claims(self, folder: str, since: float) -> list[tuple[str, str, float]]:
        """(id, source, claimed_at) of the files of ``folder`` claimed after ``since``."""
        since_id = f"{max(0, int(since * 1000) - 1):012x}"  # see new_id
        return [(r["id"], os.fsdecode(r["source"]), r["claimed_at"])
                for r in self._run("recent_claims", folder=folder, since=since,
                                   since_id=since_id)]

    def file_ids(self, folder: str) -> set[str]:
        return {r[0] for r in self._run("file_ids", folder=folder)}

    def known_ids(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` the store has a file for."""
        return {r[0] for r in self._run("known_file_ids", ids=json.dumps(ids))}

    def count_in_flight(self, folder: str) -> int:
        return int(self._run("count_in_flight", folder=folder).fetchone()[0])

    def count_by_state(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for row in self._run("count_by_state"):
            counts.setdefault(row["folder"], {})[row["state"]] = row["n"]
        return counts

    def delivered_twin(self, record: FileRecord) -> FileRecord | None:
        """A published or done file of the same folder with the same input hash."""
        row = self._run("delivered_twin", folder=record.folder, sha256=record.sha256,
                        id=record.id).fetchone()
        return None if row is None else self.file(row["id"])

    def set_file_result(self, file_id: str, from_state: FileState, result: DocumentResult,
                        batch_id: str | None = None) -> None:
        to_state = FileState.READY if result.ok else FileState.REJECTED
        with self.transaction():
            self._guarded("set_file_result", StateConflict,
                          f"file {file_id} is not {from_state}", id=file_id,
                          from_state=from_state, to_state=to_state, result=result.to_json(),
                          error_code=result.error_code or None,
                          error_message=REDACTOR.text(result.error_message) or None,
                          now=self._now())
            self.event("file.state", file_id=file_id, batch_id=batch_id, from_state=from_state,
                       to_state=to_state, detail=result.error_code or None)

    def names_free(self, folder: str, area: str, file_id: str, paths: list[str]) -> bool:
        """True if no other unfinished file planned any of ``paths`` (in outbox|errors)."""
        return not any(self._run("name_taken", folder=folder, area=area, file_id=file_id,
                                 path=os.fsencode(p)).fetchone() for p in paths)

    def set_file_outputs(self, record: FileRecord, outputs: list[dict[str, Any]],
                         area: str) -> None:
        """Record the output names chosen for a file, and reserve them in ``area``."""
        with self.transaction():
            self._guarded("set_file_outputs", StateConflict,
                          f"file {record.id} cannot take output names now", id=record.id,
                          outputs=json.dumps(outputs), now=self._now())
            self._run("release_names", file_id=record.id)
            for output in outputs:
                self._run("reserve_name", folder=record.folder, area=area, file_id=record.id,
                          path=os.fsencode(output["path"]))

    def set_claim_hash(self, file_id: str, sha256: str, size: int, mtime_ns: int) -> None:
        with self.transaction():
            self._guarded("set_claim_hash", StateConflict,
                          f"file {file_id} is not a claim of node {self.node}", id=file_id,
                          sha256=sha256, size=size, mtime_ns=mtime_ns, node=self.node,
                          now=self._now())

    def reject_claim(self, file_id: str, code: str, message: str) -> None:
        """A claim of this node that cannot be sealed: REJECTED, with why."""
        result = DocumentResult(entry="", error_code=code, error_message=message)
        with self.transaction():
            self._guarded("reject_claim", StateConflict,
                          f"file {file_id} is not a claim of node {self.node}", id=file_id,
                          result=result.to_json(), error_code=code,
                          error_message=REDACTOR.text(message), node=self.node,
                          now=self._now())
            self.event("file.state", file_id=file_id, from_state=FileState.CLAIMED,
                       to_state=FileState.REJECTED, detail=code)

    def note_remote_document(self, batch_id: str, file_id: str, note: dict[str, Any]) -> None:
        """Keep the provider's latest answer for a file (JSON), durably."""
        with self.transaction():
            self._guarded("set_remote_document", StateConflict,
                          f"file {file_id} is not waiting in batch {batch_id}", id=file_id,
                          batch_id=batch_id, remote_document=json.dumps(note), now=self._now())

    def remote_documents(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """file id → the provider's latest answer for it, of the files of a batch."""
        return {r["id"]: json.loads(r["remote_document"])
                for r in self._run("remote_documents", batch_id=batch_id)}


@functools.lru_cache(maxsize=4096)
def _result(text: str) -> DocumentResult:
    """A stored result, parsed once: a batch's files are read at each of its steps, and a
    result is immutable (its provider block is only ever read)."""
    return DocumentResult.from_json(text)


def file_record(row: Any) -> FileRecord:
    """A file's row (columns as in schema.sql) as a record."""
    return FileRecord(
        id=row["id"], folder=row["folder"], source=os.fsdecode(row["source"]),
        state=FileState(row["state"]), dev=row["dev"], ino=row["ino"], size=row["size"],
        mtime_ns=row["mtime_ns"], sha256=row["sha256"], batch_id=row["batch_id"],
        entry=row["entry"], attempts=row["attempts"],
        result=_result(row["result"]) if row["result"] else None,
        outputs=tuple(json.loads(row["outputs"])) if row["outputs"] else (),
        error_code=row["error_code"], error_message=row["error_message"],
        seen_at=row["seen_at"], claimed_at=row["claimed_at"],
    )
