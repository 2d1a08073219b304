"""Tests for folderseal.intake.claim.Claims: real files in tmp_path, a real SQLite store,
and a reject callback that records what it is handed."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from folderseal.core.model import FileState
from folderseal.intake import claim
from folderseal.intake.claim import EMPTY, NOT_REGULAR, Claims
from folderseal.intake.fragments import Fragments
from folderseal.intake.hashing import Hasher
from folderseal.intake.settle import SettleTracker
from folderseal.store import Store
from folderseal.store.memory import MemoryStore
from folderseal.work import WorkFolder
from tests.intake_parts import Rejected


@dataclass
class Parts:
    inbox: Path
    work: WorkFolder
    store: Store
    tracker: SettleTracker
    rejected: Rejected
    claims: Claims


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    store = MemoryStore("node", state_dir=tmp_path / "state")
    work = WorkFolder(inbox / ".folderseal" / "work", "scans", "node")
    work.adopt(store.store_id, store.batch_ids)
    tracker = SettleTracker(1.0, 100.0, "scans")
    rejected = Rejected()
    claims = Claims("scans", inbox, work, store, tracker, Fragments("scans", 1.0, store),
                    rejected)
    yield Parts(inbox, work, store, tracker, rejected, claims)
    store.close()


def test_a_claim_moves_the_file_into_the_work_folder_and_records_its_hash(
        parts: Parts) -> None:
    """A claimed file leaves the inbox for incoming/<claim id>/<its path>, and the store
    records it CLAIMED with its size, its hash and when it was first seen."""
    (parts.inbox / "sub").mkdir()
    (parts.inbox / "sub" / "scan.txt").write_bytes(b"a scanned page\n")
    parts.tracker.hint("sub/scan.txt", 123.0)
    [claim_id] = parts.claims.claim_all([("sub/scan.txt", None)])
    assert claim_id is not None
    assert not (parts.inbox / "sub" / "scan.txt").exists()
    moved = parts.work.claim_dir(claim_id) / "sub" / "scan.txt"
    assert moved.read_bytes() == b"a scanned page\n"
    record = parts.store.file(claim_id)
    assert record is not None and record.state == FileState.CLAIMED
    assert record.source_text == "sub/scan.txt" and record.size == 15
    assert record.sha256 == hashlib.sha256(b"a scanned page\n").hexdigest()
    assert record.seen_at == 123.0
    assert parts.tracker.waiting() == []  # claimed: no longer a candidate
    assert parts.rejected == []


def test_a_symbolic_link_is_claimed_as_itself_and_rejected(parts: Parts) -> None:
    """A link is moved as a link (never followed), recorded REJECTED as not a regular file,
    and handed to the reject callback with that reason."""
    target = parts.inbox.parent / "elsewhere.txt"
    target.write_text("not in the inbox")
    (parts.inbox / "link.txt").symlink_to(target)
    [claim_id] = parts.claims.claim_all([("link.txt", NOT_REGULAR)])
    assert claim_id is not None
    assert os.readlink(parts.work.claim_dir(claim_id) / "link.txt") == str(target)
    assert target.read_text() == "not in the inbox"
    record = parts.store.file(claim_id)
    assert record is not None and record.state == FileState.REJECTED
    assert record.error_code == "not_regular"
    assert parts.rejected == [(claim_id, NOT_REGULAR)]


def test_an_empty_file_is_rejected_as_empty(parts: Parts) -> None:
    """A file found empty when claimed is rejected with the reason and what to do."""
    (parts.inbox / "blank.pdf").write_bytes(b"")
    [claim_id] = parts.claims.claim_all([("blank.pdf", None)])
    assert claim_id is not None
    record = parts.store.file(claim_id)
    assert record is not None and record.state == FileState.REJECTED
    assert (record.error_code, record.error_message) == EMPTY
    assert parts.rejected == [(claim_id, EMPTY)]


def test_a_file_gone_before_its_claim_is_forgotten(parts: Parts) -> None:
    """A candidate whose file went away (moved or deleted by its writer) is not claimed,
    is no candidate any more, and is not rejected: it was never ours."""
    parts.tracker.hint("gone.txt", 0.0)
    assert parts.claims.claim_all([("gone.txt", None)]) == [None]
    assert parts.tracker.waiting() == []
    assert parts.store.file_ids("scans") == set()
    assert parts.work.claim_ids() == []
    assert parts.rejected == []


def test_a_claim_the_store_never_recorded_is_registered(parts: Parts) -> None:
    """A file renamed into incoming/ before a crash, never recorded, is registered by
    register_unknown; a claim folder that never got its file is removed."""
    left = parts.work.claim_dir("0000000000aa-left")
    (left / "deep").mkdir(parents=True)
    (left / "deep" / "page.txt").write_text("claimed before the crash")
    empty = parts.work.claim_dir("0000000000ab-empty")
    empty.mkdir(parents=True)
    assert parts.claims.register_unknown(50.0) == 1
    record = parts.store.file("0000000000aa-left")
    assert record is not None and record.state == FileState.CLAIMED
    assert record.source_text == "deep/page.txt" and record.seen_at == 50.0
    assert not empty.exists()
    assert parts.claims.register_unknown(60.0) == 0  # known now


def _unhashed(parts: Parts, claim_id: str, source: str, content: bytes) -> Path:
    """A claim recorded without its hash (reading it failed for a passing reason)."""
    path = parts.work.claim_dir(claim_id) / source
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    st = os.lstat(path)
    parts.store.add_claims([{"id": claim_id, "folder": "scans", "source": source,
                             "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
                             "mtime_ns": st.st_mtime_ns, "sha256": None, "seen_at": 0.0}])
    return path


def test_a_sweep_hashes_unfinished_claims_and_rejects_vanished_ones(parts: Parts) -> None:
    """Claims recorded without their hash are finished by a sweep: one still in the work
    folder gets its hash; one gone from it is rejected as vanished."""
    _unhashed(parts, "0000000000ac-read", "read.txt", b"read at last")
    _unhashed(parts, "0000000000ad-lost", "lost.txt", b"soon gone").unlink()
    parts.claims.sweep()
    read = parts.store.file("0000000000ac-read")
    assert read is not None and read.state == FileState.CLAIMED
    assert read.sha256 == hashlib.sha256(b"read at last").hexdigest()
    lost = parts.store.file("0000000000ad-lost")
    assert lost is not None and lost.state == FileState.REJECTED
    assert lost.error_code == "vanished"
    assert [(i, code) for i, (code, _) in parts.rejected] == [("0000000000ad-lost",
                                                              "vanished")]


def test_a_big_claim_is_recorded_unhashed_and_hashed_on_the_hasher_thread(
        parts: Parts, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the folder's hasher runs, a file of HASH_APART_BYTES or more is claimed and
    recorded without its hash (so the small files claimed with it need not wait), handed
    to the hasher, and batched only once the hasher recorded its hash; a small file
    beside it is hashed at once. A sweep hands the hasher the unhashed claim again, and
    the hasher takes it once."""
    monkeypatch.setattr(claim, "HASH_APART_BYTES", 1000)
    big, small = os.urandom(5000), b"a small page\n"
    (parts.inbox / "big.bin").write_bytes(big)
    (parts.inbox / "small.txt").write_bytes(small)
    stop, hashed = threading.Event(), threading.Event()
    hasher = Hasher(parts.claims, parts.store, hashed.set, stop)  # its thread comes later
    [big_id, small_id] = parts.claims.claim_all([("big.bin", None), ("small.txt", None)])
    assert big_id is not None and small_id is not None
    big_record, small_record = parts.store.file(big_id), parts.store.file(small_id)
    assert big_record is not None and big_record.sha256 is None
    assert small_record is not None and small_record.sha256 == hashlib.sha256(small).hexdigest()
    assert [r.id for r in parts.store.unfinished_claims("scans")] == [big_id]
    parts.claims.sweep()  # a scan meanwhile: handed again, queued once
    assert hasher._queue.qsize() == 1
    thread = threading.Thread(target=hasher.run)
    thread.start()
    try:
        assert hashed.wait(10), "the hasher did not record the hash"
    finally:
        stop.set()
        thread.join(10)
    big_record = parts.store.file(big_id)
    assert big_record is not None and big_record.sha256 == hashlib.sha256(big).hexdigest()
    assert parts.store.unfinished_claims("scans") == []
    assert parts.claims.hash_apart is None  # stopped: claims are hashed in place again
    assert parts.rejected == []


def test_a_big_claim_whose_work_folder_is_away_waits_for_it_and_is_not_failed(
        parts: Parts, monkeypatch: pytest.MonkeyPatch) -> None:
    """The share holding the work folder goes away before the hasher gets to a big claim
    (its mount point empty): the claim is not failed as "vanished" but postponed (it
    stays CLAIMED without a hash, nothing is rejected); once the share is back, the next
    sweep hands it over again and it is hashed."""
    monkeypatch.setattr(claim, "HASH_APART_BYTES", 1000)
    big = os.urandom(5000)
    (parts.inbox / "big.bin").write_bytes(big)
    stop, hashed = threading.Event(), threading.Event()
    hasher = Hasher(parts.claims, parts.store, hashed.set, stop)
    [big_id] = parts.claims.claim_all([("big.bin", None)])
    assert big_id is not None
    away = parts.inbox.parent / "share-away"
    (parts.inbox / ".folderseal").rename(away)  # the work folder's share is not mounted
    thread = threading.Thread(target=hasher.run)
    thread.start()
    try:
        assert hashed.wait(10)
        record = parts.store.file(big_id)
        assert record is not None and record.state == FileState.CLAIMED
        assert record.sha256 is None and parts.rejected == []
        away.rename(parts.inbox / ".folderseal")  # the share is back
        hashed.clear()
        parts.claims.sweep()
        assert hashed.wait(10)
    finally:
        stop.set()
        thread.join(10)
    record = parts.store.file(big_id)
    assert record is not None and record.sha256 == hashlib.sha256(big).hexdigest()
    assert parts.rejected == []


def test_a_claims_folder_that_is_gone_is_not_made_again_by_a_claim(parts: Parts) -> None:
    """The claims folder missing (a share away: what is under its mount point is the local
    disk) fails the claim with the error the folder's intake detaches on, and makes nothing
    in its place; the file stays in the inbox."""
    (parts.inbox / "scan.txt").write_bytes(b"a scanned page\n")
    os.rmdir(parts.work.incoming)
    with pytest.raises(FileNotFoundError):
        parts.claims.claim_all([("scan.txt", None)])
    assert not parts.work.incoming.exists()
    assert (parts.inbox / "scan.txt").read_bytes() == b"a scanned page\n"
    assert not parts.store.unfinished_claims("scans")
