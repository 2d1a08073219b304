"""The local provider under faults, in process: real store, real pool, real signatures.

A file that crashes or hangs its worker is retried alone and then fails with a reason;
the rest of its batch is sealed. A file swapped in the work folder is never sealed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from folderseal.core import config
from folderseal.core.configbase import ProviderSection
from folderseal.core.model import FileState
from folderseal.providers import BatchView, Document, Remote, build
from folderseal.providers.local.config import LocalProviderConfig
from folderseal.providers.local.provider import LocalProvider
from folderseal.service.daemon import Daemon
from tests.helpers import Layout, check_sidecar, error_records
from tests.pdfs import make_pdf


class CrashyProvider(LocalProvider):
    worker_handler = "tests.crashy_worker:sign"


def _crashy(name: str, cfg: ProviderSection, state_dir: Path) -> CrashyProvider:
    assert isinstance(cfg, LocalProviderConfig)
    return CrashyProvider(name, cfg, state_dir)


def _daemon(layout: Layout, crashy: bool = True) -> Daemon:
    daemon = Daemon(config.load(layout.config), delay=lambda attempts: 0.0,
                    build_provider=_crashy if crashy else build)
    daemon.prepare()
    return daemon


def _claim_and_batch(daemon: Daemon, names: list[str]) -> dict[str, str]:
    intake = daemon.intakes["scans"]
    ids = {}
    for name in names:
        claim_id, reason = intake.claim_now(name)
        assert claim_id is not None, reason
        ids[name] = claim_id
    assert intake.form_batches(float("inf"))
    return ids


def _run_until_done(daemon: Daemon, ids: dict[str, str]) -> None:
    assert daemon.store is not None
    store = daemon.store
    daemon.drain(lambda: all(store.file(i).state in (FileState.DONE, FileState.FAILED)
                             for i in ids.values()), timeout=120)


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    # Room for a busy machine: a worker's first file also imports the signing library.
    yield _layout(tmp_path, sign_timeout=20.0)


def _layout(tmp_path: Path, sign_timeout: float) -> Layout:
    layout = Layout(tmp_path, provider={"sign_timeout_seconds": sign_timeout,
                                        "sign_attempts": 3})
    layout.write()
    return layout


def _drop(layout: Layout, names: list[str]) -> None:
    for name in names:
        data = make_pdf(None, text=name) if name.endswith(".pdf") else name.encode() * 100
        (layout.inbox / name).write_bytes(data)


def test_a_file_that_crashes_its_worker_fails_alone(layout: Layout) -> None:
    """A file that kills its worker is retried alone up to sign_attempts, then fails with
    a reason; the other files of its batch are sealed."""
    names = ["a.pdf", "crash.pdf", "b.txt", "c.pdf"]
    _drop(layout, names)
    daemon = _daemon(layout)
    try:
        ids = _claim_and_batch(daemon, names)
        _run_until_done(daemon, ids)
        assert daemon.store is not None
        crashed = daemon.store.file(ids["crash.pdf"])
        assert crashed is not None and crashed.state == FileState.FAILED
        assert crashed.error_code == "sign_crashed"
        assert crashed.attempts == 3
        assert "3 times" in (crashed.error_message or "")
        for name in ("a.pdf", "b.txt", "c.pdf"):
            check_sidecar(layout.outbox / f"{name}.json", layout)
        record = json.loads(error_records(layout.errors)[0].read_text())
        assert record["source"] == "crash.pdf" and record["error"]["attempts"] == 3
        assert (layout.errors / "crash.pdf").exists()
    finally:
        daemon.close()


def test_a_worker_that_dies_after_saving_a_result_is_not_signed_over(layout: Layout) -> None:
    """A worker that dies after it saved a file's result, before it answered: the file
    is not signed again over the output its saved result names (that made publishing
    fail it as output_changed); it is delivered with the one signature made."""
    names = ["saved.pdf", "other.txt"]
    _drop(layout, names)
    daemon = _daemon(layout)
    try:
        ids = _claim_and_batch(daemon, names)
        _run_until_done(daemon, ids)
        assert daemon.store is not None
        done = daemon.store.file(ids["saved.pdf"])
        assert done is not None and done.state == FileState.DONE, done
        assert done.attempts == 1
        for name in names:
            check_sidecar(layout.outbox / f"{name}.json", layout)
    finally:
        daemon.close()


def test_a_file_that_hangs_is_stopped_and_fails_alone(tmp_path: Path) -> None:
    """A file that hangs its worker is stopped after sign_timeout_seconds, retried alone,
    then fails saying it took too long; the other file is sealed."""
    layout = _layout(tmp_path, sign_timeout=2.0)
    names = ["hang.txt", "fine.txt"]
    _drop(layout, names)
    daemon = _daemon(layout)
    try:
        ids = _claim_and_batch(daemon, names)
        _run_until_done(daemon, ids)
        assert daemon.store is not None
        hung = daemon.store.file(ids["hang.txt"])
        assert hung is not None and hung.state == FileState.FAILED
        assert hung.error_code == "sign_crashed" and "longer than" in (hung.error_message or "")
        check_sidecar(layout.outbox / "fine.txt.json", layout)
    finally:
        daemon.close()


def test_a_file_that_crashed_once_is_sealed_on_its_retry_alone(layout: Layout) -> None:
    """A file whose first attempt crashed is retried alone and sealed; two attempts counted."""
    names = ["flaky.pdf", "other.pdf"]
    _drop(layout, names)
    daemon = _daemon(layout)
    try:
        ids = _claim_and_batch(daemon, names)
        _run_until_done(daemon, ids)
        assert daemon.store is not None
        flaky = daemon.store.file(ids["flaky.pdf"])
        assert flaky is not None and flaky.state == FileState.DONE and flaky.attempts == 2
        check_sidecar(layout.outbox / "flaky.pdf.json", layout)
        assert error_records(layout.errors) == []
    finally:
        daemon.close()


@pytest.mark.parametrize("swap", ["symlink", "other file"])
def test_a_file_swapped_in_the_work_folder_is_never_sealed(layout: Layout, swap: str) -> None:
    """A batched file replaced in the work folder (by a symlink or another file) fails as
    planted; what was put there is not sealed or published, and the rest is sealed."""
    secret = layout.root / "secret.txt"
    secret.write_text("must never be sealed")
    names = ["victim.txt", "good.txt"]
    _drop(layout, names)
    daemon = _daemon(layout, crashy=False)
    try:
        ids = _claim_and_batch(daemon, names)
        assert daemon.store is not None
        victim = daemon.store.file(ids["victim.txt"])
        assert victim is not None and victim.batch_id and victim.entry
        path = layout.work / "batches" / victim.batch_id / victim.entry
        path.unlink()
        if swap == "symlink":
            path.symlink_to(secret)
        else:
            path.write_text("planted content")
        _run_until_done(daemon, ids)
        victim = daemon.store.file(ids["victim.txt"])
        assert victim is not None and victim.state == FileState.FAILED
        # A new file may even get the freed inode number back; then its size or content
        # gives it away. Either way it is refused.
        assert victim.error_code in ("planted", "input_changed"), victim.error_message
        assert not (layout.outbox / "victim.txt").exists()
        assert not any("must never" in p.read_text(errors="replace")
                       for p in layout.outbox.rglob("*") if p.is_file())
        check_sidecar(layout.outbox / "good.txt.json", layout)
        assert secret.read_text() == "must never be sealed" and not secret.is_symlink()
        assert os.path.lexists(layout.errors / "victim.txt")
    finally:
        daemon.close()


@pytest.mark.parametrize(("change", "what"), [("append", "size"), ("overwrite", "content")])
def test_a_file_written_to_after_its_claim_fails_saying_what_to_do(
        layout: Layout, change: str, what: str) -> None:
    """A batched file a writer goes on changing in place fails as input_changed; its error
    record says what changed, to check the file and retry it, and how to prevent it."""
    _drop(layout, ["still-open.txt"])
    daemon = _daemon(layout, crashy=False)
    try:
        ids = _claim_and_batch(daemon, ["still-open.txt"])
        assert daemon.store is not None
        record = daemon.store.file(ids["still-open.txt"])
        assert record is not None and record.batch_id and record.entry
        path = layout.work / "batches" / record.batch_id / record.entry
        with path.open("ab" if change == "append" else "r+b") as writer:  # same inode
            writer.write(b"x" if change == "append" else b"X" * record.size)
        _run_until_done(daemon, ids)
    finally:
        daemon.close()
    [error] = [json.loads(p.read_text()) for p in error_records(layout.errors)]
    message = error["error"]["message"]
    assert error["error"]["code"] == "input_changed"
    assert f"its {what} differs" in message and "folderseal retry" in message
    assert "temporary name" in message and "settle_seconds" in message


def test_a_signed_pdf_staged_without_its_result_is_not_taken_for_done(layout: Layout) -> None:
    """A crash between staging a signed PDF (under its entry name) and saving its result
    leaves the batch open: status is not CLOSED, and accept signs that file again."""
    names = ["torn.pdf"]
    _drop(layout, names)
    daemon = _daemon(layout, crashy=False)
    try:
        ids = _claim_and_batch(daemon, names)
        assert daemon.store is not None
        record = daemon.store.file(ids["torn.pdf"])
        assert record is not None and record.entry and record.batch_id
        staging = layout.state / "downloads" / record.batch_id
        staging.mkdir(parents=True)
        (staging / record.entry).write_bytes(b"%PDF- a signature cut short by a crash")
        provider = daemon.providers["local"]
        view = BatchView(id=record.batch_id, folder="scans", documents=(Document(
            entry=record.entry, file_id=record.id, sha256=record.sha256 or "",
            size=record.size, dev=record.dev, ino=record.ino, attempts=0),),
            files_dir=layout.work / "batches" / record.batch_id, package=None,
            staging=staging)
        assert provider.status(view, record.batch_id).state == Remote.UPLOADED
        _run_until_done(daemon, ids)
        done = daemon.store.file(ids["torn.pdf"])
        assert done is not None and done.state == FileState.DONE
        check_sidecar(layout.outbox / "torn.pdf.json", layout)
        assert error_records(layout.errors) == []
    finally:
        daemon.close()


def test_a_full_state_folder_makes_signing_wait_without_counting_attempts(
        layout: Layout) -> None:
    """ENOSPC while signing (four times, more than sign_attempts) is the disk's fault, not
    the file's: the batch waits and retries, and the file is sealed in the end."""
    names = ["nospace.pdf"]
    _drop(layout, names)
    daemon = _daemon(layout)
    try:
        ids = _claim_and_batch(daemon, names)
        _run_until_done(daemon, ids)
        assert daemon.store is not None
        record = daemon.store.file(ids["nospace.pdf"])
        assert record is not None and record.state == FileState.DONE, record
        check_sidecar(layout.outbox / "nospace.pdf.json", layout)
        assert error_records(layout.errors) == []
    finally:
        daemon.close()
