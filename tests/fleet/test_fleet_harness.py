"""The node launcher and the fleet invariants, proven with ONE node on a cluster of the
test's own (the three-node scenarios are in test_fleet_*.py): files flow through the
SEAL emulator and through the local signer, every invariant holds, and the checker does
see a broken one."""

from __future__ import annotations

import random
from pathlib import Path

import psycopg
import pytest

from tests.fleet.cluster import Cluster
from tests.fleet.invariants import check_fleet, status_of, work_left
from tests.fleet.nodes import Fleet
from tests.helpers import settled, wait_until


def _drained(fleet: Fleet) -> bool:
    expected = {d.source: "" for d in fleet.world.dropped.values()}
    return settled(fleet.world.layout, expected) and not work_left(fleet)


@pytest.mark.parametrize("provider", ["seal", "local"])
def test_one_node_keeps_every_fleet_invariant(tmp_path: Path, pg_cluster: Cluster,
                                              provider: str) -> None:
    with Fleet.make(tmp_path / "world", store_url=pg_cluster.url(),
                    provider=provider) as fleet:
        # Frozen a moment at the point of no return (well within its lease), then on.
        node = fleet.node("node-a").start(env={"FOLDERSEAL_PAUSE_AT": "fenced:accept"})
        rng = random.Random(12)
        for _ in range(6):
            fleet.world.drop(*fleet.world.next_file(rng))
        node.wait_paused()
        node.resume()
        wait_until(lambda: _drained(fleet), timeout=60, what="every file delivered")
        status = status_of(fleet)
        assert node.stop() == 0
        verdict = check_fleet(fleet, status)
        assert verdict.problems() == []
        assert verdict.base.delivered == 6
        # The node ran under its own name, in its own state folder, on the cluster.
        assert [p.name for p in (fleet.world.root / "state").iterdir()] == ["node-a"]
        assert (node.state_dir / "instance").exists()
        with psycopg.connect(fleet.store_url) as conn:
            assert conn.execute("SELECT node FROM nodes").fetchall() == [("node-a",)]


def test_the_fleet_checker_sees_what_breaks(tmp_path: Path, pg_cluster: Cluster) -> None:
    """A node that died on its own, a file left in the work folder, an output changed
    in the outbox and an epoch that went down (in the order events were written, and
    by their times) are each reported."""
    with Fleet.make(tmp_path / "world", store_url=pg_cluster.url(),
                    provider="local") as fleet:
        node = fleet.node("node-a").start(env={"FOLDERSEAL_CRASH_AT": "state:DELIVERED"})
        fleet.world.drop("a.txt", b"alpha\n")
        assert node.life.exited(60) == -9
        node.start()  # the restart finishes it
        wait_until(lambda: _drained(fleet), timeout=60, what="a.txt delivered")
        assert node.stop() == 0
        assert check_fleet(fleet, status_of(fleet)).exits == [
            f"node node-a run 1 exited -9 (log {node.runs[0].life.log})"]
        node.runs[0].killed = True  # as if the test had killed it: expected then
        assert check_fleet(fleet, status_of(fleet)).problems() == []

        stray = fleet.world.layout.work / "nodes" / "node-a" / "incoming" / "x" / "left.txt"
        stray.parent.mkdir(parents=True)
        stray.write_bytes(b"left behind\n")
        output = next(p for p in fleet.world.layout.outbox.rglob("*") if p.is_file()
                      and not p.name.endswith(".json"))
        output.write_bytes(output.read_bytes() + b"changed")
        with psycopg.connect(fleet.store_url, autocommit=True) as conn:
            batch, epoch = conn.execute("SELECT batch_id, max(epoch) FROM events WHERE "
                                        "epoch IS NOT NULL GROUP BY batch_id").fetchone()
            # An event of the newest epoch stamped before all others (made before its
            # lease was taken), then one of an older epoch written after it.
            for kind, at_epoch in (("test.early", epoch), ("test.late", epoch - 1)):
                conn.execute("INSERT INTO events (at, node, batch_id, kind, epoch) "
                             "VALUES (0, 'node-b', %s, %s, %s)", (batch, kind, at_epoch))
        verdict = check_fleet(fleet, None)
        assert verdict.work == ["nodes/node-a/incoming/x/left.txt"]
        assert verdict.verify and verdict.base.partial
        written = [p for p in verdict.epochs if p.endswith(" written")]
        assert len(written) == 1 and "test.late" in written[0], verdict.epochs
        assert any("test.early" in p and p.endswith(" by time") for p in verdict.epochs)
