"""The state machine (folderseal.batches.machine) against a scripted provider and a real store.

The provider keeps a "remote batch" per create and answers each document it sends
through the ledger, like a provider that uploads file by file (Clevver); it signs like
the local provider (so files are really delivered), and each test scripts what goes
wrong: an answer lost, a checksum that does not match, results still pending, a remote
batch the provider lost after start.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from folderseal.batches.send import MAX_LOST_ANSWERS, MAX_RECREATES
from folderseal.core import config
from folderseal.core.configbase import ProviderSection
from folderseal.core.errors import ProviderError
from folderseal.core.model import BatchState, DocumentResult, FileState
from folderseal.providers import (
    Abandon,
    BatchView,
    Ledger,
    Remote,
    RemoteDocument,
    RemoteStatus,
    Steps,
)
from folderseal.providers.local.provider import LocalProvider
from folderseal.service.daemon import Daemon
from folderseal.store import Store
from tests.helpers import Layout, error_records, sidecars
from tests.provider_parts import Built


class ScriptedSigner(LocalProvider):
    """A remote provider that uploads document by document; signs like the local one."""

    steps = Steps(remote=True, irrevocable=True, outcome="stored")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.sent: list[tuple[str, str]] = []       # (remote, entry)
        self.accepted: list[str] = []
        self.abandon: list[bool] = []               # next uploads raise Abandon(lost_answer)
        self.lose_after: int | None = None          # lose the answer of the n-th send
        self.reject: set[str] = set()               # entries the upload rejects
        self.gone = False                           # the provider lost the started batch
        self.failed = False                         # … or says it failed
        self.salvaged: set[str] = set()             # entries salvage can still prove
        self.pending: dict[str, int] = {}           # entry → downloads still pending
        self.state_at_accept: list[str] = []
        self.store: Store | None = None             # the daemon's, to read the batch at accept
        self.opened: list[bytes] = []
        self.status_fails_from: int | None = None   # the n-th status call on fails
        self.status_calls = 0
        self.refuse_accept = False                  # accept answers a permanent refusal
        self.accept_unanswered = False              # accept fails before it is sent

    def create(self, batch: BatchView, ledger: Ledger) -> str:
        self.created.append(f"r{len(self.created) + 1}")
        return self.created[-1]

    def delete(self, batch: BatchView, remote_id: str) -> None:
        self.deleted.append(remote_id)

    def upload(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        if self.abandon:
            raise Abandon("scripted", lost_answer=self.abandon.pop(0))
        for document in batch.documents:
            if document.remote is not None and document.remote.batch == remote_id:
                if document.remote.in_doubt:
                    raise Abandon(f"the answer for {document.entry} was lost", lost_answer=True)
                continue  # answered already: never sent twice
            if document.entry in self.reject:
                ledger.reject(document, "checksum_mismatch", "scripted mismatch")
                continue
            assert batch.open_document is not None
            fd = batch.open_document(document)
            try:
                self.opened.append(os.pread(fd, 1 << 20, 0))
            finally:
                os.close(fd)
            ledger.sending(document, remote_id)
            self.sent.append((remote_id, document.entry))
            if self.lose_after is not None and len(self.sent) == self.lose_after:
                from folderseal.core.errors import TransientError
                raise TransientError("the answer was lost (scripted)")
            ledger.answered(document, RemoteDocument(batch=remote_id, id=f"a{len(self.sent)}",
                                                     checksum=document.sha256))

    def holds_upload(self, batch: BatchView, status: RemoteStatus) -> bool:
        return status.state not in (Remote.GONE, Remote.FAILED) and all(
            d.remote is not None and d.remote.batch == status.batch and not d.remote.in_doubt
            and d.remote.checksum == d.sha256 for d in batch.documents)

    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus:
        self.status_calls += 1
        if self.status_fails_from is not None and self.status_calls >= self.status_fails_from:
            from folderseal.core.errors import TransientError
            raise TransientError("the provider does not answer (scripted)")
        if remote_id not in self.accepted:
            return RemoteStatus(Remote.NEW, detail=remote_id)
        if self.gone:
            return RemoteStatus(Remote.GONE, detail="scripted")
        if self.failed:
            return RemoteStatus(Remote.FAILED, detail=remote_id, progress=100.0)
        found = super().status(batch, remote_id)
        return RemoteStatus(found.state, detail=remote_id, progress=42.5)

    def accept(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        if self.accept_unanswered:
            from folderseal.core.errors import TransientError
            raise TransientError("no connection (scripted)")
        assert self.store is not None
        current = self.store.batch(batch.id)
        assert current is not None
        self.state_at_accept.append(current.state)
        self.accepted.append(remote_id)
        if self.refuse_accept:
            raise ProviderError("http_400", "the provider answered HTTP 400: bad batch",
                                provider=self.name, operation="accept", batch=batch.id)
        super().accept(batch, remote_id, ledger)

    def download(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        results = []
        for result in super().download(batch, remote_id):
            if self.pending.get(result.entry, 0) > 0:
                self.pending[result.entry] -= 1
                result = DocumentResult(entry=result.entry, pending=True, error_code="no_receipt",
                                        error_message="no txid yet (scripted)")
            results.append(result)
        return results

    def salvage(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        return [r for r in super().download(batch, remote_id) if r.entry in self.salvaged]


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path)
    layout.write()
    return layout


def _daemon(layout: Layout,
            make: Callable[[str, ProviderSection, Path], ScriptedSigner] = ScriptedSigner
            ) -> tuple[Daemon, ScriptedSigner]:
    """A prepared daemon whose provider ``make`` built (a new :class:`ScriptedSigner`), with the
    daemon's store to read."""
    built = Built(make)
    daemon = Daemon(config.load(layout.config), delay=lambda attempts: 0.0,
                    build_provider=built)
    daemon.prepare()
    provider = built.only()
    provider.store = daemon.store
    return daemon, provider


def _run(daemon: Daemon, layout: Layout, names: tuple[str, ...] = ("a.txt", "b.txt"),
         timeout: float = 60) -> tuple[str, list[str]]:
    for name in names:
        (layout.inbox / name).write_text(f"content of {name}")
    intake = daemon.intakes["scans"]
    ids = [intake.claim_now(name)[0] for name in names]
    [batch_id] = intake.form_batches(float("inf"))
    assert daemon.store is not None
    store = daemon.store
    final = (BatchState.CLEANED, BatchState.FAILED)
    daemon.drain(lambda: store.batch(batch_id).state in final and store.batch(batch_id)
                 .next_attempt_at is None, timeout)
    return batch_id, [i for i in ids if i]


def _delivered(layout: Layout) -> set[str]:
    return {json.loads(p.read_text())["source"] for p in sidecars(layout.outbox)}


def _errors(layout: Layout) -> dict[str, dict[str, str]]:
    found = {}
    for path in error_records(layout.errors):
        record = json.loads(path.read_text())
        found[record["source"]] = record["error"]
    return found


def test_accepting_is_stored_before_accept_and_each_document_is_sent_once(layout: Layout
                                                                           ) -> None:
    """Every document is sent once, through the claimed file; its answer is in the store
    and in the manifest; ACCEPTING is stored before accept; the progress is kept."""
    daemon, provider = _daemon(layout)
    try:
        batch_id, ids = _run(daemon, layout)
        store = daemon.store
        assert store is not None
        assert store.batch(batch_id).state == BatchState.CLEANED
        assert provider.state_at_accept == [BatchState.ACCEPTING]
        assert sorted(provider.sent) == [("r1", "0001_a.txt"), ("r1", "0002_b.txt")]
        assert sorted(provider.opened) == [b"content of a.txt", b"content of b.txt"]
        notes = store.remote_documents(batch_id)
        assert {n["batch"] for n in notes.values()} == {"r1"}
        assert all(n["id"] and n["checksum"] == store.file(i).sha256 for i, n in notes.items())
        assert store.progress(batch_id) == 42.5
    finally:
        daemon.close()
    assert _delivered(layout) == {"a.txt", "b.txt"}


def test_the_manifest_keeps_each_send_and_answer_the_moment_it_arrives(layout: Layout) -> None:
    """A send whose answer was lost leaves the document in doubt in the store and in the
    manifest (sending, not answered); the resumed upload abandons that remote batch as a
    lost answer and the files go to a new one, each sent there once."""
    daemon, provider = _daemon(layout)
    provider.lose_after = 2  # the second document's answer is lost
    try:
        batch_id, _ = _run(daemon, layout)
        store = daemon.store
        assert store is not None
        assert store.batch(batch_id).state == BatchState.CLEANED
        assert store.abandons(batch_id) == (1, 0)
        assert provider.created == ["r1", "r2"] and provider.deleted[0] == "r1"
        assert provider.accepted == ["r2"]
        assert sorted(e for r, e in provider.sent if r == "r2") == ["0001_a.txt", "0002_b.txt"]
    finally:
        daemon.close()
    assert _delivered(layout) == {"a.txt", "b.txt"}


def test_the_manifest_holds_the_notes_in_order(layout: Layout) -> None:
    """note_document appends: an intent (id null), then the answer, per document."""
    daemon, provider = _daemon(layout)
    provider.lose_after = 2
    try:
        (layout.inbox / "a.txt").write_text("a")
        (layout.inbox / "b.txt").write_text("b")
        intake = daemon.intakes["scans"]
        ids = [intake.claim_now(n)[0] for n in ("a.txt", "b.txt")]
        [batch_id] = intake.form_batches(float("inf"))
        store = daemon.store
        assert store is not None
        daemon.drain(lambda: store.batch(batch_id).attempts > 0, 30)  # the lost answer
        work = daemon.intakes["scans"].work
        notes = work.manifests.json(batch_id)["documents"]  # type: ignore[index]
        assert [(n["file"], n["batch"], n["id"] is None) for n in notes] == [
            (ids[0], "r1", True), (ids[0], "r1", False), (ids[1], "r1", True)]
        assert work.manifests.document_notes(batch_id)[ids[1]]["id"] is None
        assert store.remote_documents(batch_id)[ids[1]]["id"] is None
    finally:
        daemon.close()


def test_lost_answers_do_not_use_up_the_limit(layout: Layout) -> None:
    """More lost-answer abandons than MAX_RECREATES: the batch still goes through."""
    daemon, provider = _daemon(layout)
    provider.abandon = [True] * (MAX_RECREATES + 2)
    try:
        batch_id, _ = _run(daemon, layout)
        assert daemon.store is not None
        assert daemon.store.batch(batch_id).state == BatchState.CLEANED
        assert daemon.store.abandons(batch_id) == (MAX_RECREATES + 2, 0)
    finally:
        daemon.close()
    assert len(provider.created) == MAX_RECREATES + 3
    assert _delivered(layout) == {"a.txt", "b.txt"}


def test_mismatches_fail_the_batch_after_max_recreates(layout: Layout) -> None:
    """A provider that keeps showing something other than what was sent: after
    MAX_RECREATES abandons the batch fails (remote_mismatch), never accepted."""
    daemon, provider = _daemon(layout)
    provider.abandon = [False] * 50
    try:
        batch_id, _ = _run(daemon, layout)
        assert daemon.store is not None
        batch = daemon.store.batch(batch_id)
        assert batch.state == BatchState.FAILED and batch.error_code == "remote_mismatch"
        assert daemon.store.abandons(batch_id) == (0, MAX_RECREATES)
    finally:
        daemon.close()
    assert len(provider.created) == MAX_RECREATES + 1 and provider.accepted == []
    assert {e["code"] for e in _errors(layout).values()} == {"remote_mismatch"}


def test_many_lost_answers_slow_a_batch_down_but_never_fail_it(layout: Layout) -> None:
    """Past MAX_LOST_ANSWERS, each abandon for a lost answer is followed by the batch's
    backoff (the network's fault: the files wait, they do not fail)."""
    daemon, provider = _daemon(layout)
    provider.abandon = [True] * (MAX_LOST_ANSWERS + 3)
    try:
        batch_id, _ = _run(daemon, layout)
        assert daemon.store is not None
        batch = daemon.store.batch(batch_id)
        assert batch.state == BatchState.CLEANED
        assert daemon.store.abandons(batch_id) == (MAX_LOST_ANSWERS + 3, 0)
        postponed = sqlite3.connect(daemon.settings.database).execute(
            "SELECT count(*) FROM events WHERE batch_id = ? AND kind = 'batch.postponed' "
            "AND detail LIKE '%the next one waits%'", (batch_id,)).fetchone()[0]
        assert postponed == 4  # the 20th abandon for a lost answer and each after it
    finally:
        daemon.close()
    assert len(provider.created) == MAX_LOST_ANSWERS + 4 and len(provider.accepted) == 1
    assert _delivered(layout) == {"a.txt", "b.txt"}


def test_a_rejected_document_goes_to_errors_and_the_rest_is_delivered(layout: Layout) -> None:
    daemon, provider = _daemon(layout)
    provider.reject = {"0002_b.txt"}
    try:
        batch_id, ids = _run(daemon, layout)
        assert daemon.store is not None
        assert daemon.store.batch(batch_id).state == BatchState.CLEANED
        assert daemon.store.file(ids[1]).state == FileState.FAILED
    finally:
        daemon.close()
    assert _delivered(layout) == {"a.txt"}
    assert _errors(layout)["b.txt"]["code"] == "checksum_mismatch"
    assert ("r1", "0002_b.txt") not in provider.sent


def test_a_remote_batch_holding_a_rejected_files_copy_is_never_started(
        layout: Layout) -> None:
    """A crash came between rejecting a file whose wrong copy r1 took and abandoning r1:
    r1 holds every other file, but is abandoned, never started, so the copy is never
    stored."""
    daemon, provider = _daemon(layout)
    provider.status_fails_from = 2  # stops after the upload: both answered for r1
    try:
        for name in ("a.txt", "b.txt"):
            (layout.inbox / name).write_text(f"content of {name}")
        intake = daemon.intakes["scans"]
        ids = [intake.claim_now(name)[0] for name in ("a.txt", "b.txt")]
        [batch_id] = intake.form_batches(float("inf"))
        store = daemon.store
        assert store is not None
        daemon.drain(lambda: store.batch(batch_id).attempts > 0, 30)
        assert store.batch(batch_id).state == BatchState.UPLOADED
        store.set_file_result(ids[0] or "", FileState.BATCHED, DocumentResult(
            entry="0001_a.txt", error_code="checksum_mismatch", error_message="scripted"),
            batch_id=batch_id)
        provider.status_fails_from = None
        daemon.drain(lambda: store.batch(batch_id).state == BatchState.CLEANED, 30)
        assert store.batch(batch_id).state == BatchState.CLEANED
    finally:
        daemon.close()
    assert provider.created == ["r1", "r2"] and provider.accepted == ["r2"]
    assert _delivered(layout) == {"b.txt"}
    assert _errors(layout)["a.txt"]["code"] == "checksum_mismatch"


def test_pending_results_are_asked_again_until_they_come(layout: Layout) -> None:
    daemon, provider = _daemon(layout)
    provider.pending = {"0001_a.txt": 2}
    try:
        batch_id, _ = _run(daemon, layout)
        assert daemon.store is not None
        assert daemon.store.batch(batch_id).state == BatchState.CLEANED
    finally:
        daemon.close()
    assert provider.pending == {"0001_a.txt": 0}
    assert _delivered(layout) == {"a.txt", "b.txt"}


def test_a_result_pending_past_max_wait_fails_with_its_own_reason(layout: Layout) -> None:
    daemon, provider = _daemon(layout)
    provider.max_wait = 0.5
    provider.pending = {"0001_a.txt": 1000}
    try:
        batch_id, _ = _run(daemon, layout)
        assert daemon.store is not None
        assert daemon.store.batch(batch_id).state == BatchState.CLEANED
    finally:
        daemon.close()
    assert _delivered(layout) == {"b.txt"}
    assert _errors(layout)["a.txt"] == {**_errors(layout)["a.txt"], "code": "no_receipt",
                                        "message": "no txid yet (scripted)"}


def test_a_failed_remote_batch_is_downloaded_like_a_closed_one(layout: Layout) -> None:
    daemon, provider = _daemon(layout)
    provider.failed = True
    try:
        batch_id, _ = _run(daemon, layout)
        assert daemon.store is not None
        assert daemon.store.batch(batch_id).state == BatchState.CLEANED
    finally:
        daemon.close()
    assert _delivered(layout) == {"a.txt", "b.txt"}  # what its download proves


def test_after_gone_salvage_delivers_what_it_proves_and_the_rest_fails(layout: Layout) -> None:
    """The provider lost the started batch: the files salvage proves are delivered, the
    others fail as "may have been stored", and retry refuses to send them again."""
    daemon, provider = _daemon(layout)
    provider.gone = True
    provider.salvaged = {"0001_a.txt"}
    try:
        batch_id, ids = _run(daemon, layout)
        assert daemon.store is not None
        assert daemon.store.batch(batch_id).state == BatchState.CLEANED
    finally:
        daemon.close()
    assert _delivered(layout) == {"a.txt"}
    error = _errors(layout)["b.txt"]
    assert error["code"] == "lost_after_accept"
    assert "may have been stored: check with the provider" in error["message"]


def test_after_gone_with_nothing_salvaged_the_batch_fails(layout: Layout) -> None:
    daemon, provider = _daemon(layout)
    provider.gone = True
    try:
        batch_id, _ = _run(daemon, layout)
        assert daemon.store is not None
        batch = daemon.store.batch(batch_id)
        assert batch.state == BatchState.FAILED and batch.error_code == "lost_after_accept"
    finally:
        daemon.close()
    assert _delivered(layout) == set()
    assert {e["code"] for e in _errors(layout).values()} == {"lost_after_accept"}


def test_a_refusal_past_the_point_of_no_return_says_the_files_may_have_run(
        layout: Layout) -> None:
    """A permanent refusal of accept (sent after ACCEPTING was stored) fails the batch,
    and its files' records say they may have run (been stored) and that retry asks the same
    batch again, whatever the provider's own words were."""
    daemon, provider = _daemon(layout)
    provider.refuse_accept = True
    try:
        batch_id, _ = _run(daemon, layout)
        assert daemon.store is not None
        assert daemon.store.batch(batch_id).state == BatchState.FAILED
    finally:
        daemon.close()
    for error in _errors(layout).values():
        assert error["code"] == "http_400"
        assert "bad batch" in error["message"]
        assert f"may have been {provider.steps.outcome}" in error["message"]
        assert "asks the same batch again" in error["message"]


def test_a_store_behind_its_manifest_judges_the_upload_by_the_manifests_answers(
        layout: Layout) -> None:
    """The store lost its last writes (back to BATCHED, no answers), while the manifest
    kept the remote batch and every answer: that batch holds the upload (its start may
    have been sent, not shown yet), so it goes on to ACCEPTING and is accepted; no file
    is sent to another remote batch."""
    daemon, provider = _daemon(layout)
    provider.accept_unanswered = True
    try:
        for name in ("a.txt", "b.txt"):
            (layout.inbox / name).write_text(f"content of {name}")
        intake = daemon.intakes["scans"]
        for name in ("a.txt", "b.txt"):
            intake.claim_now(name)
        [batch_id] = intake.form_batches(float("inf"))
        assert daemon.store is not None
        store = daemon.store
        daemon.drain(lambda: store.batch(batch_id).state == BatchState.ACCEPTING, 60)
        with sqlite3.connect(daemon.settings.database) as db:  # the rolled-back store
            db.execute("UPDATE batches SET state = 'BATCHED', remote_id = NULL, "
                       "next_attempt_at = 0, claimed_by = NULL, lease_until = NULL "
                       "WHERE id = ?", (batch_id,))
            db.execute("UPDATE files SET remote_document = NULL WHERE batch_id = ?",
                       (batch_id,))
        provider.accept_unanswered = False
        daemon.drain(lambda: store.batch(batch_id).state == BatchState.CLEANED, 60)
    finally:
        daemon.close()
    assert provider.created == ["r1"] and provider.accepted == ["r1"]
    assert sorted(provider.sent) == [("r1", "0001_a.txt"), ("r1", "0002_b.txt")]
    assert _delivered(layout) == {"a.txt", "b.txt"}
