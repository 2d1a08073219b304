"""A local Centrapay: its batch API (docs/design.md, "The providers' APIs")
on loopback, for trials and tests.

``folderseal emulate centrapay`` runs it (``run_centrapay``); tests start it in a thread
(``start_centrapay``). Requests need ``X-Api-Key: <api key>`` when a key is given (401
otherwise). Errors are ``{"message": …}``. Its parts: :mod:`.endpoints` (HTTP, the API
key, the rate limit), :mod:`.batches` (each batch's status and the journal),
:mod:`.fetcher` (the GET of each batch file) and :mod:`.report` (what loading it found).

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

from dataclasses import dataclass, field
from pathlib import Path

from folderseal.providers.centrapay.emulator.batches import Registry
from folderseal.providers.centrapay.emulator.endpoints import (
    CentrapayApp,
    CentrapayHandler,
    RateLimit,
)
from folderseal.providers.centrapay.emulator.fetcher import Fetcher
from folderseal.providers.centrapay.emulator.report import ERRORS_KEPT, MAX_LINE
from folderseal.providers.emulation.faults import REQUEST_KINDS, Faults
from folderseal.providers.emulation.httpd import EmulatorServer
from folderseal.providers.emulation.journal import Journal
from folderseal.providers.emulation.runner import (
    RunningEmulator,
    check_address_and_key,
    data_folder,
    runs_until_signal,
    serve,
)

__all__ = ["ERRORS_KEPT", "FAULT_KINDS", "MAX_LINE", "CentrapayEmulator", "run_centrapay",
           "start_centrapay"]

FAULT_KINDS = (*REQUEST_KINDS, "bad-url", "late-403", "quirky")
JOURNAL_NAME = "journal.jsonl"


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
    with data_folder(data_dir, "centrapay") as (data_dir, temporary):
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
    url, thread = serve(server, host, "centrapay")
    return CentrapayEmulator(url=url, journal_path=journal.path, data_dir=data_dir,
                             _server=server, _thread=thread, _temporary=temporary,
                             _fetcher=fetcher)


# Until SIGINT or SIGTERM, for `folderseal emulate centrapay` (see run_until_signal).
run_centrapay = runs_until_signal("centrapay", start_centrapay)
