"""Leases in a running daemon: the provider is called only while the batch's lease holds
(batches/fence.py), and the lease keeper renews held leases while a step runs, but not a
stuck one (service/leasekeeper.py). On the in-memory store and the scripted provider,
with a clock the test moves standing for the store's and the host's own."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from folderseal.batches.context import StepContext
from folderseal.core import crashpoints
from folderseal.core.errors import LeaseLost, StateUnavailable, TransientError
from folderseal.service import leasekeeper
from folderseal.store import LEASE_SECONDS
from folderseal.store.memory import MemoryStore
from tests.batch_parts import Parts, batched, build
from tests.helpers import log_events

FILES = {"a.txt": b"page a\n"}


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return build(tmp_path)


def _turn(parts: Parts) -> tuple[StepContext, str]:
    """A batch acquired by the machine's connection, and its step context."""
    batch_id, _ = batched(parts, FILES)
    batch = parts.store.acquire_batch()
    assert batch is not None and batch.id == batch_id
    return StepContext(batch, parts.store, parts.provider, {"scans": parts.work},
                       {"scans": parts.sink}, parts.state_dir, parts.stop,
                       parts.backoff, parts.machine.log), batch_id


def test_a_provider_call_after_the_batch_was_taken_over_is_never_made(parts: Parts) -> None:
    """Past the lease's own deadline the step confirms the lease first; taken over by
    another node meanwhile, the call raises LeaseLost and never reaches the provider."""
    ctx, batch_id = _turn(parts)
    view = ctx.view(parts.batch(batch_id))
    parts.clock.advance(LEASE_SECONDS + 1)  # e.g. this process was stopped (SIGSTOP)
    other = parts.store.connect("node-b")
    assert other.acquire_batch() is not None
    with pytest.raises(LeaseLost):
        ctx.provider.create(view, ctx.ledger(parts.batch(batch_id)))
    assert parts.provider.calls == []
    assert ctx.provider.name == parts.provider.name  # what only describes it needs no lease


def test_a_pause_between_the_lease_check_and_the_call_makes_no_call(
        parts: Parts, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frozen right after the lease check (the ``fenced:accept`` point) past its lease,
    while another node took the batch over: resumed, the call is never made."""
    ctx, batch_id = _turn(parts)
    view = ctx.view(parts.batch(batch_id))
    other = parts.store.connect("node-b")

    def paused(name: str) -> None:
        if name == "fenced:create":
            parts.clock.advance(LEASE_SECONDS + 1)
            assert other.acquire_batch() is not None
    monkeypatch.setattr(crashpoints, "reached", paused)
    with pytest.raises(LeaseLost):
        ctx.provider.create(view, ctx.ledger(parts.batch(batch_id)))
    assert parts.provider.calls == []


def test_a_provider_call_renews_a_lease_half_gone_and_then_is_made(parts: Parts) -> None:
    """Half of the lease gone and nobody took the batch: it is renewed, then called."""
    ctx, batch_id = _turn(parts)
    view = ctx.view(parts.batch(batch_id))
    parts.clock.advance(LEASE_SECONDS * 0.6)
    remote = ctx.provider.create(view, ctx.ledger(parts.batch(batch_id)))
    assert remote and len(parts.provider.called("create")) == 1
    assert parts.batch(batch_id).lease_until == parts.clock() + LEASE_SECONDS


class OneRound(threading.Event):
    """A stop event whose first wait ends at once, unset, and whose second is set."""

    def __init__(self) -> None:
        super().__init__()
        self.rounds = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.rounds += 1
        return self.rounds > 1


def _keep_once(store: MemoryStore, step_limit: float = 3600.0) -> None:
    """One round of the lease keeper."""
    leasekeeper.keep_leases(store, OneRound(), step_limit=step_limit)


def test_the_keeper_renews_held_leases_on_its_own_connection(parts: Parts) -> None:
    """A batch thread's lease, renewed by the keeper's connection as the same node."""
    _, batch_id = _turn(parts)
    parts.clock.advance(LEASE_SECONDS / 4)
    _keep_once(parts.store.connect())
    assert parts.batch(batch_id).lease_until == parts.clock() + LEASE_SECONDS
    lease = parts.store.leases.get(batch_id)
    assert lease is not None and lease.deadline == parts.clock() + LEASE_SECONDS


def test_the_keeper_lets_a_stuck_turn_lapse(parts: Parts) -> None:
    """A turn past the step limit is no longer renewed: another node may take it."""
    _, batch_id = _turn(parts)
    before = parts.batch(batch_id).lease_until
    parts.clock.advance(20)
    _keep_once(parts.store.connect(), step_limit=10)
    assert parts.batch(batch_id).lease_until == before


def test_the_keeper_logs_a_lease_taken_over(parts: Parts, debug_log: io.StringIO) -> None:
    """A lease another node took is dropped and logged as lease.lost; one the batch
    thread released meanwhile is no loss and is not logged."""
    _, batch_id = _turn(parts)
    parts.clock.advance(LEASE_SECONDS + 1)
    assert parts.store.connect("node-b").acquire_batch() is not None
    _keep_once(parts.store.connect())
    [lost] = log_events(debug_log, "lease.lost")
    assert lost["batch"] == batch_id and "another thread or node" in lost["next_step"]
    assert parts.store.leases.get(batch_id) is None


def test_a_batch_taken_over_while_it_downloaded_publishes_nothing(parts: Parts) -> None:
    """The lease ran out during the download and another node took the batch: this node
    records nothing more and publishes nothing (nothing reaches the outbox or errors),
    and the other node delivers each file once."""
    taken: list[MemoryStore] = []

    def take_over() -> None:
        parts.clock.advance(LEASE_SECONDS + 1)
        other = parts.store.connect("node-b")
        assert other.acquire_batch() is not None
        taken.append(other)

    parts.provider.script["download"] = [take_over]
    batch_id, _ = batched(parts, FILES)
    assert parts.machine.run_once()
    assert list(parts.cfg.outbox.iterdir()) == [] and list(parts.cfg.errors.iterdir()) == []
    batch = parts.batch(batch_id)
    assert (batch.claimed_by or "").startswith("node-b/")
    [other] = taken
    held = other.batch(batch_id)
    assert held is not None
    parts.machine_on(other).advance(held)
    assert sorted(p.name for p in parts.cfg.outbox.iterdir()) == ["a.txt", "a.txt.json"]


def test_a_turn_that_could_not_release_its_batch_leaves_no_lease_to_renew(
        parts: Parts, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider failed and the store refused the postponement (it was away): the
    turn ends without releasing the batch, and the lease keeper no longer renews it, so
    it runs out and the batch is due again."""
    parts.provider.script["create"] = [TransientError("HTTP 503 (scripted)")]

    def store_away(*_args: object, **_kwargs: object) -> None:
        raise StateUnavailable("the database does not answer (scripted)")

    monkeypatch.setattr(parts.store, "postpone", store_away)
    batch_id, _ = batched(parts, FILES)
    assert parts.machine.run_once()
    assert parts.store.leases.get(batch_id) is None
    _keep_once(parts.store.connect())
    parts.clock.advance(LEASE_SECONDS + 1)
    again = parts.store.connect("node-b").acquire_batch()
    assert again is not None and again.id == batch_id
