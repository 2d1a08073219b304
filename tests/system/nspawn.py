"""Prove the README's service install under a real systemd 252, in a booted Debian 12.

    make systemd-test                          # as root; installs debootstrap, systemd-container
    .venv/bin/python tests/system/nspawn.py    # the same, without the apt step
    .venv/bin/python tests/system/nspawn.py --keep      # leave the container running

Builds (once; cached in /var/cache/folderseal/nspawn) a Debian bookworm from Debian's
packages with debootstrap, boots a throw-away copy of it with systemd-nspawn, copies
this checkout in, and runs the README's service-install block line by line, as written,
with the checkout as working folder. Then it checks what the service promises
(checks.py). Every step prints ``PASS what`` or ``FAIL what: evidence``; the exit status
is 1 when anything failed, 2 when it could not run here at all (``NOT RUN: why``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.system.checks import TRIAL_WARNING, Report, run_checks  # noqa: E402
from tests.system.container import Container, sweep_abandoned  # noqa: E402
from tests.system.readme import install_block  # noqa: E402
from tests.system.rootfs import cached_rootfs  # noqa: E402
from tests.system.service import Service  # noqa: E402

CHECKOUT = Path(__file__).resolve().parents[2]
CACHE = Path("/var/cache/folderseal/nspawn")
INSIDE = "/root/folderseal"  # where the checkout sits in the container
TOOLS = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
         "nsenter": "util-linux"}
CAP_SYS_ADMIN = 21


def cannot_run() -> str | None:
    """Why systemd-nspawn cannot boot a container here at all; None when it can."""
    if os.geteuid() != 0:
        return "needs root: systemd-nspawn, overlay mounts and nsenter (CI runs as root)"
    status = Path("/proc/self/status").read_text()
    effective = int(re.search(r"^CapEff:\s*(\w+)", status, re.M).group(1), 16)  # type: ignore[union-attr]
    if not effective >> CAP_SYS_ADMIN & 1:
        return "no CAP_SYS_ADMIN: an unprivileged container cannot boot another one"
    return None


class Phases:
    """Wall-clock time of each phase, printed at the end."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - start

    def print(self) -> None:
        for name, seconds in self.seconds.items():
            print(f"TIME {name}: {seconds:.1f} s")
        print(f"TIME total: {sum(self.seconds.values()):.1f} s")


def copy_checkout(checkout: Path, dest: Path) -> None:
    """The checkout's files as git sees them (tracked and new, not ignored): no venv,
    no caches, uncommitted changes included."""
    listed = subprocess.run(["git", "-C", str(checkout), "ls-files", "-z", "--cached",
                             "--others", "--exclude-standard"],
                            check=True, capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = checkout / name
        if source.is_file() or source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name, follow_symlinks=False)


def run_install_block(c: Container, commands: list[str], report: Report) -> None:
    """Each command of the README's block, in the checkout, as written."""
    for number, command in enumerate(commands, 1):
        start = time.monotonic()
        done = c.sh(f"cd {INSIDE} && {command}", timeout=600)
        took = f"({time.monotonic() - start:.1f} s)"
        report.result(f"README step {number}: {command} {took}",
                      None if done.rc == 0 else f"exit {done.rc}\n{done.tail()}")
        if re.search(r"\bfolderseal check\b", command):
            warned = done.rc == 0 and TRIAL_WARNING in done.out
            report.result("check (as the service sees it) passes and warns of the trial seal",
                          None if warned else f"exit {done.rc}, output:\n{done.tail()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=CHECKOUT,
                        help="the folderseal checkout to install (default: this one)")
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help=f"where the rootfs is kept between runs (default {CACHE})")
    parser.add_argument("--rebuild", action="store_true", help="build the rootfs again")
    parser.add_argument("--keep", action="store_true",
                        help="leave the container running at the end, to look around")
    args = parser.parse_args(argv)
    why = cannot_run()
    if why:
        print(f"NOT RUN: {why}")
        return 2
    report, phase = Report(), Phases()
    missing = [f"{tool} ({package})" for tool, package in TOOLS.items()
               if shutil.which(tool) is None]
    if missing:
        report.result("the host has what the proof needs", f"missing: {', '.join(missing)}; "
                      "`make systemd-test` installs them")
        return 1
    try:
        commands = install_block(args.checkout / "README.md")
    except ValueError as exc:
        report.result("the README has a service-install block", str(exc))
        return 1
    for swept in sweep_abandoned():
        print(f"removed what a killed run left: {swept}")
    cache = ExitStack()
    try:
        with phase("rootfs"):
            lower, built = cache.enter_context(cached_rootfs(args.cache, args.rebuild))
    except RuntimeError as exc:
        report.result("debootstrap builds the rootfs", str(exc))
        return 1
    print(f"rootfs: {lower} ({'built now' if built else 'cached'})", flush=True)
    checks: dict[str, float] = {}
    with cache:  # holds the cache's shared lock until the container is gone
        c = Container(lower, "folderseal-nspawn")
        try:
            with phase("boot"):
                c.prepare()
                copy_checkout(args.checkout, c.path(INSIDE))
                c.start()
            with phase("README steps"):
                run_install_block(c, commands, report)
            with phase("service checks"):
                checks = run_checks(Service(c), report)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            report.result("the container boots", str(exc))
        finally:
            if args.keep and c.pid1:
                c.keep()
                print(f"left running: nsenter -t {c.pid1} -a bash; to remove it: "
                      f"kill {c.nspawn.pid if c.nspawn else '?'}; umount {c.root}; "
                      f"rm -r {c.run_dir}")
            else:
                with phase("shutdown"):
                    c.stop()
    phase.print()
    for name, seconds in checks.items():
        print(f"TIME   check {name}: {seconds:.1f} s")
    print(f"{len(report.passed)} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


def _terminated(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # unwinds through the finally blocks: the container goes


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    sys.exit(main())
