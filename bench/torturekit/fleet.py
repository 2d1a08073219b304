"""The fleet scenario of the campaign: three nodes on one share and one PostgreSQL of
the scenario's own, files flowing, and at each cycle one trouble at random:

- ``kill``: kill -9 of a running node (its batches wait out their lease, then another
  node takes them over; the node is started again a cycle or two later);
- ``pause``: a node frozen with SIGSTOP for up to twice its lease, then resumed (past
  its lease it must find its batches taken over and touch none of them);
- ``db-restart``: the database restarted (every session dropped), or down for longer
  than a lease now and then (``db-outage``).

At the end every node runs unpaused until the backlog is drained; each must then stop
with exit 0, and the fleet invariants (tests/fleet/invariants.py) must hold: each file
in one place, each document signed in one accepted batch, ``folderseal verify`` passes,
epochs only grow, the work folder is empty, no node exited by itself.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from bench.torturekit.scenarios import DRAIN_SECONDS, Row
from bench.torturekit.world import Feeder
from tests.fleet.cluster import Cluster, own_cluster
from tests.fleet.invariants import check_fleet, status_of, work_left
from tests.fleet.nodes import Fleet, Node
from tests.helpers import settled

LEASE = 5.0
NODES = ("node-a", "node-b", "node-c")
EVENTS = ("kill", "pause", "pause", "db-restart")  # pauses are the subtle ones: twice


def fleet_scenario(root: Path, cycles: int, rng: random.Random,
                   provider: str = "seal") -> Row:
    started = time.monotonic()
    row = Row(f"fleet ({provider}, 3 nodes, PostgreSQL)", cycles)
    seen: Counter[str] = Counter()
    with own_cluster() as cluster, \
            Fleet.make(root, store_url=cluster.url(), provider=provider, lease_seconds=LEASE,
                       seed=rng.randrange(1 << 30),
                       seal={"max_wait_seconds": 300.0}) as fleet:
        try:
            for name in NODES:
                fleet.node(name).start()
            with Feeder(fleet.world, rng, mean_gap=0.15):
                for _ in range(cycles):
                    time.sleep(rng.uniform(0.5, 3.0))
                    _restart_the_dead(fleet, rng, seen)
                    _trouble(fleet, cluster, rng, seen)
            _all_running(fleet)
            _drain(fleet, row)
        finally:
            row.faults = seen
            row.wall = time.monotonic() - started
    return row


def _trouble(fleet: Fleet, cluster: Cluster, rng: random.Random, seen: Counter[str]) -> None:
    event = rng.choice(EVENTS)
    running = [n for n in fleet.running() if not n.paused()]
    if event == "kill" and len(running) > 1:   # one node always goes on
        rng.choice(running).kill()
        seen["kill -9"] += 1
    elif event == "pause" and running:
        node = rng.choice(running)
        seconds = rng.uniform(0.5, 2 * LEASE)
        node.pause()
        time.sleep(seconds)
        node.resume()
        seen["pause past the lease" if seconds > LEASE else "pause within the lease"] += 1
    elif event == "db-restart":
        if rng.random() < 0.25:
            cluster.outage(LEASE + 1)
            seen["database down past the lease"] += 1
        else:
            cluster.restart()
            seen["database restart"] += 1


def _restart_the_dead(fleet: Fleet, rng: random.Random, seen: Counter[str]) -> None:
    """A killed node comes back, now or a cycle later (its lease lapsed or not)."""
    for node in _dead(fleet):
        if rng.random() < 0.5:
            node.start()
            seen["node restarted"] += 1


def _dead(fleet: Fleet) -> list[Node]:
    return [n for n in fleet.nodes.values() if n.run.code is not None]


def _all_running(fleet: Fleet) -> None:
    for node in fleet.nodes.values():
        if node.paused():
            node.resume()
    for node in _dead(fleet):
        node.start()


def _drained(fleet: Fleet) -> bool:
    expected = {d.source: "" for d in fleet.world.dropped.values()}
    return settled(fleet.world.layout, expected) and not work_left(fleet)


def _drain(fleet: Fleet, row: Row) -> None:
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline and not _drained(fleet):
        time.sleep(0.2)
    status = status_of(fleet)
    for name, code in fleet.stop_all().items():
        if code != 0:
            row.problems.append(f"node {name} exited {code} when stopped: "
                                f"{fleet.nodes[name].life.log}")
    verdict = check_fleet(fleet, status)
    row.take(fleet.world, verdict.base)
    row.problems += [p for p in verdict.problems() if p not in verdict.base.problems()]
    row.notes["nodes"] = len(fleet.nodes)
    row.notes["node runs"] = sum(len(n.runs) for n in fleet.nodes.values())
