"""Running an emulator: its data folder, its server thread, its handle, its command line.

Every emulator is started the same way: ``data_folder`` gives it a folder (a temporary
one when none is given, removed when it stops), ``serve`` runs its server in a
thread, and the ``RunningEmulator`` handle says where it listens and stops it.
``run_until_signal`` is the body of ``folderseal emulate <provider>``, and
``runs_until_signal`` makes an emulator's ``run_…`` function from its ``start_…``.
"""

from __future__ import annotations

import inspect
import json
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, ParamSpec, Self

from folderseal.core.errors import ExitCode
from folderseal.providers.emulation.httpd import EmulatorServer
from folderseal.providers.emulation.journal import Journal, log_event

__all__ = ["RunningEmulator", "data_folder", "run_until_signal", "runs_until_signal", "serve"]

P = ParamSpec("P")


@dataclass(kw_only=True)
class RunningEmulator:
    """A running emulator: where it listens, where its journal is, and how to stop it."""

    url: str
    journal_path: Path
    data_dir: Path
    _server: EmulatorServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _temporary: bool = field(default=False, repr=False)  # made here: removed on stop
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop serving and working; safe to call twice. A data directory that was given
        is kept; a temporary one is removed."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._stop_work()
        self._server.server_close()
        self._thread.join(10)
        if self._temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _stop_work(self) -> None:
        """Stop the emulator's own background work (an emulator with some overrides it)."""

    def set_faults(self, spec: str) -> None:
        """Inject ``spec`` from the next request on, e.g. to fail one chosen call."""
        self._server.app.faults.replace(spec)

    def injected_faults(self) -> dict[str, int]:
        """How many faults of each kind were injected so far."""
        counts: dict[str, int] = self._server.app.faults.counts()
        return counts

    def request_counts(self) -> dict[str, int]:
        """Authenticated requests so far, per endpoint (named by its handler)."""
        counts: dict[str, int] = self._server.app.request_counts()
        return counts

    def read_journal(self) -> list[dict[str, Any]]:
        """The journal's entries so far, in order."""
        return list(Journal(self.journal_path).entries())

    def violations(self) -> list[dict[str, Any]]:
        """The journal's ``violation`` lines: what the client did that it must never do
        (each emulator says which; SEAL's journal has none)."""
        return [e for e in self.read_journal() if e.get("event") == "violation"]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_address_and_key(port: int, api_key: str | None) -> None:
    """What every emulator refuses before it makes anything: a port out of range, an
    empty key (None means no authentication)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not between 0 and 65535")
    if api_key == "":
        raise ValueError("the API key is empty; give a key, or None for no authentication")


@contextmanager
def data_folder(data_dir: Path | None, name: str) -> Iterator[tuple[Path, bool]]:
    """The emulator's data folder and whether it is temporary (made here for this run),
    for the start-up inside the block: a temporary folder is removed if it fails."""
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        yield data_dir, False
        return
    made = Path(tempfile.mkdtemp(prefix=f"folderseal-{name}-emulator-"))
    try:
        yield made, True
    except BaseException:
        shutil.rmtree(made, ignore_errors=True)
        raise


def serve(server: EmulatorServer, host: str, name: str) -> tuple[str, threading.Thread]:
    """Serve in a daemon thread; the URL it listens on (with the real port) and the thread."""
    real_port = server.server_address[1]
    shown_host = f"[{host}]" if ":" in host else host
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"{name}-emulator",
        daemon=True,
    )
    thread.start()
    return f"http://{shown_host}:{real_port}", thread


def runs_until_signal(name: str, start: Callable[P, RunningEmulator]) -> Callable[P, int]:
    """The command-line twin of an emulator's ``start`` function (which takes ``host``
    and ``port``): the same arguments, run until a signal (see ``run_until_signal``)."""
    signature = inspect.signature(start)

    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            print(f"{name} emulator: {exc}", file=sys.stderr)
            return int(ExitCode.USAGE)
        bound.apply_defaults()
        where = f"{bound.arguments['host']}:{bound.arguments['port']}"
        return run_until_signal(name, where, lambda: start(*args, **kwargs))

    run.__name__ = f"run_{name}"
    run.__doc__ = f"Run the {name} emulator until SIGINT or SIGTERM; the exit code."
    return run


def run_until_signal(name: str, where: str, start: Callable[[], RunningEmulator]) -> int:
    """Start an emulator and run it until SIGINT or SIGTERM; return the exit code.

    Prints one JSON line to stdout once listening (``emulator.listening`` with url,
    journal and data), and the emulator logs one JSON line per request to stderr. Exit
    0 after a signal (a temporary data folder removed first), 2 for a bad fault spec or
    argument, 1 when the address ``where`` cannot be bound.
    """
    try:
        handle = start()
    except ValueError as exc:
        print(f"{name} emulator: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except OSError as exc:
        print(f"{name} emulator: cannot listen on {where}: {exc}", file=sys.stderr)
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
