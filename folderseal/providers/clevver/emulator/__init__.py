"""A local Clevver: its batch API (docs/design.md, "The providers' APIs")
on loopback, for trials and tests.

``folderseal emulate clevver`` runs it (``run_clevver``); tests start it in a thread
(``start_clevver``). It speaks the documented endpoints with their documented shapes:
``{"status": "success", "data": …}`` envelopes, ``message`` inside ``data`` (create,
start) or beside it (attach), UUID ids, progress that may be fractional. Requests need
``Authorization: Bearer <api key>`` when a key is given (401 otherwise). Its parts:
:mod:`.endpoints` (HTTP, the token, the envelopes) and :mod:`.batches` (batches,
assets, receipts and the journal).

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

from dataclasses import dataclass
from pathlib import Path

from folderseal.providers.clevver.emulator.batches import Registry
from folderseal.providers.clevver.emulator.endpoints import ClevverApp, ClevverHandler
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

__all__ = ["FAULT_KINDS", "ClevverEmulator", "run_clevver", "start_clevver"]

FAULT_KINDS = (*REQUEST_KINDS, "late-start", "never-deliver", "late-txid", "quirky")
JOURNAL_NAME = "journal.jsonl"


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
    with data_folder(data_dir, "clevver") as (data_dir, temporary):
        journal = Journal(data_dir / JOURNAL_NAME)
        journal.path.touch()
        registry = Registry(data_dir, journal, fault_plan, polls, late_seconds)
        app = ClevverApp(registry=registry, faults=fault_plan, api_key=api_key,
                         slow_seconds=slow_seconds)
        server = EmulatorServer((host, port), app, ClevverHandler)
    url, thread = serve(server, host, "clevver")
    return ClevverEmulator(url=url, journal_path=journal.path, data_dir=data_dir,
                           _server=server, _thread=thread, _temporary=temporary)


# Until SIGINT or SIGTERM, for `folderseal emulate clevver` (see run_until_signal).
run_clevver = runs_until_signal("clevver", start_clevver)
