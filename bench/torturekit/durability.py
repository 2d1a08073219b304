"""Scenario 7, durability: what a power cut could undo, read from the daemon's own calls.

``kill -9`` ends the process but keeps the kernel's page cache, so a crash test passes
even when an fsync is missing. No power-loss filesystem (LazyFS) can be installed here,
so this scenario checks the order that power-loss safety rests on instead: the daemon
and its signing workers run under ``strace -f``, every open, rename, link, unlink and
fsync is recorded, and two rules are checked on the record:

1. *Data before name*: a file gets its name in the outbox (link or rename of a temp or
   staged file) only after that file was fsynced, by the daemon or by the worker that
   made it (a file linked through ``/proc/self/fd/N`` is known by the path its thread
   opened as ``N``). Otherwise a power cut could leave a published name over missing
   bytes.
2. *Names before removal*: an original leaves the work folder only when every name
   published in the outbox for it (its outputs and sidecar, named after it) is durable
   (its folder fsynced after the publish). Otherwise a power cut could undo the output
   and keep the removal: a file lost. Another batch's names, published meanwhile by
   another batch thread, are that batch's to make durable before its own removals.

A file counts as synced from an fsync of it to its next open for writing (or a rename
over its name). What it cannot see: a write through a descriptor opened before that
fsync (none is kept open so), a descriptor reused after ``dup`` or ``close`` between its
open and a link through ``/proc/self/fd``, the disk's own write cache (fsync is trusted
to flush it), and SQLite's internal ordering (trusted: WAL with ``synchronous = FULL``,
but for the one commit that counts attempts, which may be lost by design).
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

from bench.torturekit.checks import check
from bench.torturekit.scenarios import Row, settled, tail
from bench.torturekit.world import World

CALLS = "openat,fsync,fdatasync,rename,renameat,renameat2,link,linkat,unlink,unlinkat"
_LINE = re.compile(r"^(\d+) +(?:<\.\.\. (\w+) resumed>(.*)|(\w+)\((.*?))(?: <unfinished \.\.\.>)?$")
_RESULT = re.compile(r"\) += (-?\d+)(?:<([^>]*)>)?")
_FD = re.compile(r"(?:AT_FDCWD|\d+)<([^>]*)>")
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _calls(trace: Path) -> list[tuple[str, str, list[str], list[str], str, str]]:
    """(thread, call, fd paths, string arguments, result, the arguments as strace shows
    them) of each call that succeeded, in the order the calls finished (strace splits a
    call that another thread interrupted); the result of an open is ``N<path>``."""
    pending: dict[str, tuple[str, str]] = {}
    done = []
    for line in trace.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        pid = m.group(1)
        if m.group(2):                               # "<... call resumed>rest"
            name, started = pending.pop(pid, (m.group(2), ""))
            text = started + m.group(3)
        else:
            name, text = m.group(4), m.group(5)
            if line.endswith("<unfinished ...>"):
                pending[pid] = (name, text)
                continue
        result = _RESULT.search(text)
        if result is None or int(result.group(1)) < 0:
            continue
        args = text[:result.start()]
        returned = f"{result.group(1)}<{result.group(2)}>" if result.group(2) else ""
        done.append((pid, name, _FD.findall(args), [_unescape(s) for s in _STR.findall(args)],
                     returned, args))
    return done


def _unescape(text: str) -> str:
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


def _targets(name: str, fds: list[str], strings: list[str]) -> tuple[str, str]:
    """(source, destination) of a rename or link, as absolute paths."""
    if name in ("rename", "link"):
        return strings[0], strings[1]
    old_dir, new_dir = (fds + ["", ""])[:2]
    return (os.path.join(old_dir, strings[0]), os.path.join(new_dir, strings[1]))


def _named_after(published: str, original: str) -> bool:
    """Whether an outbox name is one of an original's outputs: the work folder names an
    original ``NNNN_<name>``, and its outputs are ``<name>`` and ``<name>.<suffix>``."""
    name = os.path.basename(original).partition("_")[2]
    base = os.path.basename(published)
    return base == name or base.startswith(name + ".")


def audit(trace: Path, outbox: Path, batches: Path) -> tuple[Counter[str], list[str]]:
    """Check the two rules on a trace; (counts, violations)."""
    seen: Counter[str] = Counter()
    broken: list[str] = []
    synced: set[str] = set()            # files fsynced (by the path their fd had)
    undurable: dict[str, str] = {}      # outbox name → folder still to be fsynced
    opened: dict[str, str] = {}         # "thread/fd" → the path that thread opened it at
    out, work = str(outbox) + "/", str(batches) + "/"
    for thread, name, fds, strings, returned, args in _calls(trace):
        if name == "openat":
            number, _, path = returned.partition("<")
            opened[f"{thread}/{number}"] = path[:-1]
            flags = args.rpartition('", ')[2]  # after the path: "O_RDONLY|…, mode"
            if "O_WRONLY" in flags or "O_RDWR" in flags:
                synced.discard(path[:-1])  # written again: synced only by a later fsync
            continue
        if name in ("fsync", "fdatasync"):
            if fds:
                synced.add(fds[0])
                for published, folder in list(undurable.items()):
                    if folder == fds[0]:
                        del undurable[published]
            continue
        if name in ("unlink", "unlinkat"):
            path = strings[0] if name == "unlink" or strings[0].startswith("/") else \
                os.path.join(fds[0] if fds else "", strings[0])
            removed = [path]
        else:
            source, dest = _targets(name, fds, strings)
            removed = [source] if name.startswith("rename") else []
            if name.startswith("rename"):  # the name now holds what the source held
                (synced.add if source in synced else synced.discard)(dest)
            if source.startswith("/proc/self/fd/"):
                source = opened.get(f"{thread}/{source.rpartition('/')[2]}", source)
            if dest.startswith(out) and not os.path.basename(dest).startswith("."):
                seen["outputs published"] += 1
                if source.startswith("/proc/self/fd/"):
                    broken.append(f"data before name: {dest} linked from {source}, an fd "
                                  "the trace does not show opened")
                elif source not in synced:
                    broken.append(f"data before name: {dest} named before {source} was "
                                  "fsynced")
                undurable[dest] = os.path.dirname(dest)
        for path in removed:
            if path.startswith(work) and not os.path.basename(path).startswith("."):
                seen["originals removed"] += 1
                own = sorted(n for n in undurable if _named_after(n, path))
                if own:
                    broken.append(f"names before removal: {path} removed while "
                                  f"{own[:2]} were not durable yet")
    return seen, broken


def durability(root: Path, cycles: int, rng: random.Random) -> Row:
    """``cycles`` rounds of files sealed by the local signer under strace, then the two
    rules checked on every call of the daemon and its workers."""
    started = time.monotonic()
    world = World.make(root, provider="local", seed=rng.randrange(1 << 30))
    row = Row("durability (strace)", cycles)
    trace = root / "logs" / "strace.txt"
    trace.parent.mkdir(exist_ok=True)
    try:
        life = world.start(wrap=["strace", "-f", "-qq", "-y", "-I4", "-e", "signal=none", "-e",
                                 f"trace={CALLS}", "-o", str(trace)])
        if not life.started(timeout=120):
            row.problems.append(f"the daemon did not start under strace: {tail(life)}")
            return row
        for _ in range(cycles):
            world.drop_some(rng)
            time.sleep(rng.uniform(0.1, 0.6))
        life.wait_for(lambda: settled(world), 120)
        # SIGTERM for the daemon itself: strace (-I4) ignores it and ends with its tracee.
        pid = next(e["pid"] for e in life.events() if e.get("event") == "daemon.started")
        os.kill(pid, signal.SIGTERM)
        code = life.stop()
        if code != 0:
            row.problems.append(f"the daemon exited with {code}: {tail(life)}")
        row.take(world, check(world, None))
        seen, broken = audit(trace, world.layout.outbox, world.layout.work / "batches")
        row.faults = seen
        row.problems += broken[:20]
        if not seen["outputs published"] or not seen["originals removed"]:
            row.problems.append(f"the trace shows no publish or removal: {dict(seen)}")
        return row
    finally:
        world.close()
        row.wall = time.monotonic() - started
