"""The emulator's batches and assets: what was attached (stored under
``<data>/assets``), started and delivered, the progress each status read shows, the
receipts, and the journal lines and violations that record them.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from folderseal.providers.emulation.faults import Faults
from folderseal.providers.emulation.httpd import ApiError
from folderseal.providers.emulation.journal import Journal, log_event

NEVER_DELIVER_PROGRESS = 90.0  # where a never-delivering batch's progress stops
STORED_ON = "emulated-chain"


def batch_time() -> str:
    """The batches' date format in the docs: ``YYYY-MM-DD HH:MM:SS`` (UTC here)."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def asset_time() -> str:
    """The assets' date format in the docs: ISO 8601 with milliseconds and ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Asset:
    """One attached file."""

    id: str
    batch: str
    name: str
    checksum: str
    size: int
    duplicate: bool
    created_at: str
    updated_at: str
    txid: str | None = None
    stored_on: str | None = None
    txid_from: float = 0.0  # monotonic time from which the receipt shows the txid

    def journal_line(self) -> dict[str, Any]:
        return {"asset": self.id, "checksum": self.checksum, "name": self.name}


@dataclass(slots=True)
class Batch:
    """One batch: its assets, its starts, its progress."""

    id: str
    created_at: str
    assets: list[Asset] = field(default_factory=list)
    starts: int = 0
    effective_at: float | None = None  # monotonic time its (first) start takes effect
    never_deliver: bool = False
    polls: int = 0  # status reads since it took effect
    progress: float = 0.0
    delivered_at: float | None = None

    def status(self, now: float) -> str:
        if self.effective_at is None or now < self.effective_at:
            return "created"
        return "processing" if self.delivered_at is None else "delivered"

    def view(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status(now),
            # 0 and 100 as the docs show them; fractions in between (33.3).
            "progress": int(self.progress) if self.progress.is_integer() else self.progress,
            "created_at": self.created_at,
        }


class Registry:
    """Every batch and asset of this run, behind one lock held only for bookkeeping."""

    def __init__(self, data_dir: Path, journal: Journal, faults: Faults, polls: int,
                 late_seconds: float) -> None:
        self.journal = journal
        self.faults = faults
        self.polls = polls
        self.late_seconds = late_seconds
        self.assets_dir = data_dir / "assets"
        self.incoming = data_dir / "incoming"
        for folder in (self.assets_dir, self.incoming):
            folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self._batches: dict[str, Batch] = {}
        self._assets: dict[str, Asset] = {}
        self._attached: set[str] = set()  # checksums ever attached: the duplicate flag
        self._started: dict[str, str] = {}  # checksum → the first started batch holding it
        for entry in journal.entries():  # a restart on the same data folder
            if entry.get("event") == "asset":
                self._attached.add(str(entry.get("checksum")))
            elif entry.get("event") == "start":
                for asset in entry.get("assets") or []:
                    self._started.setdefault(str(asset.get("checksum")), str(entry["batch"]))

    def create(self) -> dict[str, Any]:
        batch = Batch(id=str(uuid.uuid4()), created_at=batch_time())
        with self.lock:
            self._batches[batch.id] = batch
            return batch.view(time.monotonic())

    def _get(self, batch_id: str | None) -> Batch:
        batch = self._batches.get(batch_id or "")
        if batch is None:
            raise ApiError(404, f"Batch {batch_id} not found")
        return batch

    def check_attachable(self, batch_id: str | None) -> None:
        """ApiError unless files may be attached to the batch now (known, not started)."""
        with self.lock:
            self._attachable(batch_id)

    def _attachable(self, batch_id: str | None) -> Batch:
        batch = self._get(batch_id)
        if batch.starts:
            raise ApiError(
                422, f"Batch {batch_id} has been started; files can no longer be attached"
            )
        return batch

    def add_asset(self, batch_id: str, name: str, temp: Path, checksum: str,
                  size: int) -> Asset:
        """Store a received file as an asset of the batch, journaled before it is answered."""
        now = asset_time()
        with self.lock:
            batch = self._attachable(batch_id)  # again: it may have started meanwhile
            asset = Asset(id=str(uuid.uuid4()), batch=batch_id, name=name, checksum=checksum,
                          size=size, duplicate=checksum in self._attached, created_at=now,
                          updated_at=now)
            temp.rename(self.assets_dir / asset.id)
            batch.assets.append(asset)
            self._assets[asset.id] = asset
            self._attached.add(checksum)
        self.journal.append({"event": "asset", "batch": batch_id, **asset.journal_line(),
                             "bytes": size, "duplicate": asset.duplicate, "at": time.time()})
        return asset

    def start(self, batch_id: str | None) -> dict[str, Any]:
        """Start the batch (a second start is answered too, and journaled a violation)."""
        violations: list[dict[str, Any]] = []
        with self.lock:
            batch = self._get(batch_id)
            batch.starts += 1
            now = time.monotonic()
            entry: dict[str, Any] = {"event": "start", "batch": batch.id, "call": batch.starts}
            if batch.starts == 1:
                delay = self.late_seconds if self.faults.draw("late-start") else 0.0
                batch.effective_at = now + delay
                batch.never_deliver = self.faults.draw("never-deliver")
                entry |= {"late_seconds": delay, "never_deliver": batch.never_deliver,
                          "assets": [a.journal_line() for a in batch.assets]}
                violations = self._stored_twice(batch)
            else:
                violations.append({"kind": "started twice", "batch": batch.id,
                                   "message": f"batch {batch.id} was started "
                                              f"{batch.starts} times"})
            view = batch.view(now)
        if view["status"] == "created":
            view["status"] = "processing"  # what a late start answers, though it lags
        self.journal.append({**entry, "at": time.time()})
        for violation in violations:
            self.journal.append({"event": "violation", **violation, "at": time.time()})
            log_event("emulator.violation", **violation)
        return view

    def _stored_twice(self, batch: Batch) -> list[dict[str, Any]]:
        """The violations a batch's first start makes; notes its checksums as started.
        Callers hold the lock."""
        found = []
        counts = Counter(a.checksum for a in batch.assets)
        for checksum, count in counts.items():
            if count > 1:
                found.append({"kind": "stored twice in one batch", "batch": batch.id,
                              "checksum": checksum,
                              "message": f"batch {batch.id} holds {count} documents with "
                                         f"checksum {checksum}"})
            earlier = self._started.setdefault(checksum, batch.id)
            if earlier != batch.id:
                found.append({"kind": "stored by two batches", "batch": batch.id,
                              "checksum": checksum, "earlier_batch": earlier,
                              "message": f"checksum {checksum} was stored by batch {earlier} "
                                         f"and again by batch {batch.id}"})
        return found

    def poll(self, batch_id: str | None) -> dict[str, Any]:
        """A batch's status; each read of a started batch moves its progress on."""
        delivered = None
        with self.lock:
            batch = self._get(batch_id)
            now = time.monotonic()
            if batch.status(now) == "processing":
                batch.polls += 1
                batch.progress = round(min(100.0, batch.polls * 100.0 / self.polls), 1)
                if batch.never_deliver:
                    batch.progress = min(batch.progress, NEVER_DELIVER_PROGRESS)
                elif batch.progress >= 100.0:
                    delivered = self._deliver(batch, now)
            view = batch.view(now)
        if delivered is not None:
            self.journal.append({"event": "delivered", "batch": batch.id,
                                 "assets": delivered, "at": time.time()})
        return view

    def _deliver(self, batch: Batch, now: float) -> list[dict[str, Any]]:
        """Every asset of the batch gets its txid. Callers hold the lock."""
        batch.delivered_at = now
        stamp = asset_time()
        lines = []
        for asset in batch.assets:
            asset.txid = secrets.token_hex(32)
            asset.stored_on = STORED_ON
            asset.updated_at = stamp
            asset.txid_from = now + (self.late_seconds if self.faults.draw("late-txid") else 0)
            lines.append({"asset": asset.id, "txid": asset.txid})
        return lines

    def active(self) -> list[dict[str, Any]]:
        """The batches being stored (started, not delivered), as ``GET /api/batches``."""
        now = time.monotonic()
        with self.lock:
            return [b.view(now) for b in self._batches.values()
                    if b.status(now) == "processing"]

    def stored_file(self, asset_id: str | None, txid: str | None) -> Path:
        """The bytes behind a receipt's ``url`` (by asset id) or ``forever_url`` (by txid)."""
        with self.lock:
            if txid is not None:
                asset = next((a for a in self._assets.values() if a.txid == txid), None)
            else:
                asset = self._assets.get(asset_id or "")
        if asset is None:
            raise ApiError(404, "no such file")
        return self.assets_dir / asset.id

    def receipt(self, asset_id: str | None, base_url: str) -> dict[str, Any]:
        """An asset as ``GET /api/files/{id}`` shows it: with its txid once stored."""
        with self.lock:
            asset = self._assets.get(asset_id or "")
            if asset is None:
                raise ApiError(404, f"File {asset_id} not found")
            now = time.monotonic()
            batch_status = self._batches[asset.batch].status(now)
            shown = batch_status == "delivered" and now >= asset.txid_from
            status = {"created": "created", "processing": "processing"}.get(
                batch_status, "cached" if shown else "processing")
            return asset_json(asset, base_url, status, shown)


def asset_json(asset: Asset, base_url: str, status: str, stored: bool) -> dict[str, Any]:
    """The asset in the documented shape; txid and permanent URLs once ``stored``."""
    file_url = f"/uploads/digital_asset/file/{asset.id}/{quote(asset.name)}"
    return {
        "id": asset.id,
        "status": status,
        "file": {"url": file_url, "thumb": {"url": None}},
        "file_size": asset.size,
        "estimated_cost": None,
        "created_at": asset.created_at,
        "updated_at": asset.updated_at,
        "txid": asset.txid if stored else None,
        "task_id": None,
        "serialized_metadata": "{}",
        "should_be_cached": True,
        "stored_on": asset.stored_on if stored else None,
        "short_slug": None,
        "checksum": asset.checksum,
        "user_id": 2,
        "name": asset.name,
        "archived": False,
        "duplicate": asset.duplicate,
        "tag_list": [],
        "url": f"{base_url}{file_url}" if stored else None,
        "forever_url": f"{base_url}/forever/{asset.txid}" if stored else None,
    }
