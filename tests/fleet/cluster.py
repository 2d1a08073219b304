"""A throwaway PostgreSQL cluster of one test's own: ``initdb`` and ``pg_ctl`` on a free port.

Tests that stop, restart or cut off the database must never do it to the shared server
on 127.0.0.1:5432 (another test process works there). Each makes a cluster of its own in
a temp folder, with trust auth on 127.0.0.1 only (no Unix socket), ``fsync`` off (the
host does not crash in a test; a killed server still recovers from its WAL):

    with own_cluster() as cluster:
        url = cluster.url()            # postgresql://postgres@127.0.0.1:<port>/postgres
        cluster.restart()              # a fast restart: sessions dropped, back at once
        cluster.outage(seconds=8)      # down longer than a lease, then up again
        cluster.stop(); cluster.start()

As root the server runs as the ``postgres`` user (PostgreSQL refuses root), through
``setpriv``; as anyone else it runs as that user. The binaries are Debian's newest in
/usr/lib/postgresql/<version>/bin (``FOLDERSEAL_PG_BIN`` names another folder).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg


class ClusterError(RuntimeError):
    """The cluster could not be made, started or stopped; the message says why."""


def pg_bin() -> Path:
    """The folder of initdb and pg_ctl: FOLDERSEAL_PG_BIN, else Debian's newest version."""
    named = os.environ.get("FOLDERSEAL_PG_BIN")
    if named:
        return Path(named)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    if not versions:
        raise ClusterError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: "
                           "install the Debian package postgresql (make system-deps does), "
                           "or set FOLDERSEAL_PG_BIN")
    return versions[-1].parent


def free_port() -> int:
    """A TCP port nobody listens on right now (another may take it before we do: start
    retries on a new port when it is taken)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One PostgreSQL cluster in ``root`` (data in ``root/data``, its log ``root/server.log``)."""

    def __init__(self, root: Path, port: int, run_as: str | None) -> None:
        self.root = root
        self.port = port
        self.run_as = run_as
        self.bin = pg_bin()

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    # -- making and removing --------------------------------------------------------

    @classmethod
    def create(cls, parent: Path | None = None) -> Cluster:
        """initdb a new cluster (not started) in a new temp folder under ``parent``."""
        run_as = "postgres" if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="folderseal-pg-", dir=parent or "/tmp"))
        if run_as:
            entry = pwd.getpwnam(run_as)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        cluster = cls(root, free_port(), run_as)
        cluster._run("initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres",
                     "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        return cluster

    def remove(self) -> None:
        """Stop the server (at once) if it runs, and delete the whole cluster."""
        if self.running():
            self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the server -----------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it accepts connections; a port taken since it
        was chosen is replaced by a free one (the URL changes then)."""
        for _ in range(3):
            options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                       "-c unix_socket_directories='' -c fsync=off -c max_connections=200")
            done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o",
                             options, "-w", "-t", "60", "start", check=False)
            if done.returncode == 0:
                return
            if "could not bind" not in self.log.read_text(errors="replace")[-2000:]:
                break
            self.port = free_port()
        raise ClusterError(f"the test cluster in {self.root} did not start: "
                           f"{done.stdout}{done.stderr}; its log: "
                           f"{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends sessions cleanly, ``immediate`` is a crash (the
        next start recovers from the WAL)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        """A fast restart: every session is dropped, the server is back at once."""
        self.stop()
        self.start()

    def outage(self, seconds: float, mode: str = "fast") -> None:
        """The database gone for ``seconds`` (say, longer than a lease), then back."""
        self.stop(mode)
        time.sleep(seconds)
        self.start()

    def running(self) -> bool:
        if not self.data.is_dir():
            return False
        done = self._run("pg_ctl", "-D", str(self.data), "status", check=False)
        return done.returncode == 0

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / tool), *args]
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            command = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                       "--init-groups", "--reset-env", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              cwd=self.root, check=False, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise ClusterError(f"{tool} {' '.join(args)} failed ({done.returncode}): "
                               f"{done.stdout}{done.stderr}")
        return done


@contextmanager
def own_cluster(parent: Path | None = None) -> Iterator[Cluster]:
    """A started cluster of the caller's own, removed (server and files) at the end."""
    cluster = Cluster.create(parent)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
