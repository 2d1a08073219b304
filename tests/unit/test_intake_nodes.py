"""Two nodes' intakes on one inbox and one store (fleet mode): each claims into its own
folder and batches only its own claims, and the claims of a node that stopped beating
are adopted by the other and batched there. Real files in tmp_path, the in-memory store
shared by both nodes' connections, the intake stepped with explicit times."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from folderseal.core import config
from folderseal.core.model import FileState
from folderseal.intake.folder import FolderIntake
from folderseal.service.node import alive_nodes
from folderseal.store import Store
from folderseal.store.memory import MemoryStore
from tests.helpers import Layout, wait_until
from tests.intake_parts import folder_intake

SETTLE = 0.5
ALIVE = 0.5  # a node silent this long is dead (short, so that a test can wait for it)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Any]:
    """Builds the intake of one node (by name) on the shared inbox and store."""
    layout = Layout(tmp_path, folder={"watch": "polling", "settle_seconds": SETTLE,
                                      "batch_max_wait_seconds": 600})
    layout.write()
    settings = config.load(layout.config)
    shared = MemoryStore("node-a", state_dir=settings.state_dir)
    made: list[tuple[FolderIntake, Store]] = []

    def build(name: str) -> tuple[Layout, FolderIntake, Store]:
        store = shared.connect(name)
        store.register_node(f"instance-{name}", 1, time.time(), alive_seconds=ALIVE)
        intake = folder_intake(settings, store, alive_seconds=ALIVE,
                               node_alive=lambda other: other in alive_nodes(store, ALIVE))
        now = time.time()
        assert intake.attach(now)
        intake.probe.start()
        wait_until(lambda: intake.probe.outputs() is not None, 10, "the probe's first look")
        made.append((intake, store))
        return layout, intake, store

    yield build
    for intake, store in made:
        intake.stop()
        store.close()
    shared.close()


def claim(layout: Layout, intake: FolderIntake, name: str) -> str:
    """Drop ``name`` into the inbox and let ``intake`` claim it; its claim id."""
    (layout.inbox / name).write_text(f"the page {name}\n")
    now = time.time()
    intake.step(now, [name])
    intake.step(now + SETTLE, [])
    [claim_id] = [r.id for r in intake.store.own_claims("scans") if r.source_text == name]
    return claim_id


def test_each_node_claims_into_its_folder_and_batches_only_its_own(nodes: Any) -> None:
    """A node's claims wait in <work>/nodes/<node>/incoming/; another node's scan leaves
    them (and a claim there the store does not know yet) alone, and batches only its own."""
    layout, a, store_a = nodes("node-a")
    _, b, store_b = nodes("node-b")
    mine = claim(layout, a, "a.txt")
    theirs = claim(layout, b, "b.txt")
    assert (layout.work / "nodes" / "node-a" / "incoming" / mine / "a.txt").exists()
    assert (layout.work / "nodes" / "node-b" / "incoming" / theirs / "b.txt").exists()
    unknown = layout.work / "nodes" / "node-b" / "incoming" / "0000000000aa-just-made"
    unknown.mkdir()  # node-b made this claim folder a moment ago, its file comes next
    a.scan(time.time())
    a.step(time.time(), [])
    assert unknown.is_dir()
    [batch] = a.form_batches(float("inf"))
    assert [r.id for r in store_a.files_of_batch(batch)] == [mine]
    assert [r.id for r in store_b.own_claims("scans")] == [theirs]
    assert (layout.work / "nodes" / "node-b" / "incoming" / theirs / "b.txt").exists()
    [their_batch] = b.form_batches(float("inf"))
    assert [r.id for r in store_b.files_of_batch(their_batch)] == [theirs]


def test_a_silent_nodes_claims_are_adopted_and_batched_here(nodes: Any) -> None:
    """Once node-b has not beaten for ALIVE seconds, node-a's next scan takes its claims:
    the recorded ones by one store update, the unrecorded ones by moving their folders
    (the scan then records them); node-a batches both, and node-b, back, batches
    nothing and undoes nothing."""
    layout, a, store_a = nodes("node-a")
    _, b, store_b = nodes("node-b")
    recorded = claim(layout, b, "recorded.txt")
    unrecorded = layout.work / "nodes" / "node-b" / "incoming" / "0000000000bb-crash"
    unrecorded.mkdir()
    (unrecorded / "unrecorded.txt").write_text("claimed, then node-b stopped\n")
    a.scan(time.time())
    a.step(time.time(), [])  # node-b still beats: nothing changes hands
    assert store_a.own_claims("scans") == [] and unrecorded.is_dir()
    time.sleep(ALIVE + 0.1)
    store_a.heartbeat(1, 0.0, {})
    a.scan(time.time())
    a.step(time.time(), [])
    assert sorted(r.source_text for r in store_a.own_claims("scans")) == \
        ["recorded.txt", "unrecorded.txt"]
    assert not list((layout.work / "nodes" / "node-b" / "incoming").iterdir())
    assert b.form_batches(float("inf")) == []  # node-b resumes: too late, and no crash
    [batch] = a.form_batches(float("inf"))
    assert sorted(r.source_text for r in store_a.files_of_batch(batch)) == \
        ["recorded.txt", "unrecorded.txt"]
    moved = sorted(p.name for p in (layout.work / "batches" / batch).iterdir()
                   if not p.name.startswith("."))
    assert moved == ["0001_recorded.txt", "0002_unrecorded.txt"]
    got = store_a.file(recorded)
    assert got is not None and got.state == FileState.BATCHED


def test_a_claim_recorded_by_the_adopting_node_first_is_left_to_it(nodes: Any) -> None:
    """node-b claimed a file and paused before recording it; node-a took its folder over
    and recorded the claim. node-b, back, records nothing, rejects nothing and does not
    stop: it logs claims.lost."""
    layout, a, store_a = nodes("node-a")
    _, b, store_b = nodes("node-b")
    (layout.inbox / "late.txt").write_text("claimed by node-b\n")
    claim_id = b.claims.rename_in("late.txt")  # renamed in; the record comes next
    assert claim_id is not None
    time.sleep(ALIVE + 0.1)
    store_a.heartbeat(1, 0.0, {})
    a.scan(time.time())
    a.step(time.time(), [])
    assert [r.id for r in store_a.own_claims("scans")] == [claim_id]
    b.claims.register([(claim_id, "late.txt", time.time(), None)])
    assert store_b.own_claims("scans") == [] and store_b.unfinished_claims("scans") == []
    assert [e.kind for e in store_a.events(file_id=claim_id)] == ["file.claimed"]


def test_a_rejected_claim_another_node_put_into_errors_first_is_left_to_it(
        nodes: Any) -> None:
    """node-a lists its rejected claims for the errors folder; before it moves one, node-b
    (which took node-a's claims over) has failed it. node-a's errors pass logs
    claims.lost and goes on: no exception ends its errors thread (and the daemon)."""
    layout, a, store_a = nodes("node-a")
    unhashed = "0000000000cc-empty"
    store_a.add_claim(id=unhashed, folder="scans", source="empty.txt", dev=1, ino=2, size=0,
                      mtime_ns=4, sha256=None, seen_at=time.time())
    store_a.reject_claim(unhashed, "empty", "the file is empty")

    class TakenMeanwhile:
        store = store_a

        def fail(self, record: Any, _ctx: Any) -> None:
            store_a.set_file_state(record.id, FileState.REJECTED, FileState.FAILED)  # node-b
            store_a.set_file_state(record.id, FileState.REJECTED, FileState.FAILED)  # node-a

    a.probe.sink_rejected(TakenMeanwhile())  # type: ignore[arg-type]
    done = store_a.file(unhashed)
    assert done is not None and done.state == FileState.FAILED


def test_a_claim_folder_taken_over_mid_scan_is_lost_not_an_outage(nodes: Any) -> None:
    """node-b renamed one file into its claims folder and froze before the next one (past
    ALIVE); node-a took the folder over. node-b, back, claims the next file, logs
    claims.lost for the first and does not take the folder it could not sync for an
    outage of the inbox."""
    layout, a, store_a = nodes("node-a")
    _, b, store_b = nodes("node-b")
    for name in ("first.txt", "second.txt"):
        (layout.inbox / name).write_text(f"the page {name}\n")
    rename_in = b.claims.rename_in

    def frozen_before_the_second(source: str) -> str | None:
        if source == "second.txt":  # node-b "paused": node-a adopts its claims folder
            time.sleep(ALIVE + 0.1)
            store_a.heartbeat(1, 0.0, {})
            a.scan(time.time())
            a.step(time.time(), [])
        return rename_in(source)
    b.claims.rename_in = frozen_before_the_second  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        ids = b.claims.claim_all([("first.txt", None), ("second.txt", None)])
    assert None not in ids
    assert [e["file"] for e in logs if e["event"] == "claims.lost"] == [ids[0]]
    assert [r.source_text for r in store_a.own_claims("scans")] == ["first.txt"]
    assert [r.source_text for r in store_b.own_claims("scans")] == ["second.txt"]
