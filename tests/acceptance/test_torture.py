"""The reliability campaign (``bench/torture.py``) in its short version: every scenario
with a few cycles, each ending with the campaign's invariants.

The full campaign (200 crash cycles and more) is ``bench/torture.py --cycles 200``;
its table is in docs/reliability.md. The share-outage and full-disk scenarios mount
bindfs and tmpfs and so need root (CI runs as root); elsewhere they skip and say why.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.torturekit.durability import durability
from bench.torturekit.fleet import fleet_scenario
from bench.torturekit.hostile import hostile
from bench.torturekit.scenarios import SCENARIOS, Row, chaos, crash

pytestmark = pytest.mark.slow


@pytest.fixture
def root() -> Iterator[Path]:
    """A world root other users may enter (the hostile scenario's daemon runs as nobody)."""
    path = Path(tempfile.mkdtemp(prefix="folderseal-torture-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path / "world"
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _clean(row: Row) -> None:
    assert row.problems == [], "\n".join(row.problems)
    assert (row.lost, row.twice, row.partial) == (0, 0, 0)
    assert row.files > 0, "the scenario dropped no files"


def _needs_mounts() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounts bindfs/tmpfs: needs root (CI runs as root)")
    if shutil.which("bindfs") is None:
        pytest.fail("bindfs is missing: 'make test' installs it (Debian package bindfs)")


@pytest.mark.parametrize("provider", ["local", "seal", "clevver"])
def test_crash_points_and_random_kills_lose_nothing(root: Path, provider: str) -> None:
    """Killed at named crash points and at random moments while files flow, the daemon
    loses nothing and signs nothing twice once restarted."""
    row = SCENARIOS[f"crash-{provider}"](root, 8, random.Random(1))
    _clean(row)
    assert row.kills >= 6


@pytest.mark.parametrize("provider", ["seal", "local"])
def test_crash_points_on_a_postgresql_store_lose_nothing(root: Path, provider: str,
                                                         postgres_server: str) -> None:
    """The same campaign with the store in PostgreSQL: a node killed mid-transaction
    leaves the database as the last commit did, and its restart (the same instance, so
    its node name is its own at once) loses nothing and signs nothing twice."""
    row = SCENARIOS[f"crash-{provider}-postgres"](root, 8, random.Random(3))
    _clean(row)
    assert row.kills >= 6


@pytest.mark.fleet
def test_a_fleet_killed_paused_and_cut_from_its_database_loses_nothing(root: Path) -> None:
    """Three nodes on one PostgreSQL of the scenario's own, files flowing: at each
    cycle a node killed, a node paused (within or past its lease) or the database
    restarted; every fleet invariant holds once the backlog drained."""
    row = fleet_scenario(root, 6, random.Random(7))
    _clean(row)
    assert sum(row.faults.values()) >= 6, row.faults


@pytest.mark.parametrize("scenario", ["chaos", "chaos-clevver"])
def test_provider_chaos_loses_nothing(root: Path, scenario: str) -> None:
    """Every emulator fault kind at once: every file is delivered or in errors, none
    accepted (started) twice, nothing stored twice."""
    row = SCENARIOS[scenario](root, 6, random.Random(2))
    _clean(row)
    assert sum(row.faults.values()) > 0, "no fault was injected"


def test_centrapay_crash_points_and_random_kills_lose_nothing(root: Path) -> None:
    """Centrapay: killed at each of its crash points (publishing, published, creating,
    created) and at random moments while batch files flow, the daemon loses nothing,
    creates no file twice (by the emulator's journal), and leaves nothing published.
    max_wait_seconds is short here: a copy whose create is in doubt stays that long."""
    row = crash(root, 8, random.Random(1), "centrapay", max_wait=8.0)
    _clean(row)
    assert row.kills >= 6
    hit = {k for k in row.faults if k.startswith("kill at centrapay:")}
    assert len(hit) >= 3, row.faults


def test_centrapay_chaos_loses_nothing(root: Path) -> None:
    """Every Centrapay emulator fault at once: each file delivered with its report or in
    errors (outcome_unknown only for a create in doubt), none created twice, nothing
    left published."""
    row = chaos(root, 6, random.Random(2), "centrapay", max_wait=8.0)
    _clean(row)
    assert sum(row.faults.values()) > 0, "no fault was injected"
    # never_closed: a batch polled too late under load (its create counted once all
    # the same); 8 s max_wait keeps the sample short.
    assert set(row.notes["failures"]) <= {"load_failed", "outcome_unknown",
                                          "never_closed"}, row.notes


def test_share_outage_loses_nothing(root: Path) -> None:
    """An inbox share that dies and is unmounted is an outage: nothing is deleted or
    forgotten, and work resumes when it returns — on a new device number, as an NFS or
    SMB share does, so files claimed before the outage are known by their content."""
    _needs_mounts()
    row = SCENARIOS["outage"](root, 2, random.Random(3))
    _clean(row)
    assert row.waiting == 0
    assert row.faults["share back on a new device"] == 2, row.faults


def test_full_disks_make_work_wait(root: Path) -> None:
    """A full outbox and a full state folder make work wait, with the reason shown;
    delivery resumes when space returns."""
    _needs_mounts()
    row = SCENARIOS["full-disk"](root, 2, random.Random(4))
    _clean(row)
    assert row.waiting == 0


def test_hostile_input_is_sealed_or_recorded(root: Path) -> None:
    """Hypothesis-drawn names and sizes, files changed while settling, symlink swaps,
    unreadable files and unsafe package entries: each file ends sealed or recorded."""
    row = hostile(root, 3, random.Random(5), max_size=64_000, big=False)
    _clean(row)


def test_lost_state_is_recovered_without_signing_twice(root: Path) -> None:
    """A store deleted or corrupted with work in flight: the daemon refuses to start,
    recover rebuilds it, and no file is signed twice or lost."""
    row = SCENARIOS["lost-state"](root, 4, random.Random(6))
    _clean(row)
    assert row.notes.get("recovered", 0) >= 1


def test_outputs_are_durable_before_originals_go(root: Path) -> None:
    """Under strace, every output is fsynced before it is named in the outbox, and every
    original leaves the work folder only after the outbox names are durable."""
    if shutil.which("strace") is None:
        pytest.fail("strace is missing: 'make test' installs it (Debian package strace)")
    row = durability(root, 3, random.Random(7))
    _clean(row)
    assert row.faults["outputs published"] >= row.faults["originals removed"] > 0
