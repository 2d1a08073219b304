"""Setup and handler functions that tests/unit/test_pool.py runs inside pool workers."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

_setups = 0


def setup_state(arg: object) -> dict[str, Any]:
    """Make per-worker state: a fresh token, and how often setup ran in this process."""
    global _setups
    _setups += 1
    return {"token": uuid.uuid4().hex, "setups": _setups, "arg": arg}


def setup_fails(arg: object) -> None:
    """Fail as a signer does when the key password is wrong."""
    raise ValueError("the private key could not be decrypted: wrong password")


def setup_fails_if_flag(arg: str) -> dict[str, Any]:
    """Fail only once the file named by ``arg`` exists (a key that went bad later)."""
    if Path(arg).exists():
        raise PermissionError("the key file became unreadable")
    return setup_state(arg)


def echo(state: dict[str, Any], task: object) -> tuple[object, int, str]:
    """Return the task with this worker's pid and setup token."""
    return task, os.getpid(), state["token"]


def identify(state: dict[str, Any], task: object) -> tuple[int, str, int]:
    """Return this worker's pid, its setup token and how often setup ran in this process."""
    time.sleep(0.005)  # long enough that every worker gets a share of a burst
    return os.getpid(), state["token"], state["setups"]


def nothing(state: object, task: object) -> object:
    """Return the task unchanged (for overhead measurements)."""
    return task


def sleep(state: object, seconds: float) -> tuple[float, int]:
    """Sleep, then return the seconds and this worker's pid."""
    time.sleep(seconds)
    return seconds, os.getpid()


def exit_with(state: object, code: int) -> None:
    """Die at once with the given exit code, like a C library calling exit()."""
    os._exit(code)


def segfault(state: object, task: object) -> None:
    """Die from SIGSEGV, like a crash in a C extension."""
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(10)


def raise_value_error(state: object, message: str) -> None:
    """Raise a plain, picklable exception."""
    raise ValueError(message)


class NeedsTwoArgs(Exception):
    """Pickles, but cannot be unpickled: __init__ wants two arguments."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


class HoldsALock(Exception):
    """Cannot be pickled at all: it carries a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable(state: object, kind: str) -> None:
    """Raise an exception that cannot travel back to the parent as itself."""
    if kind == "two-args":
        raise NeedsTwoArgs(7, "broken ByteRange")
    raise HoldsALock("signature field is locked")


def unpicklable_result(state: object, task: object) -> threading.Lock:
    """Return something that cannot be pickled back to the parent."""
    return threading.Lock()


def loaded(state: object, names: list[str]) -> list[str]:
    """Return which of ``names`` this worker has imported."""
    return [name for name in names if name in sys.modules]


def exit_request(state: object, task: object) -> None:
    """Call sys.exit, which must not stop the parent."""
    sys.exit(5)


def call(state: dict[str, Any], task: tuple[str, object]) -> object:
    """The pool handler: run the function of this module named by ``task[0]`` on ``task[1]``."""
    name, arg = task
    return globals()[name](state, arg)
