"""The state machine (folderseal.batches.machine.Machine) when an answer is lost, built from
its parts on the in-memory store with the scripted provider (tests/scripted.py).

Before the point of no return a remote batch that may not hold exactly what was sent is
abandoned for a new one, never accepted: lost answers (the network's fault) never fail
the batch, though past MAX_LOST_ANSWERS each one waits; mismatches fail it after
MAX_RECREATES (folderseal/batches/send.py). After ACCEPTING was stored, accept is sent
again only when the provider shows it never arrived.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from folderseal.batches.send import MAX_LOST_ANSWERS, MAX_RECREATES
from folderseal.core.errors import NotSent, TransientError
from folderseal.core.model import BatchState
from folderseal.providers import Abandon, Remote
from tests.batch_parts import Parts, batched, build, drive
from tests.scripted import LOST, Outcome, Scripted
from tests.store_backends import batch_events

FILES = {"a.txt": b"page a\n", "b.txt": b"page b\n"}
ENTRIES = ["0001_a.txt", "0002_b.txt"]


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return build(tmp_path)


def _abandoned(parts: Parts, batch_id: str) -> list[str]:
    """The detail of each recorded abandon (a transition back to CREATED)."""
    return [e.detail or "" for e in parts.store.events(batch_id=batch_id, kind="batch.state")
            if e.to_state == "CREATED" and (e.detail or "").startswith("abandoned")]


def _waits(parts: Parts, batch_id: str) -> int:
    return sum("the next one waits" in (e.detail or "")
               for e in parts.store.events(batch_id=batch_id, kind="batch.postponed"))


def test_a_lost_upload_answer_abandons_the_remote_batch_for_a_new_one(parts: Parts) -> None:
    """The answer for a document sent to r1 was lost: it is in doubt there, so r1 (never
    started) is abandoned and deleted, r2 made, and every document sent to r2 once;
    only r2 is accepted; the abandon counts as a lost answer."""
    parts.provider.script["upload"] = [LOST]
    batch_id, _ = batched(parts, FILES)

    assert parts.machine.run_once()
    batch = parts.batch(batch_id)
    assert (batch.state, batch.remote_id, batch.attempts) == (BatchState.CREATED, "r1", 1)
    assert parts.provider.sent_to("r1") == ["0001_a.txt"]

    drive(parts)

    assert parts.batch(batch_id).state == BatchState.CLEANED
    assert parts.store.abandons(batch_id) == (1, 0)
    assert _abandoned(parts, batch_id) == [
        "abandoned r1 (answer lost): the answer for 0001_a.txt was lost; remote r2"]
    assert parts.provider.called("create") == ["", ""]
    assert parts.provider.called("delete") == ["r1", "r2"]  # r1 abandoned; r2 once done
    assert parts.provider.called("accept") == ["r2"]
    assert parts.provider.sent_to("r2") == ENTRIES


def test_a_lost_create_answer_makes_another_and_the_orphan_is_never_used(
        parts: Parts) -> None:
    parts.provider.script["create"] = [LOST]
    batch_id, _ = batched(parts, FILES)

    drive(parts)

    assert parts.batch(batch_id).state == BatchState.CLEANED
    assert parts.provider.called("upload") == ["r2"] and parts.provider.called("accept") == ["r2"]
    orphan = parts.provider.remotes["r1"]
    assert (orphan.state, orphan.documents) == (Remote.NEW, {})


def test_an_upload_whose_fate_is_unknown_waits_out_the_grace_then_is_abandoned(
        tmp_path: Path) -> None:
    """An upload noted as sent, and then failed with no answer, may arrive late: while the
    remote batch shows empty within the provider's grace the batch waits; after it, that
    remote batch is abandoned (an answer lost), never uploaded to again."""
    parts = build(tmp_path, Scripted(status_grace=30.0))
    parts.provider.script["upload"] = [TransientError("connection reset (scripted)")]
    batch_id, _ = batched(parts, FILES)
    sent_at = parts.clock()

    assert parts.machine.run_once()  # postponed after the failed upload
    assert parts.machine.run_once()  # asked within the grace: waits
    assert parts.batch(batch_id).remote_id == "r1"
    assert parts.provider.called("upload") == ["r1"]

    drive(parts)

    assert parts.batch(batch_id).state == BatchState.CLEANED
    assert parts.store.abandons(batch_id) == (1, 0)
    assert parts.provider.called("upload") == ["r1", "r2"]
    abandoned_at = next(e.at for e in parts.store.events(batch_id=batch_id, kind="batch.state")
                        if (e.detail or "").startswith("abandoned r1"))
    assert abandoned_at >= sent_at + 30.0


def test_mismatches_fail_the_batch_after_max_recreates(parts: Parts) -> None:
    """A provider that keeps showing something other than what was sent: after
    MAX_RECREATES abandons the batch fails as remote_mismatch, never accepted, and says
    nothing was (its files may be submitted afresh)."""
    mismatch: list[Outcome] = [Abandon("the provider shows other documents (scripted)",
                                       lost_answer=False) for _ in range(MAX_RECREATES + 1)]
    parts.provider.script["upload"] = mismatch
    batch_id, _ = batched(parts, FILES)

    drive(parts)

    batch = parts.batch(batch_id)
    assert (batch.state, batch.failed_step) == (BatchState.FAILED, BatchState.CREATED)
    assert batch.error_code == "remote_mismatch"
    assert "nothing was accepted" in (batch.error_message or "")
    assert "may have been" not in (batch.error_message or "")
    assert parts.store.abandons(batch_id) == (0, MAX_RECREATES)
    assert len(parts.provider.called("create")) == MAX_RECREATES + 1
    assert parts.provider.called("accept") == []
    assert sorted(p.name for p in parts.cfg.errors.glob("*.error.json")) == [
        "a.txt.error.json", "b.txt.error.json"]


def test_lost_answers_never_fail_a_batch_but_past_max_lost_answers_each_waits(
        parts: Parts) -> None:
    """Lost answers use up no limit: the batch goes through after more of them than
    MAX_RECREATES; from the MAX_LOST_ANSWERS-th on, each abandon ends the turn with a
    pause instead of going on at once."""
    lost: list[Outcome] = [Abandon("an answer was lost (scripted)", lost_answer=True)
                           for _ in range(MAX_LOST_ANSWERS + 1)]
    parts.provider.script["upload"] = lost
    batch_id, _ = batched(parts, FILES)

    assert parts.machine.run_once()
    batch = parts.batch(batch_id)
    assert (batch.state, batch.attempts) == (BatchState.CREATED, 1)
    assert parts.store.abandons(batch_id) == (MAX_LOST_ANSWERS, 0)
    assert _waits(parts, batch_id) == 1

    drive(parts)

    assert parts.batch(batch_id).state == BatchState.CLEANED
    assert parts.store.abandons(batch_id) == (MAX_LOST_ANSWERS + 1, 0)
    assert _waits(parts, batch_id) == 2
    assert len(parts.provider.called("create")) == MAX_LOST_ANSWERS + 2
    assert len(parts.provider.called("accept")) == 1


def test_each_lost_answer_past_max_lost_answers_waits_longer_than_the_last(
        parts: Parts) -> None:
    """design.md, "Abandoned remote batches": past MAX_LOST_ANSWERS each abandon for a lost
    answer is followed by the batch's backoff, which grows, and status alarms once the
    batch was postponed several times in a row: each such pause is one more attempt."""
    lost: list[Outcome] = [Abandon("an answer was lost (scripted)", lost_answer=True)
                           for _ in range(MAX_LOST_ANSWERS + 2)]
    parts.provider.script["upload"] = lost
    batch_id, _ = batched(parts, FILES)

    attempts = []
    for _ in range(3):
        assert parts.machine.run_once()
        attempts.append(parts.batch(batch_id).attempts)

    assert _waits(parts, batch_id) == 3
    assert attempts == [1, 2, 3]
    assert parts.backoff.asked == [1, 2, 3]


def test_a_lost_accept_answer_is_found_started_and_accept_is_never_sent_again(
        parts: Parts) -> None:
    parts.provider.script["accept"] = [LOST]
    batch_id, _ = batched(parts, FILES)

    assert parts.machine.run_once()
    batch = parts.batch(batch_id)
    assert (batch.state, batch.attempts) == (BatchState.ACCEPTING, 1)

    drive(parts)

    assert parts.batch(batch_id).state == BatchState.CLEANED
    assert parts.provider.called("accept") == ["r1"]
    assert ("ACCEPTING", "ACCEPTED") in batch_events(parts.store, batch_id)
    assert parts.store.abandons(batch_id) == (0, 0)


def test_an_accept_that_surely_never_left_goes_back_before_the_point_of_no_return(
        parts: Parts) -> None:
    parts.provider.script["accept"] = [NotSent("connection refused (scripted)")]
    batch_id, _ = batched(parts, FILES)

    assert parts.machine.run_once()
    batch = parts.batch(batch_id)
    assert (batch.state, batch.attempts) == (BatchState.UPLOADED, 1)
    [back] = [e for e in parts.store.events(batch_id=batch_id, kind="batch.state")
              if e.to_state == "UPLOADED" and e.from_state == "ACCEPTING"]
    assert back.detail == "accept not sent: connection refused (scripted)"

    drive(parts)

    assert parts.batch(batch_id).state == BatchState.CLEANED
    assert [(c.remote, c.outcome) for c in parts.provider.calls if c.step == "accept"] == [
        ("r1", "NotSent"), ("r1", "ok")]


def test_an_accept_the_provider_does_not_show_is_sent_again_only_after_its_grace(
        tmp_path: Path) -> None:
    """Accept failed with no answer, and the remote batch still shows it never started:
    accept is sent again, but not before the provider had its status grace to show an
    accept that did arrive."""
    parts = build(tmp_path, Scripted(status_grace=30.0))
    again: list[float] = []
    parts.provider.script["accept"] = [TransientError("timed out (scripted)"),
                                       lambda: again.append(parts.clock())]
    batch_id, _ = batched(parts, FILES)

    drive(parts)

    assert parts.batch(batch_id).state == BatchState.CLEANED
    assert parts.provider.called("accept") == ["r1", "r1"]
    accepting = next(at for to, at in parts.store.batch_transitions(batch_id)
                     if to == "ACCEPTING")
    assert again[0] >= accepting + 30.0


def test_a_remote_batch_found_started_before_accept_is_polled_never_abandoned(
        parts: Parts) -> None:
    """The provider shows the remote batch started while the store says UPLOADED (it lost
    its last writes): its files may have run, so it goes on from ACCEPTED, never
    abandoned and never accepted again."""
    def started_elsewhere() -> None:
        parts.provider.remotes["r1"].state = Remote.RUNNING

    parts.provider.script["status"] = [None, started_elsewhere]
    batch_id, _ = batched(parts, FILES)

    drive(parts)

    assert parts.batch(batch_id).state == BatchState.CLEANED
    assert ("UPLOADED", "ACCEPTED") in batch_events(parts.store, batch_id)
    assert parts.provider.called("accept") == []
    assert parts.store.abandons(batch_id) == (0, 0)
