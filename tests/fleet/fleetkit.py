"""What the fleet scenarios share: three nodes on one inbox and one database, files to
drop, waiting for the fleet to drain, and the verdict at the end.

    with three_nodes(tmp_path, pg_cluster.url(), provider="seal") as fleet:
        drop(fleet, 30)
        finish(fleet)        # drained, status taken, nodes stopped, every invariant holds

Leases are the shortest allowed (``LEASE`` s), so a takeover comes within seconds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.torturekit.checks import read_json
from tests.fleet.invariants import FleetVerdict, check_fleet, files_in, status_of, work_left
from tests.fleet.nodes import Fleet, Node
from tests.helpers import settled, wait_until

LEASE = 5.0  # [store] lease_seconds: the minimum the config allows
NODES = ("node-a", "node-b", "node-c")
DRAIN_SECONDS = 120


@contextmanager
def fleet_of(root: Path, store_url: str, provider: str = "seal", lease: float = LEASE,
             **world: Any) -> Iterator[Fleet]:
    """A fleet (its world on ``store_url``'s server, ``lease`` s leases), no node started."""
    with Fleet.make(root, store_url=store_url, provider=provider, lease_seconds=lease,
                    **world) as fleet:
        yield fleet


@contextmanager
def three_nodes(root: Path, store_url: str, provider: str = "seal",
                env: dict[str, dict[str, str]] | None = None,
                **world: Any) -> Iterator[Fleet]:
    """A fleet with its three nodes started (``env``: a node's own extra environment)."""
    with fleet_of(root, store_url, provider, **world) as fleet:
        for name in NODES:
            fleet.node(name).start(env=(env or {}).get(name))
        yield fleet


def configure(node: Node, old: str, new: str) -> None:
    """Change one line of ``node``'s config (it must be there exactly once)."""
    text = node.config.read_text()
    assert text.count(old) == 1, f"{old!r} in {node.config}"
    node.config.write_text(text.replace(old, new))


def drop(fleet: Fleet, count: int, seed: int = 12) -> None:
    """``count`` new files in the inbox (PDFs and text files in a subfolder)."""
    rng = random.Random(seed + fleet.world.counter)
    for _ in range(count):
        fleet.world.drop(*fleet.world.next_file(rng))


def drained(fleet: Fleet) -> bool:
    """Every dropped file has its outcome, and the work folder is empty."""
    expected = {d.source: "" for d in fleet.world.dropped.values()}
    return settled(fleet.world.layout, expected) and not work_left(fleet)


def wait_drained(fleet: Fleet, timeout: float = DRAIN_SECONDS) -> None:
    try:
        wait_until(lambda: drained(fleet), timeout=timeout, what="the fleet drained")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {state_of(fleet)}") from None


def inbox_files(fleet: Fleet) -> list[str]:
    """What waits in the inbox (its names), the work folder inside it left out."""
    inbox = fleet.world.layout.inbox
    return [str(p.relative_to(inbox)) for p in files_in(inbox)
            if ".folderseal" not in p.relative_to(inbox).parts]


def state_of(fleet: Fleet) -> str:
    """What is left where, and how each node is, for a failure's message."""
    inbox = inbox_files(fleet)
    nodes = {n.name: (n.run.code, len(n.runs)) for n in fleet.nodes.values() if n.runs}
    return (f"inbox {inbox[:10]}, work {work_left(fleet)[:10]}, nodes (exit, runs) {nodes}, "
            f"logs in {fleet.world.root / 'logs'}")


def finish(fleet: Fleet, timeout: float = DRAIN_SECONDS, delivered: int | None = None
           ) -> FleetVerdict:
    """Wait until the fleet drained, take ``status`` from a running node, stop every node
    (each must exit 0 unless announced), and assert every fleet invariant; each dropped
    file delivered (or ``delivered`` of them)."""
    wait_drained(fleet, timeout)
    time.sleep(0.5)  # a duplicate, if any, would show up now
    running = fleet.running()
    status = status_of(fleet, running[0].name if running else None)
    codes = fleet.stop_all()
    verdict = check_fleet(fleet, status)
    assert verdict.problems() == [], f"{verdict.problems()}; {state_of(fleet)}"
    assert all(code == 0 for code in codes.values()), codes
    want = len(fleet.world.dropped) if delivered is None else delivered
    assert verdict.base.delivered == want, (verdict.base, state_of(fleet))
    return verdict


def sealed_by(fleet: Fleet) -> dict[str, int]:
    """How many batches each node delivered (``batch.delivered``-like events by node),
    from the store's events: which nodes did the work."""
    import psycopg
    with psycopg.connect(fleet.store_url, connect_timeout=10) as conn:
        rows = conn.execute("SELECT node, count(DISTINCT batch_id) FROM events WHERE "
                            "batch_id IS NOT NULL GROUP BY node").fetchall()
    return {str(node): int(n) for node, n in rows}


def events_after(node: Node, since_run: int, name: str) -> list[dict[str, Any]]:
    """``name`` events of ``node``'s runs from run number ``since_run`` (0-based) on."""
    return [e for r in node.runs[since_run:] for e in r.life.events() if e.get("event") == name]


def sidecars_of(fleet: Fleet) -> list[dict[str, Any]]:
    return [d for p in sorted(fleet.world.layout.outbox.rglob("*.json"))
            if (d := read_json(p)) is not None and "input" in d]
