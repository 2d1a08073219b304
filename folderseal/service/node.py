"""This daemon as a node of its store: its name taken at start, and the nodes beside it.

A node name belongs to one running instance (one state folder): a second daemon started
with the same name on the same store is refused (exit 78) while the first still beats.
A node counts as alive while its last heartbeat, on the store's clock, is younger than
``[store] lease_seconds`` — the time after which its batches could be taken over.

Several live nodes share one store (fleet mode): a node starts beside the others, each
under its own name. Only `folderseal recover` refuses while another node is alive
(:func:`refuse_beside_live_nodes`). A node that does not run leaves its claims to the
next node that attaches the folder (:func:`alive`).

Each heartbeat's notes carry the node's own wall clock at the beat (``CLOCK_NOTE``),
while the store stamps ``heartbeat_at`` with its own clock in the same call: their
difference is the node's clock offset (within one round trip to the database). That is
the only use of a node's clock beside a store time: nothing is decided by it.
"""

from __future__ import annotations

import os
from typing import Any

from folderseal.core import statelock
from folderseal.core.config import Settings
from folderseal.core.errors import ConfigError
from folderseal.store import Store

CLOCK_NOTE = "clock"  # the heartbeat note holding the node's own time.time() at the beat


def is_alive(row: dict[str, Any], now: float, alive_seconds: float) -> bool:
    """Whether the node of ``row`` (one of ``Store.nodes()``) beat within
    ``alive_seconds`` before ``now``, a time read from the store's clock."""
    return float(row["heartbeat_at"]) > now - alive_seconds


def clock_offset(row: dict[str, Any]) -> float | None:
    """The node's clock minus the store's at its last heartbeat (positive: the node's
    clock is ahead), or None when its notes carry no clock (a version before this one,
    or a node that registered but has not beaten yet)."""
    clock = row["notes"].get(CLOCK_NOTE)
    if not isinstance(clock, int | float) or isinstance(clock, bool):
        return None
    return float(clock) - float(row["heartbeat_at"])


def alive_nodes(store: Store, alive_seconds: float, but: str = "") -> list[str]:
    """The names of the nodes whose last heartbeat is younger than ``alive_seconds``,
    measured on the store's clock (the clock that stamped them), but those of instance
    ``but`` (this state folder's: an earlier name of this very node)."""
    now = store.clock()
    return [row["node"] for row in store.nodes()
            if is_alive(row, now, alive_seconds) and (not but or row.get("instance") != but)]


def alive_seconds(settings: Settings) -> float:
    """How long a node may be silent and still count as alive: ``lease_seconds`` on a
    shared store; on SQLite none (the state folder's lock keeps every other daemon out,
    so any other node is this store's own past)."""
    return settings.store.lease_seconds if settings.store.database_url() else 0.0


def register(store: Store, settings: Settings, started_at: float) -> int:
    """Take this node's name on the store, at start, and void the leases it held before;
    how many. ConfigError (exit 78) when another live daemon uses the name, or while
    `folderseal recover` runs on the store. Other nodes alive beside it are the fleet.

    The register runs under the store's start lock: of two daemons of one name starting
    at once, the second waits, then sees the first alive under that name."""
    with store.transaction():
        if not store.lock_node_starts():
            raise ConfigError("`folderseal recover` runs on this store: let it finish "
                              "(its output says when), then start this node again")
        restarted = store.register_node(statelock.instance_id(settings.state_dir),
                                        os.getpid(), started_at,
                                        alive_seconds=alive_seconds(settings))
    # After another instance of this name (gone silent, but its batch threads may still
    # run), only its lapsed leases are void; after this instance's own crash, all are.
    return store.release_node_leases(every=restarted)


def refuse_beside_live_nodes(store: Store, settings: Settings, what_then: str) -> None:
    """ConfigError (exit 78) while another node is alive on a shared store (on SQLite the
    state folder's lock already keeps every other daemon out)."""
    if settings.store.database_url() is None:
        return
    seconds = settings.store.lease_seconds
    others = set(alive_nodes(store, seconds, but=statelock.instance_id(settings.state_dir)))
    others.discard(store.node)
    if others:
        raise ConfigError(f"node(s) {', '.join(sorted(others))} run on this store: stop "
                          f"them (and wait {seconds:g} s), {what_then}")


def alive(store: Store | None, settings: Settings, other: str) -> bool:
    """Whether node ``other`` may still use its claims: never on SQLite (the state
    folder's lock keeps every other daemon out, so a claims folder of another name is
    this store's, left under an earlier name), nor when it is this node under an earlier
    name; else while it beats."""
    if store is None or settings.store.database_url() is None:
        return False
    instance = statelock.instance_id(settings.state_dir)
    return other in alive_nodes(store, settings.store.lease_seconds, but=instance)
