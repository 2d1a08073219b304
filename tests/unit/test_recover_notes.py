"""``folderseal recover`` and the provider's per-document answers: the manifest's notes
go back into the store, and the provider's ``holds_upload`` (which reads them) decides
between ACCEPTING (the upload is complete) and a new remote batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from folderseal import config
from folderseal.model import JobState
from folderseal.recover import _Folder
from folderseal.store import Store
from tests.helpers import Layout
from tests.unit.test_manager import Scripted, _daemon


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path)
    layout.write()
    return layout


def _stop_at(layout: Layout, scripted: dict[str, object]) -> tuple[str, list[str], Scripted]:
    """Run a batch until the scripted fault holds it back; then lose the store."""
    daemon, provider = _daemon(layout)
    for name, value in scripted.items():
        setattr(provider, name, value)
    try:
        (layout.inbox / "a.txt").write_text("a")
        (layout.inbox / "b.txt").write_text("b")
        intake = daemon.intakes["scans"]
        ids = [intake.claim_now(n)[0] for n in ("a.txt", "b.txt")]
        [job_id] = intake.form_batches(float("inf"))
        store = daemon.store
        assert store is not None
        daemon.drain(lambda: store.job(job_id).attempts > 0, 30)
    finally:
        daemon.close()
    for path in layout.state.glob("folderseal.sqlite*"):
        path.unlink()
    provider.status_fails_from = None
    provider.lose_after = None
    return job_id, [i for i in ids if i], provider


def _recover(layout: Layout, provider: Scripted, job_id: str) -> tuple[str, Store]:
    settings = config.load(layout.config)
    store = Store.open(settings.state_dir, settings.node_name)
    folder = _Folder("scans", settings.folders["scans"], settings, store, provider)
    return folder.batch(job_id), store


def test_a_complete_upload_is_recorded_as_accepting_with_its_notes(layout: Layout) -> None:
    job_id, ids, provider = _stop_at(layout, {"status_fails_from": 2})  # stopped UPLOADED
    outcome, store = _recover(layout, provider, job_id)
    try:
        assert "ACCEPTING" in outcome
        job = store.job(job_id)
        assert job is not None and job.state == JobState.ACCEPTING and job.remote_id == "r1"
        notes = store.remote_documents(job_id)
        assert set(notes) == set(ids)
        assert all(n["batch"] == "r1" and n["id"] for n in notes.values())
        assert provider.deleted == []
    finally:
        store.close()


def test_an_upload_with_a_send_in_doubt_gets_a_new_remote_batch(layout: Layout) -> None:
    job_id, ids, provider = _stop_at(layout, {"lose_after": 2})  # b's answer lost
    outcome, store = _recover(layout, provider, job_id)
    try:
        assert "BATCHED" in outcome
        job = store.job(job_id)
        assert job is not None and job.state == JobState.BATCHED
        assert provider.deleted == ["r1"]
        assert store.remote_documents(job_id)[ids[1]]["id"] is None  # kept, as it was
    finally:
        store.close()
