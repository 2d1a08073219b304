"""Several ``folderseal run`` processes on one share and one database: a fleet under test.

A :class:`Fleet` is a torture :class:`~bench.torturekit.world.World` (its folders, its
emulator, its feeder and its invariants) with the store in PostgreSQL, plus nodes: each
has its own ``node`` name and ``state_dir`` and its own config file beside the world's
(``config-<node>.toml``: the world's config with those two keys changed), and shares
the inbox, outbox, errors, work folder and database URL with the others. A node is
started with its own environment (``FOLDERSEAL_CRASH_AT``, ``FOLDERSEAL_PAUSE_AT``, a
clock offset), and every run of it is kept with its log and how it ended:

    with Fleet.make(root, store_url=cluster.url()) as fleet:
        a = fleet.node("a").start()
        b = fleet.node("b").start(env={"FOLDERSEAL_PAUSE_AT": "fenced:accept"},
                                  clock_offset=300)
        b.wait_paused(); ...; b.resume()
        fleet.stop_all()
        verdict = check_fleet(fleet, status)   # tests/fleet/invariants.py

An exit the test caused (``kill``) or announced (``expect_exit``) is expected; any other
non-zero exit is a finding of :func:`~tests.fleet.invariants.check_fleet`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.torturekit.world import Life, World
from tests.fleet.clock import offset_env


def process_state(pid: int) -> str | None:
    """The state letter of a process (``R``, ``S``, ``T`` for stopped…), None once gone
    (a zombie counts as gone: it has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state = stat.rpartition(")")[2].split()[0]  # the name in parentheses may hold spaces
    return None if state in ("Z", "X") else state


@dataclass
class Run:
    """One run of a node: its process and log (a torture Life), how it ended."""

    life: Life
    env: dict[str, str]
    killed: bool = False
    expected: frozenset[int] = frozenset({0})

    @property
    def pid(self) -> int:
        return self.life.process.pid

    @property
    def code(self) -> int | None:
        return self.life.process.poll()


@dataclass
class Node:
    fleet: Fleet
    name: str
    config: Path
    runs: list[Run] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.fleet.world.root / "state" / self.name

    @property
    def run(self) -> Run:
        if not self.runs:
            raise AssertionError(f"node {self.name} was never started")
        return self.runs[-1]

    @property
    def life(self) -> Life:
        return self.run.life

    def start(self, env: dict[str, str] | None = None, clock_offset: float | None = None,
              wait: bool = True, timeout: float = 60) -> Node:
        """Start ``folderseal run`` for this node; ``wait`` until it logged
        ``daemon.started`` (not when it is meant to stop at a point before that)."""
        extra = dict(env or {})
        if clock_offset:
            extra.update(offset_env(clock_offset))
        life = self.fleet.world.start(env=extra, config=self.config, name=self.name)
        self.runs.append(Run(life, extra))
        if wait and not life.started(timeout):
            raise AssertionError(f"node {self.name} did not start: "
                                 f"{life.log.read_text(errors='replace')[-3000:]}")
        return self

    def expect_exit(self, *codes: int) -> None:
        """The current run is meant to end with one of ``codes`` (78, say)."""
        self.run.expected = frozenset(codes)

    # -- signals --------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the node and its workers (an expected end)."""
        self.run.killed = True
        self.life.kill()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait for the exit (SIGKILL after ``timeout``, and that is a finding)."""
        if process_state(self.run.pid) == "T":
            self.resume()
        return self.life.stop(timeout)

    def paused(self) -> bool:
        return process_state(self.run.pid) == "T"

    def wait_paused(self, timeout: float = 30) -> None:
        """Wait until the node stopped itself (FOLDERSEAL_PAUSE_AT); fail if it exits or
        runs on past ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = process_state(self.run.pid)
            if state == "T":
                return
            if state is None:
                raise AssertionError(f"node {self.name} exited ({self.run.code}) before it "
                                     f"paused: {self.life.log.read_text()[-3000:]}")
            time.sleep(0.02)
        raise AssertionError(f"node {self.name} never paused (FOLDERSEAL_PAUSE_AT="
                             f"{self.run.env.get('FOLDERSEAL_PAUSE_AT')})")

    def pause(self) -> None:
        """SIGSTOP from outside, wherever the node is."""
        os.kill(self.run.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.run.pid, signal.SIGCONT)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every JSON event this node logged, in all its runs (only ``name`` if given)."""
        found = [e for r in self.runs for e in r.life.events()]
        return [e for e in found if name is None or e.get("event") == name]


@dataclass
class Fleet:
    world: World
    store_url: str                      # the schema's URL (what every node's config has)
    nodes: dict[str, Node] = field(default_factory=dict)

    @classmethod
    def make(cls, root: Path, store_url: str, provider: str = "seal",
             lease_seconds: float = 6.0, **world: Any) -> Fleet:
        """A world on ``store_url``'s server (a schema of its own, dropped at close)."""
        made = World.make(root, provider=provider, store="postgres", store_url=store_url,
                          store_keys={"lease_seconds": lease_seconds}, **world)
        found = re.search(r'^url = "(.*)"$', made.layout.config.read_text(), re.MULTILINE)
        assert found, "the world's config names no store url"
        return cls(made, found.group(1))

    def node(self, name: str) -> Node:
        """The node ``name``, its config written on first use."""
        if name not in self.nodes:
            text = self.world.layout.config.read_text()
            keys = ('state_dir = "state"\n', 'node = "test-node"\n')
            assert all(k in text for k in keys), "the world's config has no node keys"
            text = text.replace(keys[0], f'state_dir = "state/{name}"\n', 1)
            text = text.replace(keys[1], f'node = "{name}"\n', 1)
            config = self.world.root / f"config-{name}.toml"
            config.write_text(text)
            (self.world.root / "state" / name).mkdir(parents=True, exist_ok=True)
            self.nodes[name] = Node(self, name, config)
        return self.nodes[name]

    def running(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.runs and n.run.code is None]

    def stop_all(self, timeout: float = 60) -> dict[str, int]:
        """SIGTERM every running node (resumed first if paused) and wait for each."""
        return {n.name: n.stop(timeout) for n in self.running()}

    def unexpected_exits(self) -> list[str]:
        """Runs that ended in a way the test neither caused nor announced."""
        found = []
        for node in self.nodes.values():
            for i, run in enumerate(node.runs, 1):
                code = run.code
                if code is None or run.killed or code in run.expected:
                    continue
                found.append(f"node {node.name} run {i} exited {code} (log {run.life.log})")
        return found

    def close(self) -> None:
        """Kill what still runs (a test that broke off), then close the world."""
        for node in self.running():
            with contextlib.suppress(OSError):
                node.resume()
            node.kill()
        self.world.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
