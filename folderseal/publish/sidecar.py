"""The JSON records folderseal writes beside every result: sidecars and error records.

A sidecar (``<primary output>.json``) proves what happened to one source file: its
input hash, every output with its hash, the provider and batch, and a timeline. An
error record (``<name>.error.json`` in the errors folder) has the same fields with
``"status": "failed"``, the reason, and the ``retry_id`` that ``folderseal retry``
takes. Both pass through the redactor.

A delivered file's ``status`` is what its provider made of it (``steps.outcome``:
signed, stored, loaded), and so is the name of the step at which the provider finished
(the batch's CLOSED). The provider's own proof (a receipt, a report) from its result joins
the ``provider`` object. Nothing here knows one provider from another.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any

from folderseal import __version__
from folderseal.core.model import BatchRecord, Event, FileRecord, FileState, path_text
from folderseal.core.redact import REDACTOR

SCHEMA = "folderseal.sidecar/1"
# What a delivered file can be (a provider's steps.outcome, the sidecar's status).
OUTCOMES = ("signed", "stored", "loaded")
# Batch states whose arrival is a step worth showing, and the name shown; the CLOSED step
# is named by the provider's outcome. "delivered" (outputs durable: the sidecar is
# written after them) ends the timeline of every delivered file.
_TIMELINE_STEPS = {"ACCEPTING": "submitted", "ACCEPTED": "accepted", "DOWNLOADED": "downloaded"}
_FINISHED = "CLOSED"


@functools.lru_cache(maxsize=4096)  # a batch's steps are the same for each of its files
def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def timeline(record: FileRecord, batch: BatchRecord | None, history: list[Event],
             end: tuple[str, float], *, outcome: str) -> list[dict[str, str]]:
    """Steps of one file: seen, claimed, batched, the provider's steps, and ``end``.

    The step at which the provider finished is named ``outcome`` (signed, stored,
    loaded). Only what happened to this file: its batch's steps count while the file was
    in the batch (not after it was rejected, until a retry puts it back), and ``outcome``
    and "downloaded" only if its result came back good (a document the provider did not
    sign, or a file the signer refused, was neither).
    """
    names = {**_TIMELINE_STEPS, _FINISHED: outcome}
    result_steps = (outcome, names["DOWNLOADED"])
    steps = [("seen", record.seen_at), ("claimed", record.claimed_at)]
    if batch is not None:
        steps.append(("batched", batch.created_at))
        in_batch, good = True, False
        shown: dict[str, float] = {}
        for event in history:
            if event.file_id == record.id and event.kind == "file.state":
                if event.state == FileState.REJECTED:
                    in_batch = False
                elif event.state == FileState.BATCHED:
                    in_batch = True  # a retry put it back into its batch
                good = good or event.state == FileState.READY
            elif event.kind == "batch.state" and in_batch:
                step = names.get(event.state or "")
                if step:
                    shown.setdefault(step, event.at)  # a step repeated after a retry: once
        steps += [(step, at) for step, at in shown.items()
                  if good or step not in result_steps]
    steps.append(end)
    return [{"step": step, "at": iso(at)} for step, at in steps]


def _common(record: FileRecord, *, status: str, provider_name: str, provider_kind: str,
            batch: BatchRecord | None, batch_files: int, document: str, node: str,
            steps: list[dict[str, str]]) -> dict[str, Any]:
    provider = {"name": provider_name, "kind": provider_kind,
                "batch": (batch.remote_id or batch.id) if batch else None,
                "document": document or None}
    # The provider's proof ({"receipt": {…}}, {"report": {…}}) beside what folderseal
    # knows; it cannot replace those four.
    block = record.result.provider_block if record.result else {}
    provider.update((key, value) for key, value in block.items() if key not in provider)
    return {
        "schema": SCHEMA,
        "status": status,
        "folder": record.folder,
        "source": record.source_text,
        "input": {"sha256": record.sha256, "bytes": record.size},
        "outputs": [],
        "provider": provider,
        "batch": {"id": batch.id if batch else None, "files": batch_files},
        "node": node,
        "version": __version__,
        "timeline": steps,
    }


def delivered(record: FileRecord, outputs: list[dict[str, Any]], *, outcome: str,
              **common: Any) -> bytes:
    """The sidecar of a delivered file, whose status is ``outcome`` (signed, stored,
    loaded); ``outputs`` hold path (str), role, sha256, bytes. ``signer`` is the
    certificate it was sealed with (null when none could be read, or none sealed it)."""
    data = _common(record, status=outcome, **common)
    data["outputs"] = [{"path": path_text(o["path"]), "role": o["role"], "sha256": o["sha256"],
                        "bytes": o["bytes"]} for o in outputs]
    signer = record.result.signer if record.result else None
    data["signer"] = signer.to_json() if signer else None
    return _dump(data)


def failed(record: FileRecord, code: str, message: str, attempts: int, original: str,
           **common: Any) -> bytes:
    """The error record of a file that went to the errors folder."""
    data = _common(record, status="failed", **common)
    data["retry_id"] = record.id
    data["error"] = {"code": code, "message": message, "attempts": attempts,
                     "original": path_text(original)}
    batch = common.get("batch")
    if batch is not None and batch.publish_key:
        # Where the file was published for the provider to fetch, whole (logs and
        # messages show a fingerprint: with the URL prefix it may be a read key).
        data["provider"]["published"] = batch.publish_key
    return _dump(data)


def failed_by_recover(*, folder: str, source: str, sha256: str | None, size: int,
                      batch_id: str, provider_name: str, code: str, message: str,
                      original: str) -> bytes:
    """The error record of a file ``folderseal recover`` puts into errors: only what the
    work folder and the configuration tell (the store that knew the rest is lost or
    older than the work folder), and no ``retry_id``: the operator drops it again."""
    data = {
        "schema": SCHEMA, "status": "failed", "folder": folder, "source": source,
        "input": {"sha256": sha256, "bytes": size}, "outputs": [],
        "batch": {"id": batch_id}, "provider": {"name": provider_name},
        "error": {"code": code, "attempts": 0, "original": original, "message": message}}
    # ASCII, so that a source name that is not UTF-8 (surrogate escapes) reads back as
    # the same name: recover takes a record's source as the file's path.
    return (json.dumps(REDACTOR.data(data), indent=2) + "\n").encode()


def _dump(data: dict[str, Any]) -> bytes:
    return (json.dumps(REDACTOR.data(data), indent=2, ensure_ascii=False) + "\n").encode()
