"""A process whose wall clock is off, its monotonic and boot clocks untouched (libfaketime).

A node's clock may be wrong by minutes; folderseal must never compare it with a time
another node wrote (leases and waits are on the database's clock, local deadlines on
``CLOCK_BOOTTIME``). To run a node like that, start it with :func:`offset_env`:

    subprocess.Popen(command, env={**os.environ, **offset_env(+300)})

libfaketime is preloaded (its thread-safe build: the daemon has threads) with
``FAKETIME="+300s"`` and ``FAKETIME_DONT_FAKE_MONOTONIC=1``, which leaves
``CLOCK_MONOTONIC`` and ``CLOCK_BOOTTIME`` (and their raw and coarse kinds) alone while
``time.time()``, ``CLOCK_REALTIME`` and file times read by the process move. The offset
is inherited by the process's children (its signing workers). Debian's package is
``faketime`` (``make system-deps`` installs it).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path


class NoFaketime(RuntimeError):
    """libfaketime is not installed."""


def libfaketime() -> Path:
    """The thread-safe libfaketime (Debian: /usr/lib/<arch>/faketime/libfaketimeMT.so.1)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")) + \
        sorted(glob.glob("/usr/lib/faketime/libfaketimeMT.so.1"))
    if not found:
        raise NoFaketime("libfaketime is missing: install the Debian package faketime "
                         "(make system-deps does)")
    return Path(found[0])


def offset_env(seconds: float, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that puts a process's wall clock ``seconds`` off (+ ahead, -
    behind); ``base``'s LD_PRELOAD, if any, is kept after libfaketime."""
    preload = str(libfaketime())
    before = (base if base is not None else os.environ).get("LD_PRELOAD", "")
    return {"LD_PRELOAD": f"{preload} {before}".strip(),
            "FAKETIME": f"{seconds:+g}s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
