"""One process at a time per state folder: the daemon, `sign` and `recover` take this lock.

An exclusive ``flock`` on ``<state_dir>/folderseal.lock`` (holding the owner's pid).
The kernel drops it when the process dies, even by SIGKILL, so `status` asks the lock,
not a heartbeat, whether a daemon is running.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from folderseal.errors import ConfigError

LOCK_NAME = "folderseal.lock"


def acquire(state_dir: Path) -> int:
    """Take the lock (a file descriptor to keep open); ConfigError if someone holds it."""
    fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ConfigError(f"another folderseal process (pid {holder}) is using {state_dir}; "
                          "stop it first (one process per state_dir)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def holder(state_dir: Path) -> int | None:
    """The pid of the process holding the lock, or None if nobody does."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)
    return None
