"""Nodes of a fleet (one inbox, one PostgreSQL cluster of the test's own) that disagree:
clocks 300 s off either way, two daemons given one name, and two files of one name
sealed by two nodes at the same moment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fleet.cluster import Cluster
from tests.fleet.fleetkit import (
    NODES,
    configure,
    drop,
    finish,
    fleet_of,
    inbox_files,
    sealed_by,
    sidecars_of,
)
from tests.fleet.invariants import status_of
from tests.helpers import wait_until

pytestmark = pytest.mark.fleet
CONFIG_ERROR = 78


def test_nodes_with_clocks_300_s_ahead_and_behind(tmp_path: Path, pg_cluster: Cluster) -> None:
    """node-b's wall clock runs 300 s ahead, node-c's 300 s behind (libfaketime; their
    monotonic and boot clocks true): files flow through all three, status shows each
    offset with an alarm, and every invariant holds."""
    with fleet_of(tmp_path / "world", pg_cluster.url()) as fleet:
        fleet.node("node-a").start()
        fleet.node("node-b").start(clock_offset=300)
        fleet.node("node-c").start(clock_offset=-300)
        drop(fleet, 30)
        wait_until(lambda: not inbox_files(fleet), timeout=60, what="every file claimed")
        status = status_of(fleet, "node-a")
        offsets = {n["node"]: n.get("clock_offset_seconds") for n in status["nodes"]}
        assert 295 < offsets["node-b"] < 305 and -305 < offsets["node-c"] < -295, offsets
        assert abs(offsets["node-a"]) < 2, offsets
        assert any("node-b's clock" in a for a in status["alarms"]), status["alarms"]
        finish(fleet)
        working = sealed_by(fleet)
        assert working.get("node-b", 0) and working.get("node-c", 0), working


def test_a_second_daemon_with_a_nodes_name_exits_78(tmp_path: Path,
                                                    pg_cluster: Cluster) -> None:
    """Three nodes run; a fourth daemon (its own state folder) is given node-a's name:
    it exits 78 at once, and the three go on."""
    with fleet_of(tmp_path / "world", pg_cluster.url()) as fleet:
        for name in NODES:
            fleet.node(name).start()
        twin = fleet.node("twin")
        configure(twin, 'node = "twin"', 'node = "node-a"')
        twin.start(wait=False)
        twin.expect_exit(CONFIG_ERROR)
        assert twin.life.exited(60) == CONFIG_ERROR
        assert "another folderseal runs as node 'node-a'" in twin.life.log.read_text()
        drop(fleet, 12)
        finish(fleet)


def test_two_files_of_one_name_delivered_by_two_nodes_at_once(tmp_path: Path,
                                                              pg_cluster: Cluster) -> None:
    """node-a claims same.txt and freezes right before its output's link; same.txt is
    dropped again (other content) and node-b claims it and freezes at the same point;
    both are resumed together and link the one name at once. Both are sealed, under
    distinct output names, each with one sidecar. (Leases of 30 s: the freezes here
    are meant to be short, not takeovers.)"""
    with fleet_of(tmp_path / "world", pg_cluster.url(), lease=30) as fleet:
        pause = {"FOLDERSEAL_PAUSE_AT": "output-linking"}
        a = fleet.node("node-a").start(env=pause)
        fleet.world.drop("same.txt", b"the first same.txt\n")
        a.wait_paused(60)
        b = fleet.node("node-b").start(env=pause)
        fleet.world.drop("same.txt", b"the second same.txt, other bytes\n")
        b.wait_paused(60)
        fleet.node("node-c").start()
        a.resume()
        b.resume()
        finish(fleet)
        sealed = sidecars_of(fleet)
        assert sorted(d["source"] for d in sealed) == ["same.txt", "same.txt"]
        outputs = [o["path"] for d in sealed for o in d["outputs"]]
        assert len(outputs) == len(set(outputs)), outputs  # nothing shared, nothing lost
        assert sorted(p for p in outputs if not p.endswith(".p7s")) == \
            ["same-1.txt", "same.txt"], outputs
        assert sealed_by(fleet).keys() >= {"node-a", "node-b"}
