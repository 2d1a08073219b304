"""A node's wall clock put off by ±300 s with libfaketime, its monotonic and boot clocks
left alone (the lease deadlines count on CLOCK_BOOTTIME)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fleet.clock import offset_env
from tests.fleet.cluster import Cluster
from tests.fleet.invariants import status_of
from tests.fleet.nodes import Fleet

READ = ("import json, time; print(json.dumps({'wall': time.time(), "
        "'real': time.clock_gettime(time.CLOCK_REALTIME), 'mono': time.monotonic(), "
        "'boot': time.clock_gettime(time.CLOCK_BOOTTIME)}))")


def _clocks(env: dict[str, str] | None) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", READ], capture_output=True, text=True,
                          check=True, timeout=30, env=env)
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize("offset", [300, -300])
def test_only_the_wall_clock_is_off(offset: int) -> None:
    here_before = {"wall": time.time(), "mono": time.monotonic(),
                   "boot": time.clock_gettime(time.CLOCK_BOOTTIME)}
    there = _clocks({**os.environ, **offset_env(offset)})
    here_after = {"wall": time.time(), "mono": time.monotonic(),
                  "boot": time.clock_gettime(time.CLOCK_BOOTTIME)}
    for clock in ("wall", "real"):
        seen = there[clock] - offset
        assert here_before["wall"] - 1 <= seen <= here_after["wall"] + 1, (clock, there)
    for clock in ("mono", "boot"):  # the same clock as this process reads, untouched
        assert here_before[clock] <= there[clock] <= here_after[clock], (clock, there)
    plain = _clocks(None)
    assert abs(plain["wall"] - time.time()) < 5  # and no offset leaks without the env


def test_a_node_started_off_by_300_s_is_seen_off_by_the_database(tmp_path: Path,
                                                                 pg_cluster: Cluster) -> None:
    """The launcher's clock_offset reaches the daemon (threads, psycopg and all): the
    store, comparing the node's clock with its own, shows it 300 s off and alarms."""
    with Fleet.make(tmp_path / "world", store_url=pg_cluster.url(),
                    provider="local") as fleet:
        node = fleet.node("skewed").start(clock_offset=300)
        status = status_of(fleet)
        assert node.stop() == 0
    [shown] = status["nodes"]
    assert shown["node"] == "skewed" and shown["clock_off"]
    assert abs(shown["clock_offset_seconds"] - 300) < 2, shown
    assert any("skewed" in alarm and "clock" in alarm for alarm in status["alarms"])
