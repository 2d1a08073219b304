"""The container's root file system: Debian bookworm from Debian's own packages
(debootstrap), cached between runs outside the checkout.

A fresh machine builds it once (about a minute); later runs reuse it. Runs never write
to it: each mounts an overlay on top (see container.py), so every run boots a clean
Debian. A run holds a shared lock on the cache while it uses it; building or pruning
takes the exclusive lock, so a run never loses its lower layer to another one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# A small Debian 12 server (systemd as PID 1, D-Bus, sudo, procps, Python) plus the
# tools the checks read outputs with (pdfsig, openssl). python3-venv is left out on
# purpose: the README's service block installs it, so that step does real work here.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "procps", "python3", "sudo",
            "ca-certificates", "poppler-utils", "openssl")
LAYOUT = 1  # bump when the build changes in a way the package list does not show
# Older package lists may name versions the mirror has since dropped (point releases).
MAX_AGE_SECONDS = 7 * 86400


def cache_key() -> str:
    recipe = {"suite": SUITE, "mirror": MIRROR, "variant": "minbase",
              "packages": sorted(PACKAGES), "layout": LAYOUT}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


@contextmanager
def cached_rootfs(cache: Path, rebuild: bool = False) -> Iterator[tuple[Path, bool]]:
    """Yield (the rootfs, whether this run built it), holding a shared lock on the cache."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{SUITE}-{cache_key()}"
    built = False
    with open(cache / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        if rebuild or not _fresh(target):
            fcntl.flock(lock, fcntl.LOCK_EX)  # waits for the runs using the cache now
            if rebuild or not _fresh(target):
                _build(cache, target)
                built = True
            fcntl.flock(lock, fcntl.LOCK_SH)
        yield target, built


def _stamp(target: Path) -> Path:
    return target.with_name(target.name + ".built")


def _fresh(target: Path) -> bool:
    stamp = _stamp(target)
    return target.is_dir() and stamp.exists() and \
        time.time() - stamp.stat().st_mtime < MAX_AGE_SECONDS


def _build(cache: Path, target: Path) -> None:
    """debootstrap into a scratch folder, then rename it into place; older builds go."""
    for old in cache.glob(f"{SUITE}-*"):
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
    partial = cache / f"partial-{target.name}"
    shutil.rmtree(partial, ignore_errors=True)
    log = cache / "debootstrap.log"
    with open(log, "w") as out:
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             SUITE, str(partial), MIRROR],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"debootstrap failed (exit {done.returncode}; {log}):\n{tail}")
    partial.rename(target)
    _stamp(target).touch()
