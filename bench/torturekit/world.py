"""One folderseal installation under torture: folders, config, emulator, daemon, feeder.

The daemon runs as ``folderseal run`` in its own process group, with its working
folder, ``HOME`` and ``TMPDIR`` pointing into an empty ``elsewhere/`` folder: anything
it writes outside its configured folders lands there (or elsewhere under the root),
where :mod:`checks` finds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from folderseal.providers.centrapay.emulator import start_centrapay
from folderseal.providers.clevver.emulator import start_clevver
from folderseal.providers.emulation.runner import RunningEmulator
from folderseal.providers.seal.emulator import start_seal
from folderseal.providers.seal.emulator.state import log_to
from tests import centrapay_world
from tests.helpers import Layout, toml_value, unprivileged_python
from tests.pdfs import make_pdf
from tests.postgres import own_schema, server

API_KEY = "torture-key-5b1e0c7d9a3f"
FAST = {"settle_seconds": 0.2, "batch_max_wait_seconds": 0.3, "batch_max_files": 8,
        "poll_interval_seconds": 0.3, "rescan_seconds": 1.0, "min_free_bytes": 0,
        "stuck_after_seconds": 6.0}
SEAL = {"poll_interval_seconds": 0.1, "timeout_seconds": 3.0, "status_grace_seconds": 1.0,
        "retry_max_seconds": 1.0, "max_wait_seconds": 20.0}
# The emulator's late starts take effect after LATE seconds: the grace a lost start's
# answer is given before the status decides must be longer (as with a real Clevver).
LATE = 1.0
CLEVVER = {"poll_interval_seconds": 0.1, "timeout_seconds": 3.0, "status_grace_seconds": 2.5,
           "retry_max_seconds": 1.0, "max_wait_seconds": 20.0, "batch_max_files": 8}
# Centrapay: one file per batch, each a create and a few polls through one limiter per
# provider. Under load the polls of many batches queue at the limiter, so a batch waits
# longer than its own steps take: max_wait_seconds is a realistic minute, not 20 s (a
# poll starved past it would end as never_closed, which the campaign did not cause).
# The emulator allows a little more than the client asks (its window counts whole calls).
CENTRAPAY = {"poll_interval_seconds": 0.3, "timeout_seconds": 3.0,
             "status_grace_seconds": 2.5, "retry_max_seconds": 1.0, "max_wait_seconds": 60.0,
             "max_requests_per_minute": 3000}
CENTRAPAY_EMULATOR_RATE = 3300


@dataclass
class Dropped:
    """A file the campaign dropped: where, and the sha256 of what it last wrote."""

    source: str
    sha256: str
    size: int


@dataclass
class World:
    root: Path
    layout: Layout
    emulator: RunningEmulator | None
    user: str | None = None
    dropped: dict[str, Dropped] = field(default_factory=dict)   # by sha256
    kills: int = 0
    lives: int = 0
    counter: int = 0
    life: Life | None = None        # the daemon's latest run
    public: Path | None = None      # Centrapay's publish_dir (served on loopback)
    publish_wait: float = 0.0       # how long a copy in doubt may stay published
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    # -- set-up --------------------------------------------------------------------

    @classmethod
    def make(cls, root: Path, provider: str = "seal", faults: str = "", seed: int = 0,
             folder: dict[str, Any] | None = None, seal: dict[str, Any] | None = None,
             user: str | None = None, lag: float = 0.0, store: str = "sqlite",
             store_url: str | None = None, store_keys: dict[str, Any] | None = None,
             latency: float = 0.0) -> World:
        """A world with its emulator started. ``store="postgres"`` puts the store in a
        schema of its own on ``store_url``'s server (the test server when None), dropped
        at close; ``store_keys`` are more ``[store]`` keys (``lease_seconds``, say);
        ``latency`` the seconds each call to the SEAL emulator waits (a distant server)."""
        root.mkdir(parents=True, exist_ok=True)
        (root / "elsewhere").mkdir()
        emulator = None
        provider_cfg: dict[str, Any] = {"workers": 2}
        if provider == "seal":
            (root / "logs").mkdir()
            log_to((root / "logs" / "emulator.log").open("a"))
            emulator = start_seal(api_key=API_KEY, data_dir=root / "emulator", seed=seed,
                                  faults=faults, step_delay=0.02, slow_seconds=0.5, lag=lag,
                                  latency=latency)
            (root / "signius.key").write_text(API_KEY + "\n")
            provider_cfg = {"kind": "seal", "base_url": emulator.url,
                            "api_key_file": "signius.key", **SEAL, **(seal or {})}
        elif provider == "clevver":
            (root / "logs").mkdir()
            log_to((root / "logs" / "emulator.log").open("a"))
            emulator = start_clevver(api_key=API_KEY, data_dir=root / "emulator", seed=seed,
                                     faults=faults, polls=2, late_seconds=LATE,
                                     slow_seconds=0.5)
            (root / "clevver.token").write_text(API_KEY + "\n")
            provider_cfg = {"kind": "clevver", "base_url": emulator.url,
                            "api_token_file": "clevver.token", **CLEVVER, **(seal or {})}
        closing = contextlib.ExitStack()
        public = None
        if provider == "centrapay":
            (root / "logs").mkdir()
            log_to((root / "logs" / "emulator.log").open("a"))
            emulator = start_centrapay(api_key=API_KEY, data_dir=root / "emulator", seed=seed,
                                       faults=faults, step_seconds=0.05, late_seconds=LATE,
                                       slow_seconds=0.5, rate_limit=CENTRAPAY_EMULATOR_RATE)
            (root / "centrapay.key").write_text(API_KEY + "\n")
            public = root / "public"
            public.mkdir(mode=0o711)
            url = closing.enter_context(centrapay_world.served(public))
            provider_cfg = {**centrapay_world.provider_keys(emulator.url, "centrapay.key"),
                            **centrapay_world.folder_keys(public, url), **CENTRAPAY,
                            **(seal or {})}
        layout = Layout(root, folder={**FAST, **(folder or {})}, provider=provider_cfg)
        if store == "postgres":  # a schema of its own on the server, dropped at close
            url = closing.enter_context(own_schema(store_url or server()))
            keys = {"url": url, "auto_migrate": True, **(store_keys or {})}
            layout.extra = "\n[store]\n" + "".join(f"{k} = {toml_value(v)}\n"
                                                   for k, v in keys.items())
        layout.write()
        world = cls(root, layout, emulator, user, public=public,
                    publish_wait=float(provider_cfg.get("max_wait_seconds", 0)) + 15,
                    _closing=closing)
        if user:
            world.hand_over(user)
        return world

    def hand_over(self, user: str) -> None:
        """Let ``user`` run the daemon: it owns the folders and may read the config."""
        import pwd
        entry = pwd.getpwnam(user)
        for path in [self.root, *self.root.rglob("*")]:
            if "emulator" in path.parts:
                continue
            os.lchown(path, entry.pw_uid, entry.pw_gid)

    @property
    def secrets(self) -> list[str]:
        """Strings that must appear in no log, sidecar, record or status output."""
        found = [API_KEY]
        password = self.root / "seal" / "seal.pass"
        if password.exists():
            found.append(password.read_text().strip())
        return [s for s in found if s]

    def close(self) -> None:
        """End the daemon if it still runs (a scenario that broke off), then the emulator."""
        if self.life is not None and self.life.process.poll() is None:
            self.life.kill()
        if self.emulator is not None:
            self.emulator.stop()
            log_to(None)
        self._closing.close()

    def published(self) -> list[Path]:
        """What is published in Centrapay's publish_dir (nothing when not Centrapay)."""
        if self.public is None:
            return []
        return sorted(p for p in self.public.iterdir() if not p.name.startswith("."))

    # -- the daemon ----------------------------------------------------------------

    def command(self, *args: str, wrap: list[str] | None = None,
                config: Path | None = None) -> list[str]:
        python = sys.executable
        prefix: list[str] = []
        if self.user:
            import pwd
            entry = pwd.getpwnam(self.user)
            python = unprivileged_python(self.user)
            prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                      "--clear-groups"]
        return [*prefix, *(wrap or []), python, "-m", "folderseal", *args, "-c",
                str(config or self.layout.config)]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        elsewhere = str(self.root / "elsewhere")
        return {**os.environ, "HOME": elsewhere, "TMPDIR": elsewhere, **(extra or {})}

    def start(self, env: dict[str, str] | None = None, wrap: list[str] | None = None,
              config: Path | None = None, name: str = "daemon") -> Life:
        """Start ``folderseal run`` (under ``wrap``, e.g. strace, if given; with another
        node's ``config`` and its log named after it, in a fleet)."""
        self.lives += 1
        log = self.root / "logs" / f"{name}-{self.lives:04d}.log"
        log.parent.mkdir(exist_ok=True)
        handle = log.open("w")
        process = subprocess.Popen(self.command("run", wrap=wrap, config=config), stdout=handle,
                                   stderr=subprocess.STDOUT, env=self.env(env),
                                   cwd=self.root / "elsewhere", start_new_session=True)
        self.life = Life(self, process, log, handle)
        return self.life

    def run(self, *args: str, timeout: float = 120,
            config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run a folderseal command (status, recover…) the way the daemon runs."""
        out = subprocess.run(self.command(*args, config=config), capture_output=True, text=True,
                             timeout=timeout, env=self.env(), cwd=self.root / "elsewhere")
        (self.root / "logs").mkdir(exist_ok=True)
        with (self.root / "logs" / "commands.log").open("a") as log:
            log.write(f"$ folderseal {' '.join(args)} → {out.returncode}\n{out.stdout}"
                      f"{out.stderr}\n")
        return out

    def status(self, config: Path | None = None) -> dict[str, Any]:
        out = self.run("status", "--json", config=config)
        # 1 is "something needs a person" (the daemon down, say): the report is there.
        return json.loads(out.stdout) if out.returncode in (0, 1) else {}

    # -- files ---------------------------------------------------------------------

    def next_file(self, rng: random.Random) -> tuple[str, bytes]:
        """A new uniquely numbered file: a one-page PDF, or a text file in a subfolder
        (for Centrapay a JSON Lines batch file, now and then with records it refuses)."""
        with self._lock:
            self.counter += 1
            n = self.counter
        if self.public is not None:
            bad = (0,) if rng.random() < 0.2 else ()
            return (f"loads/l-{n:05d}.jsonl",
                    centrapay_world.jsonl(f"t{n}", rng.randint(1, 60), missing_id=bad))
        if rng.random() < 0.4:
            return f"scan-{n:05d}.pdf", make_pdf(None, text=f"torture {n}")
        return f"notes/n-{n:05d}.txt", f"note {n} ".encode() * rng.randint(1, 400)

    def drop(self, source: str, data: bytes, into: Path | None = None) -> None:
        """Write a file the way a scanner should: a hidden temp name, then a rename."""
        path = (into or self.layout.inbox) / source
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        tmp.write_bytes(data)
        if self.user:
            shutil.chown(tmp, self.user)
            if path.parent != (into or self.layout.inbox):
                shutil.chown(path.parent, self.user)
        tmp.rename(path)
        self.record(source, data)

    def drop_some(self, rng: random.Random, most: int = 6) -> None:
        """Drop one to ``most`` new files at once."""
        for _ in range(rng.randint(1, most)):
            self.drop(*self.next_file(rng))

    def record(self, source: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            self.dropped[digest] = Dropped(source, digest, len(data))


@dataclass
class Life:
    """One run of the daemon, from start to its exit or kill."""

    world: World
    process: subprocess.Popen[bytes]
    log: Path
    _handle: Any

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def saw(self, name: str) -> bool:
        return any(e.get("event") == name for e in self.events())

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.process.poll() is not None:
                return predicate()
            time.sleep(0.05)
        return False

    def started(self, timeout: float = 60) -> bool:
        return self.wait_for(lambda: self.saw("daemon.started"), timeout)

    def exited(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the daemon and its signing workers (what systemd does to the cgroup)."""
        if self.process.poll() is None:
            self.world.kills += 1
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._handle.close()

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9
        finally:
            self._handle.close()
        return code


class Feeder:
    """Drops new files at random intervals until stopped: files flow the whole time."""

    def __init__(self, world: World, rng: random.Random, mean_gap: float = 0.15,
                 into: Path | None = None) -> None:
        self.world = world
        self.rng = random.Random(rng.random())
        self.mean_gap = mean_gap
        self.into = into
        self.stopped = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(30)

    def _run(self) -> None:
        while not self.stopped.wait(self.rng.expovariate(1 / self.mean_gap)):
            source, data = self.world.next_file(self.rng)
            try:
                self.world.drop(source, data, self.into)
            except OSError as exc:  # the share is away: another host would retry later
                self.errors.append(f"{source}: {exc}")
