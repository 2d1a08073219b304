"""A throw-away Debian booted with systemd-nspawn, and commands run inside it.

The cached rootfs is the lower layer of an overlay whose upper layer lives in the run's
own folder, so the cache is never written and each run starts from a clean Debian. The
container shares the host's network (apt and pip need it) and gets what the host's pip
uses to get through this network: its CA certificates, its pip configuration files and
its ``PIP_*`` and proxy variables (in /etc/environment, which sudo's PAM session reads).

On a machine without systemd as PID 1 and without a host D-Bus, nspawn needs
``--register=no --keep-unit``; commands then enter with ``nsenter -t <pid 1> -a``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RUNS = Path("/var/tmp")
RUN_PREFIX = "folderseal-nspawn-"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_PIP_CONFIG = (Path("/etc/pip.conf"), Path("/etc/xdg/pip"))
PROXY_VARIABLES = {"http_proxy", "https_proxy", "no_proxy", "all_proxy"}
# A root login shell's environment; nothing of the harness's own leaks in.
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}


@dataclass(frozen=True, slots=True)
class Result:
    rc: int
    out: str  # stdout and stderr together, in order

    def tail(self, lines: int = 12) -> str:
        return "\n".join(self.out.rstrip().splitlines()[-lines:])


class Container:
    """One booted container: ``prepare()`` and ``start()``, then ``sh()`` and ``path()``,
    then ``stop()``. Its files live in a run folder under /var/tmp, named with RUN_PREFIX."""

    def __init__(self, lower: Path, name: str) -> None:
        self.lower, self.name = lower, name
        self.run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=RUNS))
        (self.run_dir / "owner").write_text(str(os.getpid()))
        self.root = self.run_dir / "merged"
        self.boot_log = self.run_dir / "boot.log"
        self.env = dict(BASE_ENV)
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    def path(self, inside: str) -> Path:
        """The host's path to a file inside the container."""
        return self.root / inside.lstrip("/")

    def prepare(self) -> None:
        """Mount the overlay and write what this run's container needs before boot."""
        for sub in ("upper", "work", "merged"):
            (self.run_dir / sub).mkdir(parents=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={self.lower},upperdir={self.run_dir / 'upper'},"
                        f"workdir={self.run_dir / 'work'}", str(self.root)], check=True)
        self.path("/etc/hostname").write_text(f"{self.name}\n")
        # As Debian's installer writes it (debootstrap writes none): sudo resolves its name.
        self.path("/etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.name}\n"
                                           "::1\tlocalhost ip6-localhost ip6-loopback\n")
        self.env.update(self._host_network_settings())

    def _host_network_settings(self) -> dict[str, str]:
        if HOST_CA_BUNDLE.exists():  # update-ca-certificates adds it after boot
            shutil.copy(HOST_CA_BUNDLE,
                        self.path("/usr/local/share/ca-certificates/host-ca-bundle.crt"))
        for config in HOST_PIP_CONFIG:
            if config.is_dir():
                shutil.copytree(config, self.path(str(config)), dirs_exist_ok=True)
            elif config.exists():
                shutil.copy(config, self.path(str(config)))
        env = {key: value for key, value in os.environ.items()
               if key.startswith("PIP_") or key.lower() in PROXY_VARIABLES}
        # A host folder the container does not have (a local wheel folder) stays behind.
        env = {key: value for key, value in env.items()
               if not value.startswith("/") or self.path(value).exists()}
        with self.path("/etc/environment").open("a") as environment:
            environment.writelines(f"{key}={value}\n" for key, value in sorted(env.items()))
        return env

    def start(self, timeout: float = 90.0) -> None:
        """Boot, find the container's PID 1, and wait until systemd says it is up."""
        with open(self.boot_log, "wb") as log:
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
                 f"--machine={self.name}", f"--directory={self.root}",
                 "--console=passive"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.pid1:
            self.pid1 = self._find_pid1()
            self._wait_step(deadline, "the container's PID 1")
        (self.run_dir / "pid1").write_text(f"{self.pid1} {_start_time(self.pid1)}")
        state = ""
        while state not in ("running", "degraded"):
            state = self.sh("systemctl is-system-running", timeout=10).out.strip()
            self._wait_step(deadline, f"systemd in the container (says {state!r})")
        update = self.sh("update-ca-certificates")
        if update.rc != 0:
            raise RuntimeError(f"update-ca-certificates failed:\n{update.tail()}")

    def _wait_step(self, deadline: float, what: str) -> None:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited ({self.nspawn.returncode}) before "
                               f"{what} was up; {self.boot_log}:\n{self._boot_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}; {self.boot_log}:\n"
                               f"{self._boot_tail()}")
        time.sleep(0.2)

    def _boot_tail(self) -> str:
        return "\n".join(self.boot_log.read_text(errors="replace").splitlines()[-15:])

    def _find_pid1(self) -> int:
        """The child of nspawn that is PID 1 in its own PID namespace."""
        assert self.nspawn is not None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = dict(line.split(":\t", 1)
                              for line in (entry / "status").read_text().splitlines()
                              if ":\t" in line)
            except OSError:
                continue
            if status.get("PPid") == str(self.nspawn.pid) and \
                    status.get("NSpid", "").split()[-1:] == ["1"]:
                return int(entry.name)
        return 0

    def sh(self, script: str, timeout: float = 120.0) -> Result:
        """Run ``sh -c script`` inside the container as root, in a login-like environment."""
        argv = ["nsenter", "-t", str(self.pid1), "-a", "env", "-i",
                *(f"{k}={v}" for k, v in self.env.items()), "sh", "-c", script]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            partial = (exc.stdout or b"").decode(errors="replace")
            return Result(124, f"{partial}\n(timed out after {timeout:.0f} s)")
        return Result(done.returncode, done.stdout.decode(errors="replace"))

    def keep(self) -> None:
        """Leave the container running: the next run's sweep will not remove it."""
        (self.run_dir / "owner").write_text("kept")

    def stop(self) -> None:
        """Power the container off (SIGTERM to nspawn), unmount and remove the run's files."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:  # killing PID 1 ends the whole container
                if self.pid1:
                    os.kill(self.pid1, signal.SIGKILL)
                self.nspawn.kill()
                self.nspawn.wait(timeout=30)
        _remove(self.run_dir)


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state first); [] when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _start_time(pid: int) -> str:
    """A PID with its start time names one process, even after the PID is reused."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its parent."""
    return _stat(pid)[:1] not in ([], ["Z"])


def _remove(run_dir: Path) -> None:
    merged = run_dir / "merged"
    if os.path.ismount(merged):
        subprocess.run(["umount", str(merged)], check=False)
    if not os.path.ismount(merged):
        shutil.rmtree(run_dir, ignore_errors=True)


def sweep_abandoned() -> list[Path]:
    """Remove what runs that were killed left behind: a container still up, its overlay
    and its files. A run whose owner still lives, or that was kept, stays."""
    swept = []
    for run_dir in RUNS.glob(f"{RUN_PREFIX}*"):
        try:
            owner = int((run_dir / "owner").read_text())
        except (OSError, ValueError):
            continue  # being set up right now, or kept on purpose
        if _alive(owner):
            continue
        try:
            pid1, started = (run_dir / "pid1").read_text().split()
        except (OSError, ValueError):
            pid1, started = "0", ""
        if pid1 != "0" and _start_time(int(pid1)) == started:
            os.kill(int(pid1), signal.SIGKILL)  # PID 1 of a PID namespace: all of it goes
            deadline = time.monotonic() + 10
            while _start_time(int(pid1)) == started and time.monotonic() < deadline:
                time.sleep(0.1)
        _remove(run_dir)
        swept.append(run_dir)
    return swept
