"""An emulator of the Signius SEAL batch API, to test folderseal's SEAL client against.

It is a real HTTP server (stdlib ``ThreadingHTTPServer``) speaking the documented
endpoints with their documented quirks (string vs number ids and statuses, status
names vs numbers, three places for AcceptBatch's ``batchId``, duplicate documents on
a second upload), signing with folderseal's own engine and a trial seal, and able to
inject faults (see ``faults``). It keeps a journal, ``<data>/journal.jsonl``, with one
line per document it signed (or failed to sign): the evidence that a client had each
file signed exactly once.

Modules: ``server`` (HTTP, routing, auth, request faults), ``state`` (batches, journal),
``signing`` (the background signing of accepted batches), ``package`` (ZIP in and
out), ``body`` (request bodies in chunks), ``params`` (ids from path, query or JSON),
``faults`` (the fault spec and the draws).

Use ``run_seal`` from a command line (blocks until SIGINT/SIGTERM) and ``start_seal``
in tests (returns at once with a handle to stop it). Without a data folder the
emulator makes a temporary one and removes it when it stops; a data folder given is
kept (its journal is the evidence of a test run).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from folderseal.errors import ExitCode

from .faults import Faults, parse_faults
from .server import EmulatorApp, SealServer
from .signing import BatchSigner, load_or_make_seal
from .state import Journal, Registry, log_event

__all__ = ["EmulatorHandle", "parse_faults", "run_seal", "start_seal"]

JOURNAL_NAME = "journal.jsonl"


@dataclass
class EmulatorHandle:
    """A running emulator: where it listens, where its journal is, and how to stop it."""

    url: str
    journal_path: Path
    data_dir: Path
    _server: SealServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _signer: BatchSigner = field(repr=False)
    _registry: Registry = field(repr=False)
    _temporary: bool = field(default=False, repr=False)  # made here: removed on stop
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop serving and signing; safe to call twice. A data directory that was given
        is kept; a temporary one is removed."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._signer.stop()
        self._server.server_close()
        self._thread.join(10)
        if self._temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def set_faults(self, spec: str) -> None:
        """Inject ``spec`` from the next request on, e.g. to fail one chosen call."""
        self._server.app.faults.replace(spec)

    def injected_faults(self) -> dict[str, int]:
        """How many faults of each kind were injected so far."""
        return self._server.app.faults.counts()

    def accept_calls(self) -> list[int]:
        """The batch id of every AcceptBatch received, refused ones included."""
        return list(self._registry.accept_calls)

    def read_journal(self) -> list[dict[str, Any]]:
        """The journal's entries so far, in order."""
        if not self.journal_path.exists():
            return []
        lines = self.journal_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
) -> EmulatorHandle:
    """Start the emulator in background threads and return at once.

    ``port=0`` lets the OS pick a free port (``handle.url`` has the real one);
    ``data_dir=None`` makes a new temporary directory, removed by ``stop()``. Raises
    ValueError for a bad fault spec or argument, OSError when the address cannot be
    bound.
    """
    fault_plan = Faults(faults, seed)  # first: a bad spec fails before anything is made
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not between 0 and 65535")
    if step_delay < 0 or slow_seconds < 0:
        raise ValueError("step_delay and slow_seconds must not be negative")
    if api_key == "":
        raise ValueError("the API key is empty; give a key, or None for no authentication")
    temporary = data_dir is None
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="folderseal-seal-emulator-"))
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        journal = Journal(data_dir / JOURNAL_NAME)
        journal.path.touch()
        registry = Registry(data_dir, journal, lag)
        signer = BatchSigner(registry, load_or_make_seal(data_dir), step_delay)
        app = EmulatorApp(
            registry=registry,
            faults=fault_plan,
            signer=signer,
            api_key=api_key,
            slow_seconds=slow_seconds,
        )
        server = SealServer((host, port), app)
    except BaseException:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    real_port = server.server_address[1]
    shown_host = f"[{host}]" if ":" in host else host
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="seal-emulator",
        daemon=True,
    )
    thread.start()
    return EmulatorHandle(
        url=f"http://{shown_host}:{real_port}",
        journal_path=journal.path,
        data_dir=data_dir,
        _server=server,
        _thread=thread,
        _signer=signer,
        _registry=registry,
        _temporary=temporary,
    )


def run_seal(
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    faults: str = "",
    data_dir: Path | None = None,
    seed: int | None = None,
    step_delay: float = 0.2,
    slow_seconds: float = 2.0,
    lag: float = 0.0,
) -> int:
    """Run the emulator until SIGINT or SIGTERM; return the exit code.

    Prints one JSON line to stdout once listening (``emulator.listening`` with url,
    journal and data), and one JSON line per request to stderr. Exit 0 after a signal
    (a temporary data folder removed first), 2 for a bad fault spec or argument, 1 when
    the address cannot be bound.
    """
    try:
        handle = start_seal(
            host, port, api_key, faults, data_dir, seed, step_delay, slow_seconds, lag
        )
    except ValueError as exc:
        print(f"seal emulator: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except OSError as exc:
        print(f"seal emulator: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return int(ExitCode.FAILURE)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        line = {
            "event": "emulator.listening",
            "url": handle.url,
            "journal": str(handle.journal_path),
            "data": str(handle.data_dir),
        }
        print(json.dumps(line), flush=True)
        # A timed wait, so the signal handler gets to run promptly on every platform.
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass  # a SIGINT that arrived before the handler was installed
    finally:
        handle.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)
    log_event("emulator.stopped", url=handle.url)
    return int(ExitCode.OK)
