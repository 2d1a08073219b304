"""A node frozen (SIGSTOP, FOLDERSEAL_PAUSE_AT) past its lease at the worst moments, in a
fleet of three on one inbox and one PostgreSQL cluster of the test's own (SEAL emulator):
the other nodes take its claims and batches over and finish every file; then the frozen
node is resumed (SIGCONT) and must publish nothing, undo nothing and send nothing to
SEAL, and log that it lost its lease (``lease.lost``) or its claims (``claims.lost``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from folderseal.providers.seal.emulator import EmulatorHandle
from tests.fleet.cluster import Cluster
from tests.fleet.fleetkit import LEASE, NODES, drop, finish, fleet_of, wait_drained
from tests.fleet.invariants import files_in
from tests.fleet.nodes import Fleet

pytestmark = pytest.mark.fleet

# Where a pause hurts most: before the link of an output, between the outputs and
# their sidecars, right after a claim folder was made (the second one of a scan: the
# first file is in this node's claims folder, not yet recorded), between the lease check
# and SEAL's point of no return (accept), and right after accept was sent; and in the
# middle of the upload (the other nodes must find it there and never upload again).
PAUSE_POINTS = {
    "output-linking": "lease.lost",
    "output-published": "lease.lost",
    "claim-folder-made@2": "claims.lost",
    "seal:uploading": "lease.lost",
    "fenced:accept": "lease.lost",
    "seal:accepted": "lease.lost",
}
# The calls that change something at SEAL (status and downloads only read).
SENDING = {"create_batch", "upload", "accept", "delete"}


def _snapshot(fleet: Fleet) -> dict[str, Any]:
    """What a late node could change: every file in the outbox, errors and inbox (with
    its inode and times), and what SEAL was sent."""
    layout = fleet.world.layout
    files = {}
    for folder in (layout.outbox, layout.errors, layout.inbox):
        for path in files_in(folder):
            st = os.lstat(path)
            files[str(path)] = (st.st_ino, st.st_size, st.st_mtime_ns)
    emulator = fleet.world.emulator
    assert isinstance(emulator, EmulatorHandle)
    counts = emulator.request_counts()
    return {"files": files, "journal": len(emulator.read_journal()),
            "accepts": len(emulator.accept_calls()),
            "sent": {k: v for k, v in counts.items() if any(s in k for s in SENDING)}}


@pytest.mark.parametrize("point", list(PAUSE_POINTS))
def test_a_node_paused_past_its_lease_does_nothing_late(tmp_path: Path, pg_cluster: Cluster,
                                                        point: str) -> None:
    lost = PAUSE_POINTS[point]
    with fleet_of(tmp_path / "world", pg_cluster.url()) as fleet:
        drop(fleet, 4)  # before node-a starts: its first scan claims them all at once
        a = fleet.node("node-a").start(env={"FOLDERSEAL_PAUSE_AT": point})
        a.wait_paused(60)
        for name in NODES[1:]:
            fleet.node(name).start()
        wait_drained(fleet)  # node-a still frozen: the others did everything
        assert a.paused()
        before = _snapshot(fleet)
        a.resume()
        deadline = time.monotonic() + 4 * LEASE
        while not a.events(lost) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert a.events(lost), f"node-a logged no {lost} after SIGCONT at {point}"
        time.sleep(LEASE)  # whatever it would do late, it has done by now
        after = _snapshot(fleet)
        assert after == before, f"node-a changed something after SIGCONT at {point}"
        finish(fleet)
