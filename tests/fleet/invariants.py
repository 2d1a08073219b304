"""The promises checked after a fleet run, on top of the torture campaign's own checks.

:func:`check_fleet` takes the torture invariants (:func:`bench.torturekit.checks.check`:
every dropped file in exactly one place — the outbox with one sidecar, errors with one
record, or waiting and counted by ``status`` —, nothing signed or accepted twice by the
emulator's journal, no partial output, nothing written outside, no secret shown) and adds
what a fleet must also keep:

- ``folderseal verify`` passes on the outbox (every output against its sidecar and its
  signature);
- the emulator's journal shows each delivered document signed in exactly one batch,
  and that batch accepted (the local signer keeps no journal: the one-sidecar check
  stands for it); with Clevver, stored in exactly one started batch; with Centrapay,
  loaded by exactly one batch, created once;
- per batch, the epoch of its events only grows (in the order they were written, and by
  their times on the database's clock: each was made while its lease was valid), and
  none is above the batch's epoch in the store;
- the work folders end empty (no claim, batch folder or temp file left; a FAILED
  batch's manifest and notes are its record), once the fleet has drained;
- no node exited non-zero in a way the test neither caused nor announced.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.torturekit.checks import Verdict, check, read_json
from folderseal.providers.centrapay.emulator import CentrapayEmulator
from folderseal.providers.clevver.emulator import ClevverEmulator
from folderseal.providers.seal.emulator import EmulatorHandle
from tests.fleet.nodes import Fleet
from tests.helpers import folderseal

# What the work folder keeps between runs: its store id and the per-node folders.
WORK_BOOKKEEPING = {"store-id"}


@dataclass
class FleetVerdict:
    base: Verdict
    verify: list[str] = field(default_factory=list)
    journal: list[str] = field(default_factory=list)
    epochs: list[str] = field(default_factory=list)
    work: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = self.base.problems()
        for name in ("verify", "journal", "epochs", "work", "exits"):
            items = getattr(self, name)
            if items:
                out.append(f"{name}: {len(items)}: {items[:5]}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()


def check_fleet(fleet: Fleet, status: dict[str, Any] | None, drained: bool = True
                ) -> FleetVerdict:
    """Every invariant; ``status`` is ``folderseal status --json`` taken at the end,
    ``drained`` when every file was meant to reach its end (then the work folder must
    be empty)."""
    verdict = FleetVerdict(check(fleet.world, status))
    verdict.verify += _verify(fleet)
    verdict.journal += _one_accepted_batch_each(fleet)
    verdict.epochs += _epochs_only_grow(fleet.store_url)
    if drained:
        verdict.work += work_left(fleet)
    verdict.exits += fleet.unexpected_exits()
    return verdict


def _verify(fleet: Fleet) -> list[str]:
    outbox = fleet.world.layout.outbox
    if not any(outbox.rglob("*.json")):
        return []
    done = folderseal("verify", str(outbox))  # reads no config
    if done.returncode != 0:
        return [f"folderseal verify exited {done.returncode}: {done.stdout[-2000:]}"
                f"{done.stderr[-1000:]}"]
    return []


def _delivered(fleet: Fleet) -> dict[str, str]:
    """The sha256 of each delivered document, and its sidecar's name."""
    found = {}
    for sidecar in fleet.world.layout.outbox.rglob("*.json"):
        data = read_json(sidecar)
        if data is not None and "input" in data:
            found[data["input"]["sha256"]] = sidecar.name
    return found


def _one_started_clevver_batch_each(fleet: Fleet, emulator: ClevverEmulator) -> list[str]:
    """Each delivered document among the assets of exactly one started Clevver batch."""
    started: dict[str, set[str]] = defaultdict(set)
    for entry in emulator.read_journal():
        if entry.get("event") == "start":
            for asset in entry.get("assets", []):
                started[asset["checksum"]].add(entry["batch"])
    return [f"{name}: stored in {len(started.get(digest, ()))} started batches "
            f"{sorted(started.get(digest, ()))}"
            for digest, name in _delivered(fleet).items() if len(started.get(digest, ())) != 1]


def _one_created_centrapay_batch_each(fleet: Fleet, emulator: CentrapayEmulator) -> list[str]:
    """Each delivered document loaded by exactly one Centrapay batch, created once."""
    journal = emulator.read_journal()
    creates = Counter(e["batch"] for e in journal if e.get("event") == "create")
    loaded: dict[str, set[str]] = defaultdict(set)
    for entry in journal:
        if entry.get("event") == "fetched":
            loaded[entry["sha256"]].add(entry["batch"])
    problems = []
    for digest, name in _delivered(fleet).items():
        found = loaded.get(digest, set())
        if len(found) != 1:
            problems.append(f"{name}: loaded by {len(found)} batches {sorted(found)}")
        elif any(creates[b] != 1 for b in found):
            problems.append(f"{name}: its batch {found} created {creates[next(iter(found))]} "
                            "times")
    return problems


def _one_accepted_batch_each(fleet: Fleet) -> list[str]:
    emulator = fleet.world.emulator
    if isinstance(emulator, ClevverEmulator):
        return _one_started_clevver_batch_each(fleet, emulator)
    if isinstance(emulator, CentrapayEmulator):
        return _one_created_centrapay_batch_each(fleet, emulator)
    if not isinstance(emulator, EmulatorHandle):
        return []
    batches: dict[str, set[int]] = defaultdict(set)
    for entry in emulator.read_journal():
        if entry.get("signed"):
            batches[entry["sha256"]].add(int(entry["batch"]))
    accepted = set(emulator.accept_calls())
    problems = []
    for sidecar in fleet.world.layout.outbox.rglob("*.json"):
        data = read_json(sidecar)
        if data is None or "input" not in data:
            continue
        digest = data["input"]["sha256"]
        found = batches.get(digest, set())
        if len(found) != 1:
            problems.append(f"{sidecar.name}: signed in {len(found)} batches {sorted(found)}")
        elif not found <= accepted:
            problems.append(f"{sidecar.name}: signed in batch {found}, never accepted")
    return problems


def _epochs_only_grow(store_url: str) -> list[str]:
    """Per batch, its events' epochs never go down, neither in the order they were
    written (their ids) nor in the order of their times on the database's clock, and
    never pass the batch's own epoch. By time, that is each event made while its
    lease was valid: every write of a batch's step locks the batch's row after checking
    the lease, so the next epoch is taken only after it commits, and every event of
    that epoch is stamped later."""
    with psycopg.connect(store_url, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT e.batch_id, e.id, e.at, e.epoch, e.node, e.kind, b.epoch FROM events e "
            "LEFT JOIN batches b ON b.id = e.batch_id "
            "WHERE e.batch_id IS NOT NULL AND e.epoch IS NOT NULL").fetchall()
    problems = []
    orders = (("written", lambda r: (r[0], r[1])), ("by time", lambda r: (r[0], r[2], r[1])))
    for order, key in orders:
        last: dict[str, tuple[int, str]] = {}
        for batch, event_id, _, epoch, node, kind, current in sorted(rows, key=key):
            before = last.get(batch)
            if before is not None and epoch < before[0]:
                problems.append(f"batch {batch}: event {event_id} ({kind}, node {node}) has "
                                f"epoch {epoch} after {before[0]} ({before[1]}) {order}")
            if current is not None and epoch > current and order == "written":
                problems.append(f"batch {batch}: event {event_id} ({kind}) has epoch {epoch}, "
                                f"the batch only {current}")
            last[batch] = (epoch, f"node {node}, {kind}")
    return problems


def files_in(folder: Path) -> list[Path]:
    """Every file under ``folder``, while live nodes remove folders in it (a folder gone
    mid-walk is skipped, where ``Path.rglob`` would raise)."""
    return sorted(Path(top) / name for top, _, names in os.walk(folder) for name in names)


def work_left(fleet: Fleet) -> list[str]:
    """What is left in the work folder but its bookkeeping: the store id, and the
    manifest and notes of a FAILED batch (kept for `folderseal retry`, which sends the
    batch's files back to that remote batch)."""
    work = fleet.world.layout.work
    failed = _failed_batches(fleet.store_url)
    left = []
    for path in files_in(work):
        if path.name in WORK_BOOKKEEPING:
            continue
        parts = path.relative_to(work).parts
        if len(parts) >= 3 and parts[0] == "batches" and parts[1] in failed \
                and parts[2].startswith("."):
            continue
        left.append(str(path.relative_to(work)))
    return left


def _failed_batches(store_url: str) -> set[str]:
    try:
        with psycopg.connect(store_url, connect_timeout=10) as conn:
            rows = conn.execute("SELECT id FROM batches WHERE state = 'FAILED'").fetchall()
    except psycopg.Error:  # no schema yet, or the database down: nothing is excused
        return set()
    return {row[0] for row in rows}


def status_of(fleet: Fleet, node: str | None = None) -> dict[str, Any]:
    """``folderseal status --json`` with ``node``'s config (the first node's if None)."""
    name = node or next(iter(fleet.nodes))
    return fleet.world.status(config=fleet.nodes[name].config)

