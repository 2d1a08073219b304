"""A local Clevver: its batch API (docs/design.md, "The providers' APIs") on loopback, for
trials and tests.

``folderseal emulate clevver`` runs it (``run_clevver``); tests start it in a thread
(``start_clevver``). It speaks the documented endpoints with their documented shapes:
``{"status": "success", "data": …}`` envelopes, ``message`` inside ``data`` (create,
start) or beside it (attach), UUID ids, progress that may be fractional. Requests need
``Authorization: Bearer <api key>`` when a key is given (401 otherwise).

A batch is ``created`` until started; attaching a file to it stores the bytes (read
in pieces, never whole) under ``<data>/assets/<asset id>`` and answers the asset with
the bytes' sha256 as ``checksum`` and ``duplicate`` true when that checksum was
attached before. Once started (``processing``) nothing more can be attached; each
``GET /api/batches/{id}`` moves its progress on by 100/``polls``, and the poll that
reaches 100 delivers it: every asset gets a txid (64 hex), a ``url``, a
``forever_url`` and ``stored_on``, and its receipt (``GET /api/files/{asset id}``)
says ``cached``. Both URLs serve the stored bytes to anyone (no token, no faults), as
public links do. A second start of a batch is answered 200, as Clevver's docs do not
say otherwise, and journaled as a violation.

The journal (``<data>/journal.jsonl``, each line fsynced before the answer) holds
``asset`` (every file stored: batch, asset id, checksum, name), ``start`` (every start
that reached a batch, with its assets), ``delivered``, and ``violation`` lines: a batch
started twice, a document (by checksum: tests drop files of distinct content) in one
started batch twice, or in two started batches. ``violations()`` reads them.

Faults (a spec as SEAL's emulator takes, e.g. ``500-before=0.1,drop=0.05,late-txid``):
the request faults of ``folderseal.providers.emulation.httpd`` (``429``, ``500-before``,
``drop-before``, ``500-after``, ``drop``, ``slow``) and Clevver's own:

* ``late-start``, drawn at a batch's first start: the start is answered, but takes
  effect only ``late_seconds`` later (its status stays ``created`` meanwhile);
* ``never-deliver``, drawn at a batch's first start: its progress stops short of 100
  and it stays ``processing``;
* ``late-txid``, drawn per asset at delivery: its receipt lacks the txid (status
  ``processing``) for ``late_seconds`` after the batch was delivered;
* ``quirky``, drawn per successful answer: ``message`` on the other side of ``data``,
  ``progress`` and ``file_size`` as strings, and extra fields in both. (The docs'
  examples are also invalid JSON; the emulator always sends valid JSON.)

State is in memory (a restarted emulator knows no batches), but a restart on the same
data folder reads its journal back, so ``duplicate`` and the violations still see the
checksums stored before.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from folderseal.providers.emulation.faults import REQUEST_KINDS, Faults
from folderseal.providers.emulation.httpd import (
    ApiError,
    EmulatorApp,
    EmulatorHandler,
    EmulatorServer,
    Reply,
)
from folderseal.providers.emulation.journal import Journal, log_event
from folderseal.providers.emulation.multipart import CHUNK, BadMultipart, Multipart
from folderseal.providers.emulation.runner import (
    RunningEmulator,
    check_address_and_key,
    data_folder,
    runs_until_signal,
    serve,
)

__all__ = ["FAULT_KINDS", "ClevverEmulator", "run_clevver", "start_clevver"]

FAULT_KINDS = (*REQUEST_KINDS, "late-start", "never-deliver", "late-txid", "quirky")
JOURNAL_NAME = "journal.jsonl"
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


@dataclass(kw_only=True)
class ClevverApp(EmulatorApp):
    """What the Clevver request handlers share."""

    registry: Registry


def _quirky(data: Any) -> Any:
    """Numbers the docs show as numbers, as strings; an extra field in each object."""
    if isinstance(data, list):
        return [_quirky(item) for item in data]
    if not isinstance(data, dict):
        return data
    changed = {k: str(v) if k in ("progress", "file_size") and v is not None else v
               for k, v in data.items()}
    changed["emulator_note"] = "an extra field a client must ignore"
    return changed


class ClevverHandler(EmulatorHandler):
    """Clevver's endpoints."""

    server_version = "ClevverEmulator/1.0"

    @property
    def app(self) -> ClevverApp:
        app: ClevverApp = self.server.app  # type: ignore[assignment]
        return app

    def error(self, status: int, message: str, **headers: str) -> Reply:
        return Reply(status, {"status": "error", "message": message}, dict(headers))

    def authorized(self) -> bool:
        key = self.app.api_key
        if key is None:
            return True
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8"), key.encode("utf-8"))

    def unauthorized(self) -> Reply:
        return self.error(401, "Unauthenticated: send Authorization: Bearer <api token>",
                          **{"WWW-Authenticate": 'Bearer realm="Clevver"'})

    def envelope(self, status: int, data: Any, message: str | None = None,
                 inside: bool = True) -> Reply:
        """``{"status": "success", "data": …}`` with the message where the docs put it,
        or, under the ``quirky`` fault, elsewhere and with strings for numbers."""
        payload: dict[str, Any] = {"status": "success"}
        if self.app.faults.draw("quirky"):
            self.note_fault("quirky")
            data, inside = _quirky(data), not inside
            payload["meta"] = {"request_id": str(uuid.uuid4())}
        if message is not None and inside and isinstance(data, dict):
            data = {**data, "message": message}
        elif message is not None:
            payload = {"message": message, **payload}
        return Reply(status, {**payload, "data": data})

    def base_url(self) -> str:
        return f"http://{self.headers.get('Host') or 'localhost'}"

    # --- endpoints --------------------------------------------------------------

    def list_batches(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.envelope(200, self.app.registry.active())

    def create_batch(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.envelope(201, self.app.registry.create(), "Batch created successfully")

    def attach(self, arg: str | None, query: dict[str, str]) -> Reply:
        registry = self.app.registry
        registry.check_attachable(arg)  # before reading a byte of a refused upload
        temp = registry.incoming / f"{uuid.uuid4()}.part"
        try:
            received = self._receive(temp)
            if received is None:
                raise ApiError(422, 'the form has no "file" field; send the file as "file"')
            name, checksum, size = received
            asset = registry.add_asset(str(arg), name, temp, checksum, size)
        except BadMultipart as exc:
            raise ApiError(400, str(exc)) from None
        finally:
            temp.unlink(missing_ok=True)  # renamed away when stored
        log_event("emulator.asset", batch=arg, asset=asset.id, bytes=size,
                  duplicate=asset.duplicate)
        return self.envelope(200, asset_json(asset, self.base_url(), "created", False),
                             "Asset successfully uploaded", inside=False)

    def _receive(self, temp: Path) -> tuple[str, str, int] | None:
        """Write the form's ``file`` part to ``temp``: its name, sha256 and size."""
        form = Multipart(self.body, self.headers.get("Content-Type"))
        received = None
        while (part := form.next_part()) is not None:
            if part.name != "file" or received is not None:
                continue  # other fields (and a second file) are skipped unread
            digest, size = hashlib.sha256(), 0
            with temp.open("wb") as out:
                while piece := form.read(CHUNK):
                    digest.update(piece)
                    size += len(piece)
                    out.write(piece)
            name = re.split(r"[\\/]", part.filename or "")[-1] or "file"
            received = (name, digest.hexdigest(), size)
        return received

    def start(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.envelope(200, self.app.registry.start(arg), "Batch job started")

    def batch_status(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.envelope(200, self.app.registry.poll(arg))

    def receipt(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.envelope(200, self.app.registry.receipt(arg, self.base_url()))

    def file_link(self, arg: str | None, query: dict[str, str]) -> Reply:
        return _file_reply(self.app.registry.stored_file(arg, None))

    def forever_link(self, arg: str | None, query: dict[str, str]) -> Reply:
        return _file_reply(self.app.registry.stored_file(None, arg))


def _file_reply(path: Path) -> Reply:
    file = path.open("rb")
    return Reply(200, file=file, size=os.fstat(file.fileno()).st_size)


ClevverHandler.routes = [
    ("GET", re.compile(r"/api/batches"), ClevverHandler.list_batches),
    ("POST", re.compile(r"/api/batches"), ClevverHandler.create_batch),
    ("POST", re.compile(r"/api/batches/([^/]+)/files"), ClevverHandler.attach),
    ("POST", re.compile(r"/api/batches/([^/]+)/start"), ClevverHandler.start),
    ("GET", re.compile(r"/api/batches/([^/]+)"), ClevverHandler.batch_status),
    ("GET", re.compile(r"/api/files/([^/]+)"), ClevverHandler.receipt),
    ("GET", re.compile(r"/uploads/digital_asset/file/([^/]+)/[^/]*"), ClevverHandler.file_link),
    ("GET", re.compile(r"/forever/([0-9a-f]{64})"), ClevverHandler.forever_link),
]
ClevverHandler.public = frozenset({"file_link", "forever_link"})


@dataclass(kw_only=True)
class ClevverEmulator(RunningEmulator):
    """A running Clevver emulator (its ``violations()``: batches started twice, documents
    stored twice)."""


def start_clevver(
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    faults: str = "",
    data_dir: Path | None = None,
    seed: int | None = None,
    polls: int = 3,
    late_seconds: float = 3.0,
    slow_seconds: float = 2.0,
) -> ClevverEmulator:
    """Start the emulator in a background thread and return at once.

    ``port=0`` lets the OS pick a free port (``handle.url`` has the real one);
    ``data_dir=None`` makes a new temporary folder, removed by ``stop()``. ``polls``:
    status reads from start to delivered; ``late_seconds``: how late a ``late-start``
    takes effect and a ``late-txid`` shows. Raises ValueError for a bad fault spec or
    argument, OSError when the address cannot be bound.
    """
    fault_plan = Faults(faults, seed, FAULT_KINDS)  # first: a bad spec makes nothing
    check_address_and_key(port, api_key)
    if polls < 1:
        raise ValueError(f"polls is {polls}; a batch needs at least 1 status read to deliver")
    if late_seconds < 0 or slow_seconds < 0:
        raise ValueError("late_seconds and slow_seconds must not be negative")
    data_dir, temporary = data_folder(data_dir, "clevver")
    try:
        journal = Journal(data_dir / JOURNAL_NAME)
        journal.path.touch()
        registry = Registry(data_dir, journal, fault_plan, polls, late_seconds)
        app = ClevverApp(registry=registry, faults=fault_plan, api_key=api_key,
                         slow_seconds=slow_seconds)
        server = EmulatorServer((host, port), app, ClevverHandler)
    except BaseException:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    url, thread = serve(server, host, "clevver")
    return ClevverEmulator(url=url, journal_path=journal.path, data_dir=data_dir,
                           _server=server, _thread=thread, _temporary=temporary)


# Until SIGINT or SIGTERM, for `folderseal emulate clevver` (see run_until_signal).
run_clevver = runs_until_signal("clevver", start_clevver)
