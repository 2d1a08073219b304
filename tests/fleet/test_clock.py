"""A node's wall clock put off by ±300 s with libfaketime, its monotonic and boot clocks
left alone (the lease deadlines count on CLOCK_BOOTTIME)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.fleet.clock import offset_env

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
