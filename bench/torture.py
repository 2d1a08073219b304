"""folderseal's reliability campaign: crashes, provider chaos, share outages, full disks,
hostile input and lost state, each checked against docs/design.md's promises; and a
fleet of three nodes on one PostgreSQL killed, paused and cut from a restarting database.

    .venv/bin/python bench/torture.py --cycles 200          # the full campaign
    .venv/bin/python bench/torture.py --cycles 3 --only crash-local,chaos
    .venv/bin/python bench/torture.py --cycles 20 --json    # one JSON row per scenario

Each scenario runs the real daemon (``folderseal run``) as a subprocess against real
folders (and, where remote, the SEAL emulator on loopback), then checks the invariants
of :mod:`torturekit.checks` and prints one row. ``--cycles`` is the number of crash
cycles; the slower scenarios (outage, full disk, hostile input) take a tenth of it (at
least 2). The share-outage and full-disk scenarios mount bindfs and tmpfs, so they
need root; without it they are reported as skipped, never as passed. Exit status 1
when any invariant broke, so the campaign can gate a release.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.torturekit.durability import durability  # noqa: E402
from bench.torturekit.fleet import fleet_scenario  # noqa: E402
from bench.torturekit.hostile import hostile  # noqa: E402
from bench.torturekit.scenarios import SCENARIOS, Row  # noqa: E402

ALL = {**SCENARIOS, "hostile": hostile, "durability": durability,
       "fleet-seal-postgres": lambda root, n, rng: fleet_scenario(root, n, rng, "seal")}
SLOW = {"outage", "full-disk", "hostile", "durability"}  # a tenth of the cycles
FLEET = {"fleet-seal-postgres"}  # a quarter: each cycle is a trouble of seconds
NEEDS_ROOT = {"outage", "full-disk"}            # mounts


def cycles_for(name: str, cycles: int) -> int:
    if name in FLEET:
        return max(2, cycles // 4)
    return max(2, cycles // 10) if name in SLOW else cycles


def run(name: str, cycles: int, seed: int, workdir: Path, keep: bool) -> Row:
    root = workdir / name
    if NEEDS_ROOT & {name} and os.geteuid() != 0:
        row = Row(name, 0)
        row.notes["skipped"] = "needs root for its mounts"
        return row
    try:
        return ALL[name](root, cycles_for(name, cycles), random.Random(seed))
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def table(rows: list[Row]) -> str:
    head = ["scenario", "cycles", "files", "kills", "faults injected", "lost", "twice",
            "partial", "waiting", "delivered", "in errors (by code)", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(r.faults.items())) or "–"
        if "skipped" in r.notes:
            faults = f"skipped: {r.notes['skipped']}"
        codes = ", ".join(f"{k} {v}" for k, v in sorted(r.notes.get("failures", {}).items()))
        cells = [r.scenario, r.cycles, r.files, r.kills, faults, r.lost, r.twice, r.partial,
                 r.waiting, r.delivered, f"{r.failed} ({codes})" if r.failed else 0,
                 f"{r.wall:.0f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--only", default="", help="comma-separated: " + ", ".join(ALL))
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--dir", type=Path, default=None, help="where the worlds are built")
    parser.add_argument("--keep", action="store_true", help="keep each world for a look")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(ALL)
    unknown = set(names) - set(ALL)
    if unknown:
        parser.error(f"unknown scenario {sorted(unknown)}; choose from {', '.join(ALL)}")
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="folderseal-torture-", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)  # the hostile scenario's daemon runs as nobody
    print(f"seed {args.seed}, worlds under {workdir}", file=sys.stderr)
    rows = []
    for i, name in enumerate(names):
        row = run(name, args.cycles, args.seed + i, workdir, args.keep)
        rows.append(row)
        if args.json:
            print(json.dumps({**row.__dict__, "faults": dict(row.faults)}, default=str),
                  flush=True)
        else:
            print(f"{row.scenario}: {row.delivered} delivered, {row.failed} failed, "
                  f"{row.waiting} waiting, {len(row.problems)} problems in {row.wall:.0f} s",
                  file=sys.stderr, flush=True)
        for problem in row.problems:
            print(f"  PROBLEM {row.scenario}: {problem}", file=sys.stderr, flush=True)
    if not args.json:
        print(table(rows))
    if not args.keep and args.dir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(r.problems or r.lost or r.twice or r.partial for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
