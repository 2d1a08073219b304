"""The JSON records folderseal writes beside every result: sidecars and error records.

A sidecar (``<primary output>.json``) proves what happened to one source file: its
input hash, every output with its hash, the provider and batch, and a timeline. An
error record (``<name>.error.json`` in the errors folder) has the same fields with
``"status": "failed"``, the reason, and the ``retry_id`` that ``folderseal retry``
takes. Both pass through the redactor.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from folderseal import __version__
from folderseal.model import FileRecord, JobRecord, path_text
from folderseal.redact import REDACTOR

SCHEMA = "folderseal.sidecar/1"
# Job states whose arrival is a step worth showing, and the name shown.
_TIMELINE_STEPS = {"ACCEPTING": "submitted", "ACCEPTED": "accepted", "CLOSED": "signed",
                   "DOWNLOADED": "downloaded"}


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def timeline(record: FileRecord, job: JobRecord | None,
             job_events: list[tuple[str, float]], end: tuple[str, float]) -> list[dict[str, str]]:
    """Steps of one file: seen, claimed, batched, the provider's steps, and ``end``."""
    steps = [("seen", record.seen_at), ("claimed", record.claimed_at)]
    if job is not None:
        steps.append(("batched", job.created_at))
        seen_steps = set()
        for state, at in job_events:
            step = _TIMELINE_STEPS.get(state)
            if step and step not in seen_steps:
                seen_steps.add(step)
                steps.append((step, at))
    steps.append(end)
    return [{"step": step, "at": iso(at)} for step, at in steps]


def _common(record: FileRecord, *, status: str, provider_name: str, provider_kind: str,
            job: JobRecord | None, batch_files: int, document: str, node: str,
            steps: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "status": status,
        "folder": record.folder,
        "source": record.source_text,
        "input": {"sha256": record.sha256, "bytes": record.size},
        "outputs": [],
        "provider": {"name": provider_name, "kind": provider_kind,
                     "batch": (job.remote_id or job.id) if job else None,
                     "document": document or None},
        "batch": {"id": job.id if job else None, "files": batch_files},
        "node": node,
        "version": __version__,
        "timeline": steps,
    }


def signed(record: FileRecord, outputs: list[dict[str, Any]], **common: Any) -> bytes:
    """The sidecar of a delivered file; ``outputs`` hold path (str), role, sha256, bytes."""
    data = _common(record, status="signed", **common)
    data["outputs"] = [{"path": path_text(o["path"]), "role": o["role"], "sha256": o["sha256"],
                        "bytes": o["bytes"]} for o in outputs]
    return _dump(data)


def failed(record: FileRecord, code: str, message: str, attempts: int, original: str,
           **common: Any) -> bytes:
    """The error record of a file that went to the errors folder."""
    data = _common(record, status="failed", **common)
    data["retry_id"] = record.id
    data["error"] = {"code": code, "message": message, "attempts": attempts,
                     "original": path_text(original)}
    return _dump(data)


def _dump(data: dict[str, Any]) -> bytes:
    return (json.dumps(REDACTOR.data(data), indent=2, ensure_ascii=False) + "\n").encode()
