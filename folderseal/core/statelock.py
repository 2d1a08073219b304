"""The state folder: usable or refused with the fix, and one process at a time in it.

The daemon, `sign` and `recover` take the lock: an exclusive ``flock`` on
``<state_dir>/folderseal.lock`` (holding the owner's pid). The kernel drops it when
the process dies, even by SIGKILL, so `status` asks the lock, not a heartbeat,
whether a daemon is running.

A state folder that cannot be used (not writable by this user, on a read-only
filesystem, a file in its place) is a configuration error, exit 78, naming the folder
and what to do: restarting cannot help, so systemd must not loop on it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shlex
import sys
import uuid
from pathlib import Path

from folderseal.core import files
from folderseal.core.errors import ConfigError, FolderSealError, StateUnavailable
from folderseal.core.keyfiles import user_name

LOCK_NAME = "folderseal.lock"
INSTANCE_NAME = "instance"  # this state folder's id (instance_id)
STORE_FILES = ("folderseal.sqlite", "folderseal.sqlite-wal", "folderseal.sqlite-shm")
_NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ELOOP)


def prepare(state_dir: Path) -> None:
    """Make the state folder if it is missing and check this process may write in it."""
    os.close(_open_lock(state_dir))


def acquire(state_dir: Path) -> int:
    """Take the lock (a file descriptor to keep open); ConfigError if someone holds it, or
    if the state folder cannot be used."""
    fd = _open_lock(state_dir)
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


def instance_id(state_dir: Path) -> str:
    """This state folder's random id, made on first use: the store records which
    instance owns a node name, and a daemon restarted from the same folder (the lock
    held, so the last one is gone) is the same instance and takes its name back at once."""
    path = state_dir / INSTANCE_NAME
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise unusable(state_dir, exc) from None
    try:
        with contextlib.suppress(FileExistsError):  # made meanwhile: that one is the id
            files.write_new(state_dir, INSTANCE_NAME, f"{uuid.uuid4().hex}\n".encode(), 0o644)
        return path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise unusable(state_dir, exc) from None


def check_readable(state_dir: Path) -> None:
    """For commands that only read the store (`status`): ConfigError if this process
    cannot read the state folder or the store. A folder not made yet is fine."""
    try:
        if not state_dir.exists():
            return
        os.listdir(state_dir)
        for name in STORE_FILES:
            if os.path.exists(state_dir / name) and not os.access(state_dir / name, os.R_OK):
                raise _denied(state_dir / name)
    except OSError as exc:
        raise unusable(state_dir, exc, reading=True) from None


def _open_lock(state_dir: Path) -> int:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise unusable(state_dir, exc) from None
    for name in STORE_FILES:  # left by a run as another user (root?)
        path = state_dir / name
        if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
            os.close(fd)
            raise unusable(state_dir, _denied(path))
    return fd


def _denied(path: Path) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


def unusable(state_dir: Path, exc: OSError, reading: bool = False) -> FolderSealError:
    """What is wrong with the state folder, and what to do: a ConfigError (exit 78) unless
    it may pass by itself (a full disk: exit 1, systemd tries again)."""
    where, user = f"state_dir {state_dir}", user_name(os.geteuid())
    if exc.errno in (errno.EACCES, errno.EPERM):
        what = exc.filename or state_dir
        try:
            owner: str | None = _owner(state_dir)
        except OSError:
            return ConfigError(f"{where}: user {user} may not reach it (a folder above it is "
                               f"closed to {user}): let {user} enter the folders above it, "
                               "or set state_dir to a folder it may write")
        if reading:
            return ConfigError(f"{where}: user {user} may not read {what}; "
                               f"{_as_owner(owner, user)}, or set state_dir")
        if owner is None:
            return ConfigError(f"{where} does not exist and user {user} may not create it: "
                               f"{_make_for_the_service(state_dir, user)}, or set state_dir "
                               "to a folder it may write")
        if owner not in (user, "root"):  # the service's store: never hand it to someone else
            return ConfigError(f"{where} belongs to user {owner}, and user {user} may not "
                               f"write {what}: {_as_owner(owner, user)}")
        instead = "" if owner == user else f", else {_as_owner(owner, user)}"
        return ConfigError(f"{where}: user {user} may not write {what}: sudo chown -R {user} "
                           f"{state_dir} if {user} runs the service{instead}; or set "
                           "state_dir to a folder it may write")
    if exc.errno == errno.EROFS:
        return ConfigError(f"{where} is on a read-only filesystem: set state_dir to a writable "
                           "local folder (under systemd /var/lib/folderseal, which the unit's "
                           "StateDirectory= makes writable, or a folder in ReadWritePaths=)")
    if exc.errno in _NOT_A_FOLDER:
        return ConfigError(f"{where} is not a folder (a file is in its place, or in the place "
                           "of a folder above it): move that away, or set state_dir to a folder")
    return StateUnavailable(f"{where} cannot be used: {exc.strerror} ({exc.filename}); fix the "
                            "disk or free space, then start folderseal again")


def _owner(state_dir: Path) -> str | None:
    """The state folder's owner; None if it is not there (OSError: it cannot be looked at)."""
    try:
        return user_name(state_dir.stat().st_uid)
    except FileNotFoundError:
        return None


def _make_for_the_service(state_dir: Path, user: str) -> str:
    """How to make a missing state folder: owned by the service's user, whoever runs this
    (under systemd it is ``user``); a store made for someone else locks the service out."""
    if os.environ.get("INVOCATION_ID"):  # set by systemd for a service's processes
        return f"sudo install -d -o {user} -m 0750 {state_dir} (or StateDirectory= in the unit)"
    return (f"make it for the account that runs the service, sudo install -d -o ACCOUNT -m "
            f"0750 {state_dir} (ACCOUNT: the unit's User=, folderseal after `folderseal init "
            f"--service`; {user} only if {user} runs the service)")


def _as_owner(owner: str | None, user: str) -> str:
    """Run this very command as the state folder's owner (the service's user) or root."""
    command = shlex.join(["folderseal", *sys.argv[1:]])
    if owner in (None, "root"):
        return f"run it as root (sudo {command})"
    return (f"run it as {owner}, the service's user (sudo -u {owner} {command}), or as root, "
            f"not as {user}")


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
