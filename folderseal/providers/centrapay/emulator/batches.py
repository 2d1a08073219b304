"""The emulator's batches: what each create asked, what its fetch found, the status each
read shows (one step at a time), and the journal lines that record them.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from folderseal.providers.centrapay.emulator.report import Outcome, Report
from folderseal.providers.emulation.faults import Faults
from folderseal.providers.emulation.httpd import ApiError
from folderseal.providers.emulation.journal import Journal, log_event
from folderseal.providers.http import without_query

STAGES = ("created", "copied", "chunked", "complete")
ID_ALPHABET = string.digits + string.ascii_letters
ID_LENGTH = 22  # like Centrapay's ids (e.g. the docs' accountId C4QnjXvj8At6SMsEN4LRi9)


def new_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


@dataclass(slots=True)
class Batch:
    """One batch: what was asked, what the fetch found, what has been shown."""

    id: str
    type: str
    account_id: str
    test: bool
    url: str = field(repr=False)  # as given: its query may be a read key, never written
    created_at: str
    hidden_until: float  # monotonic; GETs answer 403 before it (late-403)
    bad_url: bool
    stepped_at: float  # monotonic time of the last step shown
    stage: int = 0  # index in STAGES of the status shown
    outcome: Outcome | None = None  # set once the fetch is done
    failed: bool = False  # shows "error"

    def step(self, now: float, step_seconds: float) -> dict[str, Any] | None:
        """Move the status shown one step on if due; the journal line of a ``complete``."""
        if self.outcome is None or self.failed or self.stage == len(STAGES) - 1:
            return None
        if now - self.stepped_at < step_seconds:
            return None
        self.stepped_at = now
        if self.outcome.report is None:
            self.failed = True
            return None  # journaled when the fetch failed
        self.stage += 1
        if STAGES[self.stage] != "complete":
            return None
        report = self.outcome.report
        return {"event": "complete", "batch": self.id, "count": report.count,
                "errorCount": report.error_count}

    def view(self) -> dict[str, Any]:
        """The Batch model; counters as BigNumber strings."""
        count, errors, error_count = 0, [], 0
        if self.failed and self.outcome is not None:
            errors, error_count = [{"message": self.outcome.message}], 1
        elif self.outcome is not None and self.outcome.report is not None:
            report = self.outcome.report
            if self.stage >= STAGES.index("chunked"):
                count = report.count
            if STAGES[self.stage] == "complete":
                errors, error_count = list(report.errors), report.error_count
        return {"id": self.id, "status": "error" if self.failed else STAGES[self.stage],
                "type": self.type, "count": str(count), "errorCount": str(error_count),
                "errors": errors}


class Registry:
    """Every batch of this run, behind one lock held only for bookkeeping."""

    def __init__(self, journal: Journal, faults: Faults, step_seconds: float,
                 late_seconds: float) -> None:
        self.journal = journal
        self.faults = faults
        self.step_seconds = step_seconds
        self.late_seconds = late_seconds
        self.lock = threading.Lock()
        self._batches: dict[str, Batch] = {}
        self._loaded: dict[str, str] = {}  # sha256 → the first batch that loaded it
        for entry in journal.entries():  # a restart on the same data folder
            if entry.get("event") == "fetched":
                self._loaded.setdefault(str(entry.get("sha256")), str(entry.get("batch")))

    def create(self, batch_type: str, url: str, account_id: str, test: bool) -> Batch:
        """A new batch, journaled before it is answered (its fetch is queued by the caller)."""
        now = time.monotonic()
        late = self.faults.draw("late-403")
        batch = Batch(id=new_id(), type=batch_type, account_id=account_id, test=test, url=url,
                      created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                      hidden_until=now + (self.late_seconds if late else 0.0),
                      bad_url=self.faults.draw("bad-url"), stepped_at=now)
        with self.lock:
            self._batches[batch.id] = batch
        self.journal.append({"event": "create", "batch": batch.id, "type": batch_type,
                             "accountId": account_id, "test": test, "url": without_query(url),
                             "bad_url": batch.bad_url,
                             "late_403_seconds": self.late_seconds if late else 0.0,
                             "at": time.time()})
        log_event("emulator.batch_created", batch=batch.id, type=batch_type)
        return batch

    def fetched(self, batch: Batch, outcome: Outcome) -> None:
        """Journal what the fetch gave (and a second load of the same content), then let
        the batch's status show it: a client never sees what the journal lacks."""
        if outcome.report is None:
            self.journal.append({"event": "error", "batch": batch.id, "message": outcome.message,
                                 "sha256": outcome.sha256, "bytes": outcome.size,
                                 "at": time.time()})
            log_event("emulator.batch_error", batch=batch.id, message=outcome.message)
        else:
            self._loaded_by(batch, outcome.report, str(outcome.sha256), outcome.size)
        with self.lock:
            batch.outcome = outcome

    def _loaded_by(self, batch: Batch, report: Report, sha256: str, size: int | None) -> None:
        with self.lock:
            earlier = self._loaded.setdefault(sha256, batch.id)
        self.journal.append({"event": "fetched", "batch": batch.id, "sha256": sha256,
                             "bytes": size, "count": report.count,
                             "errorCount": report.error_count, "at": time.time()})
        log_event("emulator.batch_fetched", batch=batch.id, bytes=size, count=report.count,
                  errorCount=report.error_count)
        if earlier != batch.id:
            violation = {"kind": "loaded twice", "batch": batch.id, "sha256": sha256,
                         "earlier_batch": earlier,
                         "message": f"content {sha256} was loaded by batch {earlier} "
                                    f"and again by batch {batch.id}"}
            self.journal.append({"event": "violation", **violation, "at": time.time()})
            log_event("emulator.violation", **violation)

    def poll(self, batch_id: str | None) -> dict[str, Any]:
        """A batch as ``GET /api/batches/{id}`` shows it; each read may move it on."""
        with self.lock:
            batch = self._batches.get(batch_id or "")
            now = time.monotonic()
            if batch is None or now < batch.hidden_until:
                raise ApiError(403, "Forbidden")
            line = batch.step(now, self.step_seconds)
            if line is not None:  # under the lock: no other read shows it unjournaled
                self.journal.append({**line, "at": time.time()})
            return batch.view()

    def quirky_extras(self, batch_id: str) -> dict[str, Any]:
        """Fields a quirky answer adds (the client must ignore them)."""
        with self.lock:
            batch = self._batches[batch_id]
            return {"accountId": batch.account_id, "createdAt": batch.created_at,
                    "emulatorNote": "an extra field a client must ignore"}
