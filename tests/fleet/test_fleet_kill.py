"""kill -9 in a fleet of three nodes (SEAL emulator, one inbox, one PostgreSQL cluster of
the test's own): a node killed right after each crash point, and nodes killed at random
while files flow. The others carry on (they adopt the dead node's claims and take its
batches over once its lease ran out); the killed node is restarted, or not; every fleet
invariant holds at the end."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from bench.torturekit.world import Feeder
from tests.fleet.cluster import Cluster
from tests.fleet.fleetkit import LEASE, NODES, drop, finish, fleet_of, sealed_by

pytestmark = pytest.mark.fleet

# Every point a SEAL batch passes (tests/acceptance/test_crash.py and test_seal.py list
# them for one node), from the claim to the clean-up; and the local signer's own.
CRASH_POINTS = [
    "claim-folder-made", "claimed", "state:BATCHED", "seal:created", "state:CREATED",
    "seal:uploading", "seal:uploaded", "state:UPLOADED", "state:ACCEPTING",
    "fenced:accept", "seal:accepted", "state:ACCEPTED", "state:CLOSED", "seal:downloading",
    "state:DOWNLOADED", "output-linking", "output-published", "sidecar-published",
    "state:DELIVERED", "original-removed", "state:CLEANED",
]
LOCAL_POINTS = ["attempt", "fenced:accept", "state:ACCEPTED", "output-linking"]
MATRIX = [("seal", p) for p in CRASH_POINTS] + [("local", p) for p in LOCAL_POINTS]



@pytest.mark.parametrize(("provider", "point"), [
    pytest.param(*case, marks=pytest.mark.fleet_sample)
    if case == ("seal", "state:ACCEPTING") else case for case in MATRIX])
def test_a_node_killed_at_a_crash_point_the_others_carry_on(
        tmp_path: Path, pg_cluster: Cluster, provider: str, point: str) -> None:
    """node-a alone claims and batches six files and dies at ``point`` (SIGKILL), alone
    so that no other node's batch thread takes the step first; then node-b and node-c
    start and take its work over, and six more files come. Every other point node-a is
    restarted once its lease ran out, else the others take everything."""
    restart = MATRIX.index((provider, point)) % 2 == 0
    with fleet_of(tmp_path / "world", pg_cluster.url(), provider=provider) as fleet:
        a = fleet.node("node-a").start(env={"FOLDERSEAL_CRASH_AT": point})
        drop(fleet, 6)
        assert a.life.exited(60) == -9, f"{point} was never reached"
        for name in NODES[1:]:
            fleet.node(name).start()
        a.run.killed = True
        drop(fleet, 6)
        if restart:
            time.sleep(LEASE)
            a.start()
        finish(fleet)
        working = sealed_by(fleet)
        assert working.get("node-b", 0) + working.get("node-c", 0) > 0, working


@pytest.mark.parametrize("seed", [1, 2])
def test_nodes_killed_at_random_while_files_flow(tmp_path: Path, pg_cluster: Cluster,
                                                 seed: int) -> None:
    """For about 25 s files keep coming while a random node is killed every few seconds
    and, most times, started again a moment later (at least one node always runs)."""
    rng = random.Random(seed)
    with fleet_of(tmp_path / "world", pg_cluster.url()) as fleet:
        for name in NODES:
            fleet.node(name).start()
        with Feeder(fleet.world, rng, mean_gap=0.3):
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(1.0, 4.0))
                running = fleet.running()
                if len(running) > 1:
                    rng.choice(running).kill()
                for node in fleet.nodes.values():
                    if node.run.code is not None and rng.random() < 0.7:
                        node.start(wait=False)
        for node in fleet.nodes.values():  # all back for the drain
            if node.run.code is not None:
                node.start()
        assert fleet.world.kills >= 3
        finish(fleet, timeout=180)
