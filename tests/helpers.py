"""Shared test helpers: a demo layout, a daemon in a subprocess, and output checks.

The checks use tools folderseal did not write: ``pdfsig`` (poppler) for PDFs and
``openssl cms`` for detached signatures, plus the sidecar's own hashes.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import io
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from folderseal.providers.emulation.runner import RunningEmulator
from folderseal.signing import make_trial_seal

E = TypeVar("E", bound=RunningEmulator)

FAST = {
    "settle_seconds": 0.3,
    "batch_max_wait_seconds": 0.3,
    "poll_interval_seconds": 0.5,
    "rescan_seconds": 2.0,
    "min_free_bytes": "1MB",
}


@dataclass
class Layout:
    """A folderseal installation in a temp folder: one folder "scans", a trial seal."""

    root: Path
    folder: dict[str, Any] = field(default_factory=dict)
    provider: dict[str, Any] = field(default_factory=dict)
    extra: str = ""

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def errors(self) -> Path:
        return self.root / "errors"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def work(self) -> Path:
        return self.inbox / ".folderseal" / "work"

    @property
    def incoming(self) -> Path:
        """Where the daemon (node "test-node") keeps the files it claimed."""
        return self.work / "nodes" / "test-node" / "incoming"

    def write(self) -> Path:
        for sub in ("inbox", "outbox", "errors", "state"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if not (self.root / "seal" / "seal.p12").exists():
            make_trial_seal(self.root / "seal")
        provider = dict(self.provider) if self.provider.get("kind", "local") != "local" else {
            "kind": "local", "certificate": "seal/seal.p12", "password_file": "seal/seal.pass",
            "workers": 2, **self.provider}
        folder = {"inbox": "inbox", "outbox": "outbox", "errors": "errors",
                  "provider": "local", **FAST, **self.folder}
        lines = ['state_dir = "state"', 'node = "test-node"', "", "[log]",
                 'format = "json"', 'level = "debug"', "", "[providers.local]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in provider.items()]
        lines += ["", "[folders.scans]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in folder.items()]
        self.config.write_text("\n".join(lines) + "\n" + self.extra, encoding="utf-8")
        return self.config


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def _as_user(user: str | None, command: list[str]) -> list[str]:
    """Run ``command`` as ``user``, with that user's groups (as systemd's User= does)."""
    if not user:
        return command
    entry = pwd.getpwnam(user)
    if command[0] == sys.executable:
        command = [unprivileged_python(user), *command[1:]]
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups",
            *command]


@functools.cache
def unprivileged_python(user: str) -> str:
    """An interpreter ``user`` can run, with folderseal and its packages importable.

    The venv's python may live where other users cannot look (pyenv under /root, mode
    0700), and so may the checkout (a temp folder of mode 0700): the daemon and its
    signing workers, started by path, would fail. Then a venv of the system's python of
    the same version stands in, in a world-readable temp folder, with (hard-linked)
    copies of this venv's packages and of the folderseal package.
    """
    probe = [sys.executable, "-c", "import folderseal, multiprocessing as m; "
             "p = m.get_context('spawn').Process(target=print); p.start(); p.join(); "
             "raise SystemExit(p.exitcode)"]
    if subprocess.run(_as_user_raw(user, probe), capture_output=True, cwd="/").returncode == 0:
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if os.access(candidate, os.X_OK):
            break
    else:
        raise AssertionError(f"no {version} that {user} may run; install one system-wide")
    venv = Path(tempfile.mkdtemp(prefix=f"folderseal-{user}-python-"))
    atexit.register(shutil.rmtree, venv, True)
    venv.chmod(0o755)
    subprocess.run([candidate, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = [Path(p) for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    skip = shutil.ignore_patterns("__editable__*", "__pycache__", "folderseal*")
    for source in ours:
        for entry in source.iterdir():
            if skip(str(source), [entry.name]) or (site / entry.name).exists():
                continue
            if entry.is_dir():
                shutil.copytree(entry, site / entry.name, copy_function=_link_or_copy)
            else:
                _link_or_copy(entry, site / entry.name)
    repo = Path(__file__).resolve().parent.parent
    shutil.copytree(repo / "folderseal", site / "folderseal",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return str(venv / "bin" / "python")


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _as_user_raw(user: str, command: list[str]) -> list[str]:
    entry = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
            *command]


def folderseal(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
               user: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess."""
    command = _as_user(user, [sys.executable, "-m", "folderseal", *args])
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd="/" if user else None)


class Daemon:
    """``folderseal run`` in a subprocess, its JSON log in a file."""

    running: list[Daemon] = []  # killed after each test by conftest, pass or fail

    def __init__(self, layout: Layout, env: dict[str, str] | None = None,
                 user: str | None = None, umask: int | None = None,
                 wrapper: tuple[str, ...] = (), new_session: bool = False) -> None:
        self.layout = layout
        self.log_path = layout.root / f"daemon-{time.time_ns()}.log"
        command = [*wrapper, *_as_user(user, [sys.executable, "-m", "folderseal", "run", "-c",
                                              str(layout.config)])]
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})},
                                        cwd="/" if user else None,  # the checkout may be 0700
                                        start_new_session=new_session,
                                        preexec_fn=None if umask is None
                                        else functools.partial(os.umask, umask))
        Daemon.running.append(self)

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def wait_for_event(self, name: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == name:
                    return event
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {name} event; log:\n{self.log_path.read_text()[-4000:]}")

    def started(self) -> Daemon:
        self.wait_for_event("daemon.started", timeout=60)
        return self

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self._log.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


def emulators(start: Callable[..., E], folder: Path, **defaults: Any) -> Iterator[Callable[..., E]]:
    """For a fixture (``yield from``): a factory of in-process emulators, each with its own
    data folder in ``folder`` and ``defaults`` unless told otherwise; all stopped after."""
    handles: list[E] = []

    def _start(**kwargs: Any) -> E:
        handle = start(data_dir=folder / f"data{len(handles)}", **{**defaults, **kwargs})
        handles.append(handle)
        return handle

    yield _start
    for handle in handles:
        handle.stop()


def emulator_listening(process: subprocess.Popen[str]) -> dict[str, Any]:
    """The ``emulator.listening`` line that ``folderseal emulate …`` prints first."""
    assert process.stdout is not None
    line: dict[str, Any] = json.loads(process.stdout.readline())
    assert line["event"] == "emulator.listening"
    return line


def proc_memory(pid: int, name: str) -> int:
    """A /proc/PID/status memory figure (VmRSS, VmHWM…), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{name} not in /proc/{pid}/status")


def log_events(stream: io.StringIO, name: str) -> list[dict[str, Any]]:
    """The events called ``name`` in a JSON log written to ``stream``."""
    found = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [e for e in found if e.get("event") == name]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecars(outbox: Path) -> list[Path]:
    return sorted(p for p in outbox.rglob("*.json") if not p.name.startswith("."))


def error_records(errors: Path) -> list[Path]:
    return sorted(errors.rglob("*.error.json"))

def outcomes(layout: Layout) -> tuple[dict[str, list[dict[str, Any]]],
                                      dict[str, list[dict[str, Any]]]]:
    """Sidecars and error records by source: what became of each dropped file."""
    delivered: dict[str, list[dict[str, Any]]] = {}
    for path in sidecars(layout.outbox):
        data = json.loads(path.read_text())
        delivered.setdefault(data["source"], []).append(data)
    failed: dict[str, list[dict[str, Any]]] = {}
    for path in error_records(layout.errors):
        data = json.loads(path.read_text())
        failed.setdefault(data["source"], []).append(data)
    return delivered, failed


def settled(layout: Layout, expected: dict[str, str]) -> bool:
    """Every expected source has an outcome (a sidecar or an error record)."""
    delivered, failed = outcomes(layout)
    return set(delivered) | set(failed) >= set(expected)


def check_pdf(path: Path) -> None:
    """pdfsig (poppler) must call the signature valid and covering the whole file."""
    out = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True)
    assert "Signature is Valid" in out.stdout, out.stdout + out.stderr
    assert "Total document signed" in out.stdout, out.stdout


def check_detached(content: Path, signature: Path) -> None:
    """openssl must verify the DER CMS signature and show the CAdES attribute."""
    verify = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                             "-noverify", "-in", str(signature), "-content", str(content),
                             "-out", "/dev/null"], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    dump = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in",
                           str(signature)], capture_output=True, text=True)
    assert "signingCertificateV2" in dump.stdout


def check_sidecar(sidecar: Path, layout: Layout) -> dict[str, Any]:
    """Every output the sidecar lists exists with its hash and a valid signature."""
    data = json.loads(sidecar.read_text())
    assert data["schema"] == "folderseal.sidecar/1" and data["status"] == "signed"
    roles = {}
    for output in data["outputs"]:
        path = sidecar.with_name(Path(output["path"]).name)
        assert path.exists(), f"{path} listed in {sidecar} is missing"
        assert sha256(path) == output["sha256"], f"{path} does not match its sidecar"
        assert path.stat().st_size == output["bytes"]
        roles[output["role"]] = path
    if "signed" in roles:
        check_pdf(roles["signed"])
    else:
        assert data["input"]["sha256"] == sha256(roles["original"])
        check_detached(roles["original"], roles["signature"])
    return data


def drop_at_once(layout: Layout, files: dict[str, bytes]) -> float:
    """Write ``files`` beside the inbox, then rename them all in (each appears whole);
    the time of the drop."""
    staging = layout.root / "staging"
    staging.mkdir(exist_ok=True)
    for name, data in files.items():
        (staging / name).write_bytes(data)
    dropped = time.time()
    for name in files:
        os.rename(staging / name, layout.inbox / name)
    return dropped


def last_sidecar(layout: Layout, count: int, timeout: float) -> float:
    """Wait for ``count`` sidecars in the outbox; the mtime of the newest."""
    wait_until(lambda: len(sidecars(layout.outbox)) >= count, timeout=timeout,
               what=f"{count} sidecars")
    return max(p.stat().st_mtime for p in sidecars(layout.outbox))
