"""The emulators of the providers' APIs, and the Signius SEAL emulator.

Every emulator is a real HTTP server (stdlib ``ThreadingHTTPServer``) speaking a
provider's documented endpoints with their documented quirks, able to inject faults,
and keeping a journal (``<data>/journal.jsonl``) of what it did: the evidence that a
client had each file processed exactly once. The shared parts live here: ``httpd``
(HTTP, routing, request faults), ``faults`` (the fault spec and the draws),
``journal`` (the journal and the log lines), ``runner`` (data folder, thread, handle,
command line), ``body`` and ``multipart`` (request bodies in chunks). A provider's own
emulator lives in its folder (Clevver's: ``folderseal.providers.clevver.emulator``).

SEAL's emulator speaks the documented endpoints with their quirks (string vs number
ids and statuses, status names vs numbers, three places for AcceptBatch's
``batchId``, duplicate documents on a second upload), signs with folderseal's own
signer and a trial seal, and journals one line per document it signed (or failed to
sign). Its modules: ``server`` (endpoints, auth), ``state`` (batches, journal),
``signing`` (the background signing of accepted batches), ``package`` (ZIP in and
out), ``params`` (ids from path, query or JSON).

Use ``run_seal`` from a command line (blocks until SIGINT/SIGTERM) and ``start_seal``
in tests (returns at once with a handle to stop it). Without a data folder the
emulator makes a temporary one and removes it when it stops; a data folder given is
kept (its journal is the evidence of a test run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from folderseal.providers.emulation.faults import Faults, parse_faults
from folderseal.providers.emulation.runner import (
    RunningEmulator,
    check_address_and_key,
    data_folder,
    runs_until_signal,
    serve,
)
from folderseal.providers.seal.emulator.server import SealApp, seal_server
from folderseal.providers.seal.emulator.signing import BatchSigner, load_or_make_credentials
from folderseal.providers.seal.emulator.state import Registry, SealJournal

__all__ = ["EmulatorHandle", "RunningEmulator", "parse_faults", "run_seal", "start_seal"]

JOURNAL_NAME = "journal.jsonl"


@dataclass(kw_only=True)
class EmulatorHandle(RunningEmulator):
    """A running SEAL emulator: where it listens, where its journal is, how to stop it."""

    _signer: BatchSigner = field(repr=False)
    _registry: Registry = field(repr=False)

    def _stop_work(self) -> None:
        self._signer.stop()

    def accept_calls(self) -> list[int]:
        """The batch id of every AcceptBatch received, refused ones included."""
        return list(self._registry.accept_calls)


def start_seal(
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    faults: str = "",
    data_dir: Path | None = None,
    seed: int | None = None,
    step_delay: float = 0.2,
    slow_seconds: float = 2.0,
    lag: float = 0.0,
    latency: float = 0.0,
) -> EmulatorHandle:
    """Start the emulator in background threads and return at once.

    ``port=0`` lets the OS pick a free port (``handle.url`` has the real one);
    ``data_dir=None`` makes a new temporary directory, removed by ``stop()``;
    ``latency`` seconds are waited by every authenticated call (a distant server). Raises
    ValueError for a bad fault spec or argument, OSError when the address cannot be
    bound.
    """
    fault_plan = Faults(faults, seed)  # first: a bad spec fails before anything is made
    check_address_and_key(port, api_key)
    if step_delay < 0 or slow_seconds < 0 or latency < 0:
        raise ValueError("step_delay, slow_seconds and latency must not be negative")
    with data_folder(data_dir, "seal") as (data_dir, temporary):
        journal = SealJournal(data_dir / JOURNAL_NAME)
        journal.path.touch()
        registry = Registry(data_dir, journal, lag)
        signer = BatchSigner(registry, load_or_make_credentials(data_dir), step_delay)
        app = SealApp(
            registry=registry,
            faults=fault_plan,
            signer=signer,
            api_key=api_key,
            slow_seconds=slow_seconds,
            latency=latency,
        )
        server = seal_server((host, port), app)
    url, thread = serve(server, host, "seal")
    return EmulatorHandle(
        url=url,
        journal_path=journal.path,
        data_dir=data_dir,
        _server=server,
        _thread=thread,
        _signer=signer,
        _registry=registry,
        _temporary=temporary,
    )


# Until SIGINT or SIGTERM (see run_until_signal): prints one JSON line to stdout once
# listening (``emulator.listening`` with url, journal and data), one JSON line per request
# to stderr; exit 0 after a signal (a temporary data folder removed first), 2 for a bad
# fault spec or argument, 1 when the address cannot be bound.
run_seal = runs_until_signal("seal", start_seal)
