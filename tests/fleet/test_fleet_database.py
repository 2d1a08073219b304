"""The database of a fleet of three nodes (SEAL emulator, one inbox) goes away while
batches move: PostgreSQL restarted, stopped for longer than a lease, and one node cut
off from it (through a TCP proxy the test controls) while the others go on. Every file
ends sealed once, and every fleet invariant holds."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from bench.torturekit.world import Feeder
from tests.fleet.cluster import Cluster
from tests.fleet.fleetkit import LEASE, NODES, configure, drop, finish, fleet_of, sealed_by
from tests.fleet.proxy import Proxy

pytestmark = pytest.mark.fleet


@pytest.mark.parametrize("how", ["restart", "outage"])
def test_the_database_restarted_or_stopped_while_batches_move(
        tmp_path: Path, pg_cluster: Cluster, how: str) -> None:
    """Files keep coming; the database is restarted (a fast restart: every session
    dropped) or stopped for twice the lease, then back."""
    with fleet_of(tmp_path / "world", pg_cluster.url()) as fleet:
        for name in NODES:
            fleet.node(name).start()
        drop(fleet, 10)
        with Feeder(fleet.world, random.Random(7), mean_gap=0.3) as feeder:
            time.sleep(2)  # batches on their way
            if how == "restart":
                pg_cluster.restart()
            else:
                pg_cluster.outage(2 * LEASE)
            time.sleep(3)
        assert feeder.errors == []
        finish(fleet, timeout=180)


@pytest.mark.parametrize("how", ["reset", "blackhole"])
def test_one_node_cut_off_from_the_database_while_the_others_go_on(
        tmp_path: Path, pg_cluster: Cluster, pg_proxy: Proxy, how: str) -> None:
    """node-c reaches the database through the proxy; it is cut (connections reset, or
    a blackhole where nothing answers) for three leases while files keep coming: node-a
    and node-b take its claims and batches over and seal everything dropped meanwhile;
    restored, node-c goes on."""
    with fleet_of(tmp_path / "world", pg_cluster.url()) as fleet:
        c = fleet.node("node-c")
        configure(c, f'url = "{fleet.store_url}"', f'url = "{pg_proxy.url_of(fleet.store_url)}"')
        for name in NODES:
            fleet.node(name).start()
        drop(fleet, 8)
        time.sleep(1)
        pg_proxy.cut(how)
        with Feeder(fleet.world, random.Random(8), mean_gap=0.3):
            time.sleep(3 * LEASE)
        before = sealed_by(fleet)
        assert before.get("node-a", 0) + before.get("node-b", 0) > 0, before
        pg_proxy.restore()
        finish(fleet, timeout=180)
        assert c.run.code == 0  # it stayed up through the cut and stopped when told
