"""The local signer after a takeover (fleet mode): what an earlier holder of the batch
signed and saved in its epoch's staging folder is used, checked by its sha256, never
signed again; a result whose staged bytes changed is signed again (nothing of it was
recorded or published). Real worker processes, real signatures, real files."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from folderseal.core.model import DocumentResult
from folderseal.providers import BatchView, Document, Remote
from folderseal.providers.local.config import LocalProviderConfig
from folderseal.providers.local.provider import FILES_PER_MESSAGE, LocalProvider
from folderseal.providers.local.worker import saved_results
from folderseal.signing.trial import make_trial_seal

TEXTS = {"0001_a.txt": b"page a\n" * 50, "0002_b.txt": b"page b\n" * 50}


class Ledger:
    """Counts the attempts the provider begins: one per signature it sets out to make."""

    def __init__(self) -> None:
        self.begun: list[str] = []

    def begin(self, documents: list[Document]) -> list[int]:
        self.begun += [d.entry for d in documents]
        return [d.attempts + 1 for d in documents]

    def forgive(self, documents: list[Document]) -> None:
        return None

    def stopping(self) -> bool:
        return False


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[LocalProvider]:
    seal = make_trial_seal(tmp_path / "seal")
    cfg = LocalProviderConfig(kind="local", certificate=seal.pkcs12_path,
                              password_file=seal.password_path,
                              workers=1)
    provider = LocalProvider("local", cfg, tmp_path / "state")
    provider.start()
    yield provider
    provider.close()


def _view(root: Path, epoch: int) -> BatchView:
    files_dir = root / "batches" / "b1"
    files_dir.mkdir(parents=True, exist_ok=True)
    documents = []
    for entry, data in TEXTS.items():
        path = files_dir / entry
        if not path.exists():
            path.write_bytes(data)
        st = path.stat()
        documents.append(Document(entry=entry, file_id=entry, sha256=hashlib.sha256(
            data).hexdigest(), size=len(data), dev=st.st_dev, ino=st.st_ino, attempts=0))
    staging = files_dir / ".staging"
    earlier = tuple(staging / str(e) for e in range(epoch - 1, 0, -1))
    return BatchView(id="b1", folder="scans", documents=tuple(documents), files_dir=files_dir,
                     package=None, staging=staging / str(epoch), staged_before=earlier)


def _results(folder: Path) -> list[str]:
    return sorted(saved_results(folder))


def test_a_takeover_uses_what_the_earlier_holder_signed(signer: LocalProvider,
                                                        tmp_path: Path) -> None:
    first, ledger = _view(tmp_path, 1), Ledger()
    signer.accept(first, "b1", ledger)
    assert sorted(ledger.begun) == sorted(TEXTS)
    # Epoch 2 (another node) finds both results in epoch 1's folder: closed, nothing to sign.
    second, again = _view(tmp_path, 2), Ledger()
    assert signer.status(second, "b1").state == Remote.CLOSED
    signer.accept(second, "b1", again)
    assert again.begun == []
    results: list[DocumentResult] = signer.download(second, "b1")
    assert {r.entry for r in results} == set(TEXTS)
    for result in results:
        [_, signature] = result.outputs
        assert Path(signature.staged).parent == first.staging  # those very bytes
    assert _results(second.staging) == []


@pytest.mark.parametrize("damage", ["size", "bytes"])
def test_a_staged_result_whose_bytes_changed_is_signed_again(
        signer: LocalProvider, tmp_path: Path, damage: str) -> None:
    """An earlier holder's output cut short or changed in place: that file is signed
    again, and the log says why (file.staged_result_unusable)."""
    first = _view(tmp_path, 1)
    signer.accept(first, "b1", Ledger())
    staged = first.staging / "0001_a.txt.p7s"
    size = staged.stat().st_size
    staged.write_bytes(b"torn" if damage == "size" else b"x" * size)
    second, again = _view(tmp_path, 2), Ledger()
    with structlog.testing.capture_logs() as logs:
        assert signer.status(second, "b1").state == Remote.UPLOADED
    assert [(e["event"], e["entry"]) for e in logs] == [
        ("file.staged_result_unusable", "0001_a.txt")]
    signer.accept(second, "b1", again)
    assert again.begun == ["0001_a.txt"]  # only the one whose bytes no longer check
    assert _results(second.staging) == ["0001_a.txt"]


def test_a_result_line_a_crash_tore_is_signed_again(signer: LocalProvider,
                                                    tmp_path: Path) -> None:
    """Results are lines appended to a results log: one whose write was cut short (a
    crash, a full disk) counts as not saved, only that file is signed again, and its new
    line, appended after the torn one, is read."""
    batch = _view(tmp_path, 1)
    signer.accept(batch, "b1", Ledger())
    [log] = [p for p in batch.staging.iterdir() if p.name.startswith("results-")]
    lines = [line for line in log.read_bytes().splitlines(keepends=True) if line != b"\n"]
    assert len(lines) == 2 and all(line.endswith(b"\n") for line in lines)
    torn = next(line for line in lines if b"0002_b.txt" in line)
    log.write_bytes(b"".join(line for line in lines if line is not torn) + torn[:40])
    assert sorted(saved_results(batch.staging)) == ["0001_a.txt"]
    assert signer.status(batch, "b1").state == Remote.UPLOADED
    again = Ledger()
    signer.accept(batch, "b1", again)
    assert again.begun == ["0002_b.txt"]
    assert signer.status(batch, "b1").state == Remote.CLOSED
    logs = [p for p in batch.staging.iterdir() if p.name.startswith("results-")]
    assert len(logs) == 1  # the worker process is the same, and appends to its own log


def test_the_newest_result_counts_and_one_whose_output_is_gone_does_not(
        signer: LocalProvider, tmp_path: Path) -> None:
    """Of two results saved for one file (a worker stopped after saving, the file signed
    again alone), the newer counts, whatever log holds it; a result file of the version
    before the logs is read; a result whose staged output is not there (its name lost in
    a power cut) does not count, and that file is signed again."""
    from folderseal.providers.local.worker import save_result

    batch = _view(tmp_path, 1)
    signer.accept(batch, "b1", Ledger())
    first = saved_results(batch.staging)
    older = first["0001_a.txt"]
    failed = DocumentResult(entry="0001_a.txt", error_code="sign_crashed", error_message="x")
    save_result(batch.staging, failed)  # this process's own log: newer than the worker's
    assert saved_results(batch.staging)["0001_a.txt"] == failed
    save_result(batch.staging, older)
    assert saved_results(batch.staging)["0001_a.txt"] == older
    # A result file of the version before the logs, for the other file.
    for log in batch.staging.glob("results-*"):
        log.unlink()
    (batch.staging / "0002_b.txt.result.json").write_text(first["0002_b.txt"].to_json())
    assert sorted(saved_results(batch.staging)) == ["0002_b.txt"]
    (batch.staging / "0002_b.txt.p7s").unlink()
    assert saved_results(batch.staging) == {}
    again = Ledger()
    signer.accept(batch, "b1", again)
    assert sorted(again.begun) == ["0001_a.txt", "0002_b.txt"]
    assert sorted(saved_results(batch.staging)) == ["0001_a.txt", "0002_b.txt"]


def test_a_file_signed_again_replaces_what_its_interrupted_attempt_left(
        signer: LocalProvider, tmp_path: Path) -> None:
    """Outputs are made with the folder's file_mode, even a read-only one; an attempt cut
    off before its result was saved left one there, and signing the file again makes it
    afresh (a new file, not the old one opened for writing, which a read-only mode would
    refuse to a daemon not running as root)."""
    import dataclasses

    batch = dataclasses.replace(_view(tmp_path, 1), file_mode=0o444)
    signer.accept(batch, "b1", Ledger())
    staged = batch.staging / "0001_a.txt.p7s"
    for log in batch.staging.glob("results-*"):
        log.unlink()  # as if the worker died before it saved the results
    with staged.open("rb") as left:  # held open: its inode number cannot come back
        first = os.fstat(left.fileno())
        assert first.st_mode & 0o777 == 0o444
        again = Ledger()
        signer.accept(batch, "b1", again)
        assert sorted(again.begun) == sorted(TEXTS)
        assert signer.status(batch, "b1").state == Remote.CLOSED
        second = staged.stat()
        assert second.st_mode & 0o777 == 0o444 and second.st_ino != first.st_ino


def test_a_count_that_fails_lets_the_files_sent_finish_first(signer: LocalProvider,
                                                              tmp_path: Path) -> None:
    """The store failing at a second count of attempts ends the accept only once the
    files already sent are signed: the signer's gate (a file retried alone has nothing
    else in flight) is let go with no worker still at work."""
    files_dir = tmp_path / "batches" / "b2"
    files_dir.mkdir(parents=True)
    documents = []
    for i in range(3 * FILES_PER_MESSAGE):
        data = f"page {i}\n".encode() * 500
        (files_dir / f"{i:04d}_p.txt").write_bytes(data)
        st = (files_dir / f"{i:04d}_p.txt").stat()
        documents.append(Document(entry=f"{i:04d}_p.txt", file_id=str(i),
                                  sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                  dev=st.st_dev, ino=st.st_ino, attempts=0))
    batch = BatchView(id="b2", folder="scans", documents=tuple(documents),
                      files_dir=files_dir, package=None, staging=tmp_path / "staging-b2")

    class FailsSecond(Ledger):
        def begin(self, documents: list[Document]) -> list[int]:
            if self.begun:
                raise OSError(5, "the store's disk failed")
            return super().begin(documents)

    with pytest.raises(OSError, match="store's disk"):
        signer.accept(batch, "b2", FailsSecond())
    assert signer.pool is not None and signer.pool.stats().running == 0
    assert len(saved_results(batch.staging)) == 2 * FILES_PER_MESSAGE  # the first count's
