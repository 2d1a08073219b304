"""``folderseal recover`` and the provider's per-document answers: the manifest's notes
go back into the store, and the provider's ``holds_upload`` (which reads them) decides
between ACCEPTING (the upload is complete) and a new remote batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from folderseal.core import config
from folderseal.core.model import BatchState
from folderseal.service.recover import _Folder
from folderseal.store import Store
from folderseal.store.sqlite import SqliteStore
from folderseal.work import WorkFolder
from tests.helpers import Layout, error_records
from tests.unit.test_machine import ScriptedSigner, _daemon


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path)
    layout.write()
    return layout


def _stop_at(layout: Layout, scripted: dict[str, object]) -> tuple[str, list[str], ScriptedSigner]:
    """Run a batch until the scripted fault holds it back; then lose the store."""
    daemon, provider = _daemon(layout)
    for name, value in scripted.items():
        setattr(provider, name, value)
    try:
        (layout.inbox / "a.txt").write_text("a")
        (layout.inbox / "b.txt").write_text("b")
        intake = daemon.intakes["scans"]
        ids = [intake.claim_now(n)[0] for n in ("a.txt", "b.txt")]
        [batch_id] = intake.form_batches(float("inf"))
        store = daemon.store
        assert store is not None
        daemon.drain(lambda: store.batch(batch_id).attempts > 0, 30)
    finally:
        daemon.close()
    for path in layout.state.glob("folderseal.sqlite*"):
        path.unlink()
    provider.status_fails_from = None
    provider.lose_after = None
    return batch_id, [i for i in ids if i], provider


def _recover(layout: Layout, provider: ScriptedSigner, batch_id: str) -> tuple[str, Store]:
    settings = config.load(layout.config)
    store = SqliteStore.open(settings.state_dir, settings.node_name)
    folder = _Folder("scans", settings.folders["scans"], settings, store, provider)
    return folder.batch(batch_id), store


def test_a_complete_upload_is_recorded_as_accepting_with_its_notes(layout: Layout) -> None:
    batch_id, ids, provider = _stop_at(layout, {"status_fails_from": 2})  # stopped UPLOADED
    outcome, store = _recover(layout, provider, batch_id)
    try:
        assert "ACCEPTING" in outcome
        batch = store.batch(batch_id)
        assert batch is not None and batch.state == BatchState.ACCEPTING and batch.remote_id == "r1"
        notes = store.remote_documents(batch_id)
        assert set(notes) == set(ids)
        assert all(n["batch"] == "r1" and n["id"] for n in notes.values())
        assert provider.deleted == []
    finally:
        store.close()


def test_an_upload_with_a_send_in_doubt_gets_a_new_remote_batch(layout: Layout) -> None:
    batch_id, ids, provider = _stop_at(layout, {"lose_after": 2})  # b's answer lost
    outcome, store = _recover(layout, provider, batch_id)
    try:
        assert "BATCHED" in outcome
        batch = store.batch(batch_id)
        assert batch is not None and batch.state == BatchState.BATCHED
        assert provider.deleted == ["r1"]
        assert store.remote_documents(batch_id)[ids[1]]["id"] is None  # kept, as it was
    finally:
        store.close()


def _run_on(layout: Layout, provider: ScriptedSigner, store: Store, batch_id: str) -> None:
    """Start the daemon on the recovered store (as ``recover`` leaves it: the work folder
    now its own) with the same provider, and let it finish the batch."""
    settings = config.load(layout.config)
    WorkFolder(settings.folders["scans"].work_folder, "scans", "test-node").marker.write_text(
        f"{store.store_id}\n")
    store.close()
    daemon, _ = _daemon(layout, lambda _name, _cfg, _state_dir: provider)
    try:
        final = daemon.store
        assert final is not None
        daemon.drain(lambda: final.batch(batch_id).state in (BatchState.CLEANED, BatchState.FAILED)
                     and final.batch(batch_id).next_attempt_at is None, 30)
        batch = final.batch(batch_id)
        assert batch is not None and batch.state in (BatchState.CLEANED, BatchState.FAILED)
    finally:
        daemon.close()


def _error_codes(layout: Layout) -> dict[str, str]:
    return {json.loads(p.read_text())["source"]: json.loads(p.read_text())["error"]["code"]
            for p in error_records(layout.errors)}


def test_a_rejected_file_does_not_undo_a_complete_upload(layout: Layout) -> None:
    """The manifest marks a rejected: it goes to errors with its reason, and the rest,
    all answered for r1 (which may have been started, not yet shown), is ACCEPTING, never
    abandoned for a second remote batch that would store the files twice."""
    batch_id, ids, provider = _stop_at(layout, {"status_fails_from": 2, "reject": {"0001_a.txt"}})
    manifests = WorkFolder(layout.work, "scans", "test-node").manifests
    assert set(manifests.rejected(batch_id)) == {ids[0]}
    outcome, store = _recover(layout, provider, batch_id)
    assert "ACCEPTING" in outcome and "1 rejected" in outcome
    batch = store.batch(batch_id)
    assert batch is not None and batch.state == BatchState.ACCEPTING and batch.remote_id == "r1"
    assert provider.deleted == []
    assert _error_codes(layout) == {"a.txt": "checksum_mismatch"}
    _run_on(layout, provider, store, batch_id)
    assert provider.created == ["r1"] and provider.accepted == ["r1"]
    assert provider.sent == [("r1", "0002_b.txt")]  # b went up once, to one batch
    assert _error_codes(layout) == {"a.txt": "checksum_mismatch"}


def test_a_remote_batch_holding_a_rejected_files_copy_is_abandoned(layout: Layout) -> None:
    """r1 took a's wrong copy, then a was rejected (the store lost before r1 was
    abandoned): r1 is never started, so it is abandoned, the rest batched anew."""
    batch_id, ids, provider = _stop_at(layout, {"status_fails_from": 2})
    WorkFolder(layout.work, "scans", "test-node").manifests.note_rejected(
        batch_id, ids[0], "checksum_mismatch", "scripted")
    outcome, store = _recover(layout, provider, batch_id)
    try:
        assert "BATCHED" in outcome and provider.deleted == ["r1"]
        assert _error_codes(layout) == {"a.txt": "checksum_mismatch"}
    finally:
        store.close()


def test_a_lost_remote_batch_with_every_file_answered_is_salvaged(layout: Layout) -> None:
    """Clevver no longer knows r1, to which every file was sent (its start may have been
    sent): ACCEPTING, so the daemon's salvage step decides each file; not all to errors
    at once."""
    batch_id, ids, provider = _stop_at(layout, {"status_fails_from": 2})
    provider.accepted, provider.gone = ["r1"], True
    outcome, store = _recover(layout, provider, batch_id)
    assert "ACCEPTING" in outcome
    batch = store.batch(batch_id)
    assert batch is not None and batch.state == BatchState.ACCEPTING and batch.remote_id == "r1"
    assert error_records(layout.errors) == []
    _run_on(layout, provider, store, batch_id)
    assert provider.created == ["r1"]
    assert _error_codes(layout) == {"a.txt": "lost_after_accept", "b.txt": "lost_after_accept"}
