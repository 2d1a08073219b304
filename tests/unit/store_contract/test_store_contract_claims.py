"""The store's contract for claims in a fleet, on every backend: each claim is its
claiming node's, only that node hashes, rejects and batches it, and the claims of a node
that stopped beating change hands in one statement on the store's clock."""

from __future__ import annotations

import pytest

from folderseal.core.errors import StateConflict
from folderseal.core.model import FileState
from folderseal.store import Store
from tests.store_backends import T0, Backend, Clock, claim

ALIVE = 30.0


def unhashed(store: Store, file_id: str) -> None:
    store.add_claim(id=file_id, folder="scans", source=f"{file_id}.pdf", dev=1, ino=2, size=3,
                    mtime_ns=4, sha256=None, seen_at=store.clock())


def test_a_claim_is_its_nodes_alone(store: Store, backend: Backend) -> None:
    """Only the claiming node lists, hashes, rejects and batches its claims; another
    node's guarded writes on them match nothing (StateConflict) and change nothing."""
    claim(store, "mine")
    unhashed(store, "raw")
    other = backend.open("node-b")
    claim(other, "theirs")
    assert [r.id for r in store.own_claims("scans")] == ["mine"]
    assert [r.id for r in other.own_claims("scans")] == ["theirs"]
    assert [r.id for r in store.unfinished_claims("scans")] == ["raw"]
    assert other.unfinished_claims("scans") == []
    with pytest.raises(StateConflict):
        other.set_claim_hash("raw", "ef" * 32, 3, 4)
    with pytest.raises(StateConflict):
        other.reject_claim("raw", "vanished", "gone")
    with pytest.raises(StateConflict):
        other.create_batch(batch_id="b1", folder="scans", provider="local",
                           entries=[("theirs", "0001_theirs.pdf"), ("mine", "0002_mine.pdf")])
    assert other.batch_ids() == set()  # the whole batch was refused
    assert {r.id for r in store.files_in_state("scans", FileState.CLAIMED)} == \
        {"mine", "raw", "theirs"}
    store.reject_claim("raw", "vanished", "the claimed file is no longer there")
    raw = store.file("raw")
    assert raw is not None and raw.state == FileState.REJECTED
    assert (raw.error_code, raw.error_message) == ("vanished",
                                                   "the claimed file is no longer there")
    assert [(e.kind, e.from_state, e.to_state, e.detail) for e in store.events(file_id="raw")] \
        == [
            ("file.claimed", None, "CLAIMED", None),
            ("file.state", "CLAIMED", "REJECTED", "vanished")]


def test_a_claim_another_node_recorded_first_stays_its(store: Store, backend: Backend) -> None:
    """Recording a claim whose id another node recorded first (it took this node's
    claims folder over while this node was paused) adds nothing and says so."""
    other = backend.open("node-b")
    claim(other, "f1")
    row = {"id": "f1", "folder": "scans", "source": "f1.pdf", "dev": 1, "ino": 2, "size": 3,
           "mtime_ns": 4, "sha256": "ab" * 32, "seen_at": T0}
    fresh = {**row, "id": "f2"}
    assert store.add_claims([row, fresh]) == ["f1"]
    assert [r.id for r in other.own_claims("scans")] == ["f1"]
    assert [r.id for r in store.own_claims("scans")] == ["f2"]
    assert [e.kind for e in store.events(file_id="f1")] == ["file.claimed"]


def test_claims_of_a_silent_node_are_adopted_on_the_store_clock(
        store: Store, backend: Backend, clock: Clock) -> None:
    """adopt_claims takes the unbatched claims (CLAIMED or REJECTED) of every node that
    has not beaten within alive_seconds, and of nodes the store never heard of, and
    leaves a live node's claims and every batched file alone."""
    live, dead = backend.open("node-live"), backend.open("node-dead")
    live.register_node("i-live", 1, T0, alive_seconds=ALIVE)
    dead.register_node("i-dead", 2, T0, alive_seconds=ALIVE)
    claim(live, "l1")
    claim(dead, "d1")
    unhashed(dead, "d2")
    dead.reject_claim("d2", "empty", "the file is empty")
    claim(dead, "d3")
    dead.create_batch(batch_id="b1", folder="scans", provider="local",
                      entries=[("d3", "0001_d3.pdf")])
    ghost = backend.open("node-ghost")  # never registered: no heartbeat at all
    claim(ghost, "g1")
    assert store.adopt_claims("scans", ALIVE) == 1  # only the ghost's, yet
    clock.advance(ALIVE - 1)
    live.heartbeat(1, T0, {})
    clock.advance(2)  # the dead node silent ALIVE + 1 s, the live one 2 s
    assert store.adopt_claims("scans", ALIVE) == 2
    assert [r.id for r in store.own_claims("scans")] == ["d1", "g1"]
    assert [r.id for r in store.unfinished_claims("scans")] == ["d2"]
    assert [r.id for r in live.own_claims("scans")] == ["l1"]
    assert dead.own_claims("scans") == [] and dead.unfinished_claims("scans") == []
    with pytest.raises(StateConflict):  # the dead node comes back: too late
        dead.create_batch(batch_id="b2", folder="scans", provider="local",
                          entries=[("d1", "0001_d1.pdf")])
    batched = store.file("d3")
    assert batched is not None and batched.state == FileState.BATCHED
    assert store.adopt_claims("scans", ALIVE) == 0
    assert store.adopt_claims("other-folder", ALIVE) == 0


def test_claims_by_node_counts_each_nodes_unbatched_claims(store: Store,
                                                           backend: Backend) -> None:
    """claims_by_node counts each node's claims not yet in a batch, CLAIMED or REJECTED
    (what status says a dead node left); batched files do not count."""
    other = backend.open("node-b")
    claim(store, "a1")
    unhashed(store, "a2")
    store.reject_claim("a2", "empty", "the file is empty")
    claim(other, "b1")
    claim(other, "b2")
    other.create_batch(batch_id="b", folder="scans", provider="local",
                       entries=[("b2", "0001_b2.pdf")])
    assert store.claims_by_node() == {store.node: 2, "node-b": 1}
