"""A local Centrapay: its batch API (docs/design.md, "The providers' APIs") on loopback, for
trials and tests.

``folderseal emulate centrapay`` runs it (``run_centrapay``); tests start it in a thread
(``start_centrapay``). Requests need ``X-Api-Key: <api key>`` when a key is given (401
otherwise). Errors are ``{"message": …}``.

``POST /api/batches`` with ``{type, url, accountId, test?}`` (400 for a missing field, an
unknown type, a url that is not http(s)) answers the Batch model ``{id, status:
"created", type, count: "0", errorCount: "0", errors: []}`` with a 22-character base62
id. A worker thread then fetches the url with a real HTTP GET (S3 pre-signed URLs and
served folders are really read), streamed: sha256, size, UTF-8 check and the per-line
report in one pass, never the file whole in memory. ``GET /api/batches/{id}`` (403 for
an id it does not know: Centrapay's convention) shows ``created`` until the file is
fetched, then each read moves it one step on (at most one per ``step_seconds``):
``copied`` → ``chunked`` (``count`` shown) → ``complete`` (``errorCount`` and
``errors`` shown). A file that cannot be fetched (HTTP error, refused connection) or is
not UTF-8 goes ``created`` → ``error``, with one error naming the cause. Counters are
BigNumber strings.

The report: for ``farmlands-external-asset`` and ``ticketek-ticket`` (JSON Lines) every
non-empty line is a record, and one that is not a JSON object, or lacks a string
``externalId``, is an error ``{index, externalId?, message}``; for ``business-onboard``
(CSV) the first row is the header and every later non-blank row a record, an error
when its column count differs from the header's. ``index`` is the 0-based line index
over the file's lines (header included), as a string. ``count`` and ``errorCount`` are
exact; the first ``ERRORS_KEPT`` errors are listed (more than a client keeps).

More than ``rate_limit`` authenticated requests in any 60 seconds are answered 429 with
``Retry-After`` (the seconds until the oldest call leaves the window; refused calls do
not count).

The journal (``<data>/journal.jsonl``, each line fsynced before the answer it explains):
``create`` (batch, type, accountId, test, the url without its query: a pre-signed query
is a read key), ``create_fault`` (a request fault that hit a create: its kind, whether
the batch was created, its id and url, so a test can tell a create whose answer was
lost), ``fetched`` (batch, sha256, bytes, count, errorCount), ``error`` (a batch that
failed: why), ``complete`` (shown complete), ``rate_limited``, and ``violation``: the
same content (by sha256; tests drop distinct contents) fetched and loaded by two
batches. ``violations()`` reads them, ``read_journal()`` all of it. A restart on the same
data folder reads the journal back, so it still sees the contents loaded before.

Faults (a spec as the other emulators take, e.g. ``500-before=0.1,drop=0.05,late-403``):
the request faults of ``folderseal.providers.emulation.httpd`` (``429``, ``500-before``,
``drop-before``, ``500-after``, ``drop``, ``slow``) and Centrapay's own:

* ``bad-url``, drawn per batch created: its fetch fails, so it goes ``error``;
* ``late-403``, drawn per batch created: its GETs answer 403 for ``late_seconds``
  after the create (Centrapay's lag), then it shows as usual;
* ``quirky``, drawn per Batch answered: ``totalCount`` (the model's name) instead of
  ``count``, and extra fields.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import hmac
import json
import math
import queue
import re
import secrets
import shutil
import string
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from folderseal.core.redact import without_secrets
from folderseal.providers.emulation.faults import REQUEST_KINDS, Faults, RequestFaults
from folderseal.providers.emulation.httpd import (
    ApiError,
    EmulatorApp,
    EmulatorHandler,
    EmulatorServer,
    Reply,
)
from folderseal.providers.emulation.journal import Journal, log_event
from folderseal.providers.emulation.runner import (
    RunningEmulator,
    check_address_and_key,
    data_folder,
    runs_until_signal,
    serve,
)
from folderseal.providers.http import without_query

__all__ = ["FAULT_KINDS", "CentrapayEmulator", "run_centrapay", "start_centrapay"]

FAULT_KINDS = (*REQUEST_KINDS, "bad-url", "late-403", "quirky")
JOURNAL_NAME = "journal.jsonl"
JSONL, CSV = "jsonl", "csv"
BATCH_TYPES = {"farmlands-external-asset": JSONL, "ticketek-ticket": JSONL,
               "business-onboard": CSV}
STAGES = ("created", "copied", "chunked", "complete")
ID_ALPHABET = string.digits + string.ascii_letters
ID_LENGTH = 22  # like Centrapay's ids (e.g. the docs' accountId C4QnjXvj8At6SMsEN4LRi9)
ERRORS_KEPT = 5000  # listed per batch; errorCount stays exact
MAX_LINE = 1 << 20  # a longer line is an error, not read into memory
CHUNK = 64 * 1024
MAX_CREATE_BODY = 64 * 1024
RATE_WINDOW = 60.0
BOM = b"\xef\xbb\xbf"


def new_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


# --- the report: one streamed pass over the fetched bytes -------------------------------


class Unreadable(Exception):
    """The file cannot be loaded at all: the batch goes ``error`` with this message."""


@dataclass(slots=True)
class Report:
    """What loading a file found: records, errors (counted exactly, listed up to a cap)."""

    count: int = 0
    error_count: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def error(self, index: int, message: str, external_id: str | None = None) -> None:
        self.error_count += 1
        if len(self.errors) < ERRORS_KEPT:
            entry = {"index": str(index), "message": message}
            if external_id is not None:
                entry["externalId"] = external_id
            self.errors.append(entry)


class Intake:
    """The fetched bytes as they pass: their sha256, their size, and the UTF-8 check."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The chunks, each checked before it is passed on; Unreadable if not UTF-8."""
        for chunk in chunks:
            self.digest.update(chunk)
            self.size += len(chunk)
            self._check(chunk, final=False)
            yield chunk
        self._check(b"", final=True)

    def _check(self, chunk: bytes, final: bool) -> None:
        try:
            self._decoder.decode(chunk, final)
        except UnicodeDecodeError:
            raise Unreadable(
                f"the batch file is not UTF-8 (an invalid byte in its first {self.size} "
                f"bytes); save it as UTF-8 and send it again") from None


def split_lines(chunks: Iterable[bytes]) -> Iterator[str | None]:
    """The file's lines as text, without their ends (and without a leading BOM); None
    for a line longer than MAX_LINE, which is skipped, not held in memory."""
    pending = bytearray()
    too_long = after_first = False
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if not too_long:
                pending += chunk[start:end]
            yield None if too_long or len(pending) > MAX_LINE else _text(pending, after_first)
            after_first, too_long = True, False
            pending.clear()
            start = end + 1
        if not too_long:
            pending += chunk[start:]
            if len(pending) > MAX_LINE:
                too_long = True
                pending.clear()
    if pending or too_long:
        yield None if too_long else _text(pending, after_first)


def _text(line: bytearray, after_first: bool) -> str:
    raw = bytes(line) if after_first else bytes(line).removeprefix(BOM)
    return raw.decode("utf-8", "replace").removesuffix("\r")


def report_jsonl(lines: Iterable[str | None]) -> Report:
    """Every non-empty line a record: a JSON object with a string ``externalId``."""
    report = Report()
    for index, line in enumerate(lines):
        if line is None:
            report.count += 1
            report.error(index, f"the line is longer than {MAX_LINE} bytes")
            continue
        if not line.strip():
            continue
        report.count += 1
        try:
            record = json.loads(line)
        except ValueError as exc:
            report.error(index, f"not valid JSON: {getattr(exc, 'msg', exc)}")
            continue
        if not isinstance(record, dict):
            report.error(index, "the line is not a JSON object")
            continue
        external_id = record.get("externalId")
        if external_id is None or external_id == "":
            report.error(index, "the record has no externalId")
        elif not isinstance(external_id, str):
            shown = str(external_id) if isinstance(external_id, int | float | bool) else None
            report.error(index, "externalId must be a string", shown)
    return report


def report_csv(lines: Iterable[str | None]) -> Report:
    """A header row, then every non-blank row a record with the header's column count."""
    report = Report()
    too_long: list[int] = []

    def texts() -> Iterator[str]:
        for index, line in enumerate(lines):
            if line is None:
                too_long.append(index)
                line = ""  # read by csv as a blank row; the error is noted here
            yield line + "\n"

    reader = csv.reader(texts())
    columns: int | None = None
    while True:
        index = reader.line_num  # lines read so far: the index of the row's first line
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.count += 1
            report.error(index, f"not valid CSV: {exc}")
            if reader.line_num == index:
                break
            continue
        finally:
            for long_index in too_long:
                report.count += 1
                report.error(long_index, f"the line is longer than {MAX_LINE} bytes")
            too_long.clear()
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if columns is None:
            columns = len(row)
            continue
        report.count += 1
        if len(row) != columns:
            report.error(index, f"the row has {len(row)} columns; the header has {columns}")
    if columns is None:
        raise Unreadable("the batch file has no header row; a business-onboard file starts "
                         "with its column names")
    return report


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the fetch of a batch's file gave: a report, or why there is none."""

    report: Report | None
    message: str = ""
    sha256: str | None = None
    size: int | None = None


# --- batches ----------------------------------------------------------------------------


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

    def url_of(self, batch_id: str) -> str | None:
        """The batch's url without its query, for the journal (None: no such batch)."""
        with self.lock:
            batch = self._batches.get(batch_id)
        return None if batch is None else without_query(batch.url)

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


# --- the fetcher ------------------------------------------------------------------------


class Fetcher:
    """Worker threads that fetch each created batch's file and report on it."""

    def __init__(self, registry: Registry, workers: int, timeout: float) -> None:
        self.registry = registry
        self.timeout = timeout
        self._queue: queue.Queue[Batch | None] = queue.Queue()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"centrapay-fetch-{i}",
                                          daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, batch: Batch) -> None:
        self._queue.put(batch)

    def stop(self) -> None:
        """Stop the workers: batches not fetched yet never will be, and a fetch under way
        (left to its timeout: daemon threads) is not journaled."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + 5
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
            while (batch := self._queue.get()) is not None and not self._stopping.is_set():
                try:
                    outcome = self.fetch(client, batch)
                except Exception as exc:  # a bug here must not stop the worker
                    log_event("emulator.internal_error", batch=batch.id, error=repr(exc))
                    outcome = Outcome(None, "the emulator failed to read the batch file")
                if self._stopping.is_set():
                    return  # the emulator stopped meanwhile: its journal is closed
                self.registry.fetched(batch, outcome)

    def fetch(self, client: httpx.Client, batch: Batch) -> Outcome:
        """GET the batch's url and make its report, streamed."""
        if batch.bad_url:
            return Outcome(None, "could not fetch the batch file from its url (the emulator's "
                                 "bad-url fault); nothing was loaded")
        intake = Intake()
        try:
            with client.stream("GET", batch.url) as response:
                if response.status_code != 200:
                    return Outcome(None, f"could not fetch the batch file: its url answered "
                                         f"HTTP {response.status_code}; nothing was loaded")
                chunks = intake.feed(response.iter_bytes(CHUNK))
                lines = split_lines(chunks)
                report = report_csv(lines) if BATCH_TYPES[batch.type] == CSV else \
                    report_jsonl(lines)
                for _ in chunks:  # what a parser left unread still counts in the hash
                    pass
        except Unreadable as exc:
            return Outcome(None, str(exc), intake.digest.hexdigest(), intake.size)
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            return Outcome(None, without_secrets(f"could not fetch the batch file: "
                                                 f"{type(exc).__name__}: {exc}; nothing was "
                                                 "loaded"))
        return Outcome(report, "", intake.digest.hexdigest(), intake.size)


class RateLimit:
    """At most ``per_minute`` admitted calls in any 60 seconds (0: no limit)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self) -> float | None:
        """None when the call is admitted (and counted), else the seconds to wait."""
        if not self.per_minute:
            return None
        now = time.monotonic()
        with self._lock:
            while self._calls and now - self._calls[0] >= RATE_WINDOW:
                self._calls.popleft()
            if len(self._calls) >= self.per_minute:
                return self._calls[0] + RATE_WINDOW - now
            self._calls.append(now)
            return None


# --- HTTP -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class CentrapayApp(EmulatorApp):
    """What the Centrapay request handlers share."""

    registry: Registry
    fetcher: Fetcher
    limit: RateLimit


class CentrapayHandler(EmulatorHandler):
    """Centrapay's endpoints."""

    server_version = "CentrapayEmulator/1.0"
    _create_url: str | None = None  # the url of this request's create (for create_fault)

    @property
    def app(self) -> CentrapayApp:
        app: CentrapayApp = self.server.app  # type: ignore[assignment]
        return app

    def error(self, status: int, message: str, **headers: str) -> Reply:
        return Reply(status, {"message": message}, dict(headers))

    def authorized(self) -> bool:
        key = self.app.api_key
        return key is None or hmac.compare_digest(
            (self.headers.get("X-Api-Key") or "").strip().encode("utf-8"), key.encode("utf-8"))

    def unauthorized(self) -> Reply:
        return self.error(401, "Unauthorized: send the API key as X-Api-Key")

    def admit(self, route: str) -> Reply | None:
        wait = self.app.limit.admit()
        if wait is None:
            return None
        retry_after = max(1, math.ceil(wait))
        self.app.registry.journal.append({"event": "rate_limited", "route": route,
                                          "retry_after": retry_after, "at": time.time()})
        return self.error(429, f"more than {self.app.limit.per_minute} requests a minute; "
                               f"retry after {retry_after} s", **{"Retry-After": str(retry_after)})

    def faulted(self, route: str, faults: RequestFaults, done: Reply | None) -> None:
        if route != "create_batch":
            return
        batch = None
        kinds = ([faults.outcome] if faults.outcome else []) + (["slow"] if faults.slow else [])
        if done is None:  # not served: the body (unread) names the file all the same
            self._create_url = None
            self._read_create_url()
        elif done.status == 200:
            batch = str(done.payload["id"])
        self.app.registry.journal.append({
            "event": "create_fault",
            "kind": "+".join(kinds),
            "created": batch is not None, "batch": batch, "url": self._create_url,
            "at": time.time()})

    def _read_create_url(self) -> None:
        try:
            body = json.loads(self.body.read_all(MAX_CREATE_BODY))
        except (ValueError, ConnectionError, TimeoutError):
            return
        url = body.get("url") if isinstance(body, dict) else None
        if isinstance(url, str):
            self._create_url = without_query(url)

    def answer(self, view: dict[str, Any]) -> Reply:
        """A Batch; under the ``quirky`` fault with ``totalCount`` and extra fields."""
        if self.app.faults.draw("quirky"):
            self.note_fault("quirky")
            view = {("totalCount" if k == "count" else k): v for k, v in view.items()}
            view |= self.app.registry.quirky_extras(view["id"])
        return Reply(200, view)

    # --- endpoints --------------------------------------------------------------

    def create_batch(self, arg: str | None, query: dict[str, str]) -> Reply:
        self._create_url = None
        try:
            body = json.loads(self.body.read_all(MAX_CREATE_BODY))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object {type, url, accountId, test?}")
        missing = [k for k in ("type", "url", "accountId")
                   if not isinstance(body.get(k), str) or not body[k]]
        if missing:
            raise ApiError(400, f"missing or empty field(s): {', '.join(missing)}; send "
                                f"{{type, url, accountId, test?}}")
        batch_type, url = body["type"], body["url"]
        self._create_url = without_query(url)
        if batch_type not in BATCH_TYPES:
            raise ApiError(400, f"unknown batch type {batch_type[:80]!r}; known types: "
                                f"{', '.join(BATCH_TYPES)}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ApiError(400, "url must be an absolute http or https URL")
        test = body.get("test", False)
        if not isinstance(test, bool):
            raise ApiError(400, "test must be true or false")
        batch = self.app.registry.create(batch_type, url, body["accountId"], test)
        view = batch.view()  # before the fetch can change it: a create shows "created"
        self.app.fetcher.submit(batch)
        return self.answer(view)

    def get_batch(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.answer(self.app.registry.poll(arg))


CentrapayHandler.routes = [
    ("POST", re.compile(r"/api/batches"), CentrapayHandler.create_batch),
    ("GET", re.compile(r"/api/batches/([^/]+)"), CentrapayHandler.get_batch),
]


@dataclass(kw_only=True)
class CentrapayEmulator(RunningEmulator):
    """A running Centrapay emulator."""

    _fetcher: Fetcher = field(repr=False)

    def _stop_work(self) -> None:
        self._fetcher.stop()


def start_centrapay(
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    faults: str = "",
    data_dir: Path | None = None,
    seed: int | None = None,
    step_seconds: float = 0.2,
    late_seconds: float = 2.0,
    slow_seconds: float = 2.0,
    rate_limit: int = 200,
    workers: int = 4,
    fetch_timeout: float = 30.0,
) -> CentrapayEmulator:
    """Start the emulator in background threads and return at once.

    ``port=0`` lets the OS pick a free port (``handle.url`` has the real one);
    ``data_dir=None`` makes a new temporary folder, removed by ``stop()``.
    ``step_seconds``: the least time between two status steps shown; ``late_seconds``:
    how long a ``late-403`` batch answers 403; ``rate_limit``: requests a minute (0: no
    limit); ``workers``: files fetched at once. Raises ValueError for a bad fault spec
    or argument, OSError when the address cannot be bound.
    """
    fault_plan = Faults(faults, seed, FAULT_KINDS)  # first: a bad spec makes nothing
    check_address_and_key(port, api_key)
    if min(step_seconds, late_seconds, slow_seconds) < 0:
        raise ValueError("step_seconds, late_seconds and slow_seconds must not be negative")
    if rate_limit < 0:
        raise ValueError(f"rate_limit is {rate_limit}; give requests a minute, or 0 for none")
    if workers < 1 or fetch_timeout <= 0:
        raise ValueError("workers must be at least 1 and fetch_timeout more than 0")
    data_dir, temporary = data_folder(data_dir, "centrapay")
    try:
        journal = Journal(data_dir / JOURNAL_NAME)
        journal.path.touch()
        registry = Registry(journal, fault_plan, step_seconds, late_seconds)
        fetcher = Fetcher(registry, workers, fetch_timeout)
        app = CentrapayApp(registry=registry, fetcher=fetcher, limit=RateLimit(rate_limit),
                           faults=fault_plan, api_key=api_key, slow_seconds=slow_seconds)
        try:
            server = EmulatorServer((host, port), app, CentrapayHandler)
        except BaseException:
            fetcher.stop()
            raise
    except BaseException:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    url, thread = serve(server, host, "centrapay")
    return CentrapayEmulator(url=url, journal_path=journal.path, data_dir=data_dir,
                             _server=server, _thread=thread, _temporary=temporary,
                             _fetcher=fetcher)


# Until SIGINT or SIGTERM, for `folderseal emulate centrapay` (see run_until_signal).
run_centrapay = runs_until_signal("centrapay", start_centrapay)
