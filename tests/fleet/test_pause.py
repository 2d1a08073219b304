"""FOLDERSEAL_PAUSE_AT: a real `folderseal run` stops itself (SIGSTOP) at the named point,
stays stopped, and goes on from there after SIGCONT."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from bench.torturekit.world import Life, World
from tests.fleet.nodes import process_state
from tests.helpers import Layout, settled, wait_until


def _wait_stopped(life: Life, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while process_state(life.process.pid) != "T":
        assert life.process.poll() is None, life.log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the daemon never paused at the point"
        time.sleep(0.02)


def _at(point: str, layout: Layout) -> None:
    """What the folders show while the daemon is frozen at ``point``."""
    claims = [p for p in layout.incoming.rglob("*") if p.is_file()] \
        if layout.incoming.is_dir() else []
    outbox = [p for p in layout.outbox.rglob("*") if p.is_file()]
    assert not settled(layout, {"a.txt": "outbox"}) and outbox == []
    if point == "claim-folder-made":  # the folder made, the file not yet renamed into it
        assert (layout.inbox / "a.txt").exists() and claims == []
        assert any(layout.incoming.iterdir())
    else:  # claimed, and not yet in the outbox
        assert not (layout.inbox / "a.txt").exists()


# The new points of the fleet tests, each reached on one node with
# the local signer (fenced:accept is the point of no return, the lease just checked).
@pytest.mark.parametrize("point", ["claim-folder-made", "fenced:accept", "output-linking"])
def test_a_daemon_pauses_at_the_point_and_goes_on_after_sigcont(tmp_path: Path,
                                                               point: str) -> None:
    world = World.make(tmp_path / "world", provider="local")
    try:
        world.drop("a.txt", b"alpha\n")
        life = world.start(env={"FOLDERSEAL_PAUSE_AT": point})
        _wait_stopped(life)
        time.sleep(0.5)
        assert process_state(life.process.pid) == "T", "it ran on without SIGCONT"
        _at(point, world.layout)
        life.process.send_signal(signal.SIGCONT)
        wait_until(lambda: settled(world.layout, {"a.txt": "outbox"}), timeout=60,
                   what="a.txt sealed after the pause")
        assert process_state(life.process.pid) in ("R", "S", "D")  # paused once, not again
        assert life.stop() == 0
    finally:
        world.close()
