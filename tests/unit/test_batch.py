"""Tests for folderseal.intake.batching: entry names, batch limits and moving into a batch."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from folderseal.core.errors import ForeignWorkFolderError
from folderseal.core.model import FileRecord, FileState
from folderseal.core.safety import MAX_ENTRY_NAME, safe_name
from folderseal.intake.batching import Limits, entry_name, move_into_batch, next_batch
from folderseal.work import WorkFolder

ASCII_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def record(id: str = "f1", source: str = "scan.pdf", size: int = 10, claimed_at: float = 0.0,
           entry: str | None = None) -> FileRecord:
    return FileRecord(
        id=id, folder="scans", source=source, state=FileState.CLAIMED, dev=1, ino=2, size=size,
        mtime_ns=3, sha256=None, batch_id=None, entry=entry, attempts=0, result=None,
        outputs=(), error_code=None, error_message=None, seen_at=claimed_at,
        claimed_at=claimed_at,
    )


# -- names ---------------------------------------------------------------------------------

def test_safe_name_folds_accents_to_ascii() -> None:
    """"Rechnung für März.pdf" becomes "Rechnung_fur_Marz.pdf"."""
    assert safe_name("Rechnung für März.pdf") == "Rechnung_fur_Marz.pdf"


def test_entry_name_has_a_unique_index_prefix() -> None:
    """The 7th file of "2026/11/Rechnung für März.pdf" is 0007_Rechnung_fur_Marz.pdf."""
    assert entry_name(7, "2026/11/Rechnung für März.pdf") == "0007_Rechnung_fur_Marz.pdf"


def test_entry_names_are_unique_for_equal_names_in_two_folders() -> None:
    """Two subfolders holding the same name still give distinct, flat entry names."""
    names = [entry_name(i, s) for i, s in enumerate(["a/scan.pdf", "b/scan.pdf", "scan.pdf"])]
    assert len(set(names)) == 3
    assert all("/" not in n for n in names)


@pytest.mark.parametrize("name", [
    "Rechnung für März.pdf", "a b\tc.pdf", "what?*<>|:\".pdf", "Œuvre ½ ﬁnal.pdf",
    "line\nbreak.pdf", "caf\udce9.pdf", "back\\slash.pdf", "..", "", "-x-.pdf",
])
def test_safe_name_is_ascii_safe(name: str) -> None:
    """Whatever the input, the result holds only letters, digits, '.', '_' and '-'."""
    result = safe_name(name)
    assert ASCII_SAFE.match(result), result
    assert not result.startswith(".")
    assert result.isascii()


def test_safe_name_of_invalid_utf8_name() -> None:
    """A name with undecodable bytes (surrogateescape) keeps its readable part and extension."""
    assert safe_name("caf\udce9.pdf") == "caf_.pdf"


def test_safe_name_replaces_newlines() -> None:
    """A newline in a name does not survive into the entry name."""
    assert safe_name("two\nlines.pdf") == "two_lines.pdf"


@pytest.mark.parametrize("name", ["日本語.pdf", "Счёт.pdf", "€.pdf"])
def test_safe_name_keeps_the_extension_of_a_name_with_no_ascii_stem(name: str) -> None:
    """A name whose stem has no ASCII letters still keeps its extension (.pdf → PAdES)."""
    result = safe_name(name)
    assert result.endswith(".pdf"), result
    assert ASCII_SAFE.match(result)


def test_long_names_are_truncated_keeping_the_extension() -> None:
    """A 300-character name is cut to the limit and keeps ".pdf"."""
    result = safe_name("x" * 300 + ".pdf")
    assert len(result) == MAX_ENTRY_NAME
    assert result.endswith(".pdf")
    assert len(safe_name("y" * 300 + ".pdf", limit=40)) == 40


def test_long_entry_names_stay_short() -> None:
    """An entry name for a very long source fits a 255-byte file name."""
    name = entry_name(12, "deep/" + "ä" * 400 + ".pdf")
    assert name.startswith("0012_") and name.endswith(".pdf")
    assert len(name.encode()) <= 255


def test_empty_result_becomes_file() -> None:
    """A name with nothing usable in it becomes "file"."""
    assert safe_name("????") == "file"


# -- next_batch ------------------------------------------------------------------------------

def test_next_batch_of_nothing_is_empty() -> None:
    """No claimed files, no batch."""
    assert next_batch([], Limits(10, 1000, 5.0), now=100.0) == []


def test_next_batch_is_full_by_count() -> None:
    """With max_files=2 and three files, the batch is the first two, at once."""
    claimed = [record(f"f{i}", claimed_at=100.0) for i in range(3)]
    assert [r.id for r in next_batch(claimed, Limits(2, 10_000, 60.0), now=100.0)] == [
        "f0", "f1"]


def test_next_batch_is_full_by_bytes() -> None:
    """Files are taken while they fit in max_bytes; the next one would overflow it."""
    claimed = [record(f"f{i}", size=40, claimed_at=100.0) for i in range(3)]
    assert [r.id for r in next_batch(claimed, Limits(10, 100, 60.0), now=100.0)] == [
        "f0", "f1"]


def test_exactly_max_bytes_is_full() -> None:
    """Files adding up to exactly max_bytes make a full batch without waiting."""
    claimed = [record(f"f{i}", size=50, claimed_at=100.0) for i in range(2)]
    assert len(next_batch(claimed, Limits(10, 100, 60.0), now=100.0)) == 2


def test_a_file_larger_than_max_bytes_makes_a_batch_of_its_own() -> None:
    """A single oversized file is batched alone and at once, not held back forever."""
    big = record("big", size=500, claimed_at=100.0)
    small = record("small", size=10, claimed_at=100.0)
    assert [r.id for r in next_batch([big, small], Limits(10, 100, 60.0), now=100.0)] == ["big"]
    assert [r.id for r in next_batch([big], Limits(10, 100, 60.0), now=100.0)] == ["big"]


def test_a_large_file_after_a_small_one_closes_the_batch_before_it() -> None:
    """A file that does not fit does not join; the batch before it closes."""
    small = record("small", size=10, claimed_at=100.0)
    big = record("big", size=500, claimed_at=100.0)
    assert [r.id for r in next_batch([small, big], Limits(10, 100, 60.0), now=100.0)] == [
        "small"]


def test_partial_batch_waits_until_max_wait() -> None:
    """A batch that is not full waits until its oldest file waited max_wait seconds."""
    claimed = [record("old", claimed_at=100.0), record("new", claimed_at=103.0)]
    limits = Limits(10, 10_000, 5.0)
    assert next_batch(claimed, limits, now=104.9) == []
    assert [r.id for r in next_batch(claimed, limits, now=105.0)] == ["old", "new"]


def test_max_wait_zero_batches_at_once() -> None:
    """batch_max_wait_seconds = 0 sends whatever is claimed right away."""
    assert len(next_batch([record(claimed_at=100.0)], Limits(10, 10_000, 0.0), now=100.0)) == 1


# -- moving into a batch ---------------------------------------------------------------------

def claim(work: WorkFolder, file_id: str, source: str, data: bytes) -> None:
    path = work.claim_dir(file_id) / source
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_move_into_batch_moves_files_under_their_entry_names(tmp_path: Path) -> None:
    """Each claimed file ends in batches/<batch>/<entry> and its claim folder is gone."""
    work = WorkFolder(tmp_path / "work", "scans", "node-a")
    work.adopt("store-1", set)
    claim(work, "c1", "2026/11/Rechnung für März.pdf", b"one")
    claim(work, "c2", "top.txt", b"two")
    records = [record("c1", "2026/11/Rechnung für März.pdf", entry="0000_Rechnung_fur_Marz.pdf"),
               record("c2", "top.txt", entry="0001_top.txt")]

    move_into_batch(work, "b1", "local", records)

    batch = work.batch_dir("b1")
    assert sorted(os.listdir(batch)) == [".batch.json", "0000_Rechnung_fur_Marz.pdf",
                                         "0001_top.txt"]
    assert (batch / "0000_Rechnung_fur_Marz.pdf").read_bytes() == b"one"
    assert (batch / "0001_top.txt").read_bytes() == b"two"
    assert work.claim_ids() == []
    # Emptied claim folders are kept as spares (no file, no subfolder), and a next claim
    # gets one by a rename instead of a new folder.
    spares = os.listdir(work.incoming)
    assert len(spares) == 2 and all(os.listdir(work.incoming / s) == [] for s in spares)
    inode = {os.stat(work.incoming / s).st_ino for s in spares}
    assert os.stat(work.new_claim_dir("c3")).st_ino in inode
    assert work.claim_ids() == ["c3"] and len(os.listdir(work.incoming)) == 2


def test_move_into_batch_is_idempotent(tmp_path: Path) -> None:
    """A second call (a restart after a crash) finds the files moved and changes nothing."""
    work = WorkFolder(tmp_path / "work", "scans", "node-a")
    work.adopt("store-1", set)
    claim(work, "c1", "sub/a.pdf", b"one")
    records = [record("c1", "sub/a.pdf", entry="0000_a.pdf")]
    move_into_batch(work, "b1", "local", records)
    move_into_batch(work, "b1", "local", records)
    assert (work.batch_dir("b1") / "0000_a.pdf").read_bytes() == b"one"
    assert work.claim_ids() == []


def test_move_into_batch_finishes_a_half_done_move(tmp_path: Path) -> None:
    """After a crash half way, a second call moves the rest and keeps the moved one."""
    work = WorkFolder(tmp_path / "work", "scans", "node-a")
    work.adopt("store-1", set)
    claim(work, "c1", "a.pdf", b"one")
    claim(work, "c2", "b.pdf", b"two")
    records = [record("c1", "a.pdf", entry="0000_a.pdf"),
               record("c2", "b.pdf", entry="0001_b.pdf")]
    move_into_batch(work, "b1", "local", records[:1])
    move_into_batch(work, "b1", "local", records)
    assert sorted(os.listdir(work.batch_dir("b1"))) == [".batch.json", "0000_a.pdf",
                                                        "0001_b.pdf"]
    assert work.claim_ids() == []


def test_move_into_batch_refuses_a_file_that_is_nowhere(tmp_path: Path) -> None:
    """A claimed file missing from both places is an error, not silently skipped."""
    work = WorkFolder(tmp_path / "work", "scans", "node-a")
    work.adopt("store-1", set)
    with pytest.raises(FileNotFoundError):
        move_into_batch(work, "b1", "local", [record("c9", "lost.pdf", entry="0000_lost.pdf")])


def test_move_into_batch_keeps_other_files_of_a_shared_folder(tmp_path: Path) -> None:
    """Only empty folders are removed: an unbatched file in the same claim folder stays."""
    work = WorkFolder(tmp_path / "work", "scans", "node-a")
    work.adopt("store-1", set)
    claim(work, "c1", "sub/a.pdf", b"one")
    (work.claim_dir("c1") / "sub" / "stray.pdf").write_bytes(b"x")
    move_into_batch(work, "b1", "local", [record("c1", "sub/a.pdf", entry="0000_a.pdf")])
    assert (work.claim_dir("c1") / "sub" / "stray.pdf").read_bytes() == b"x"


def test_the_manifest_describes_the_batch_and_keeps_every_remote_id(tmp_path: Path) -> None:
    """The manifest beside a batch names each file (even a name that is not UTF-8) and
    every remote id, in order, once; removing the finished batch removes it too."""
    work = WorkFolder(tmp_path / "work", "scans", "node-a")
    work.adopt("store-1", set)
    odd = os.fsdecode(b"scan-\xff.pdf")
    claim(work, "c1", odd, b"one")
    move_into_batch(work, "b1", "seal", [record("c1", odd, size=3, entry="0000_scan-_.pdf")])
    for remote in ("r1", "r2", "r1"):
        work.manifests.note_remote_id("b1", remote)
    manifest = work.manifests.json("b1")
    assert manifest is not None
    assert manifest["provider"] == "seal" and manifest["remote_ids"] == ["r1", "r2"]
    assert manifest["files"] == [{"id": "c1", "source": odd, "entry": "0000_scan-_.pdf",
                                  "sha256": None, "bytes": 3}]
    assert not work.remove_batch("b1"), "a batch with a file left must stay"
    (work.batch_dir("b1") / "0000_scan-_.pdf").unlink()
    assert work.remove_batch("b1")
    assert not work.batch_dir("b1").exists()


def test_each_node_claims_into_a_folder_of_its_own(tmp_path: Path) -> None:
    """Two nodes on one work folder: each lists only its own claims, while a claimed file
    is found wherever the node that claimed it keeps it."""
    one = WorkFolder(tmp_path / "work", "scans", "node-a")
    two = WorkFolder(tmp_path / "work", "scans", "node-b")
    one.adopt("store-1", set)
    two.adopt("store-1", set)
    claim(one, "c1", "sub/a.pdf", b"one")
    claim(two, "c2", "b.pdf", b"two")
    assert one.claim_ids() == ["c1"] and two.claim_ids() == ["c2"]
    assert one.claim_dir("c1") == tmp_path / "work" / "nodes" / "node-a" / "incoming" / "c1"
    assert one.path_of(record("c2", "b.pdf")).read_bytes() == b"two"
    assert two.path_of(record("c1", "sub/a.pdf")).read_bytes() == b"one"


def test_claims_an_older_version_left_are_moved_into_the_nodes_folder(tmp_path: Path) -> None:
    """<work>/incoming/<claim> (an older folderseal's layout) becomes this node's claim
    when the work folder is adopted, and the old folder goes."""
    old = tmp_path / "work" / "incoming" / "c1" / "sub"
    old.mkdir(parents=True)
    (old / "a.pdf").write_bytes(b"one")
    (tmp_path / "work" / "store-id").write_text("store-1\n")
    work = WorkFolder(tmp_path / "work", "scans", "node-a")
    work.adopt("store-1", set)
    assert work.claim_ids() == ["c1"]
    assert (work.claim_dir("c1") / "sub" / "a.pdf").read_bytes() == b"one"
    assert not (tmp_path / "work" / "incoming").exists()


def test_a_work_folder_holding_only_an_old_claim_and_no_marker_is_refused(
        tmp_path: Path) -> None:
    """Claims without a marker naming their store are nobody's: refused, as before."""
    (tmp_path / "work" / "incoming" / "c1").mkdir(parents=True)
    (tmp_path / "work" / "incoming" / "c1" / "a.pdf").write_bytes(b"one")
    with pytest.raises(ForeignWorkFolderError):
        WorkFolder(tmp_path / "work", "scans", "node-a").adopt("store-1", set)


def test_a_drained_work_folder_of_another_store_is_handed_to_a_shared_store(
        tmp_path: Path) -> None:
    """On a shared store (PostgreSQL) an empty work folder of another store (its node was
    drained before it moved) becomes this store's; one that still holds that store's
    claims is refused with the advice to drain first; one store's node alone (SQLite)
    still refuses any other store's work folder."""
    old = WorkFolder(tmp_path / "work", "scans", "node-a")
    old.adopt("sqlite-store", set)
    claim(old, "c1", "a.pdf", b"one")
    fleet = WorkFolder(tmp_path / "work", "scans", "node-a")
    with pytest.raises(ForeignWorkFolderError) as refused:
        fleet.adopt("pg-store", set, shared=True)
    assert "drain the node that ran on store sqlite-store first" in str(refused.value)
    assert refused.value.exit_code == 78 and old.owner() == "sqlite-store"
    (old.claim_dir("c1") / "a.pdf").unlink()
    old.claim_dir("c1").rmdir()  # drained: nothing in flight
    with pytest.raises(ForeignWorkFolderError):
        fleet.adopt("pg-store", set)  # not shared: refused as ever
    assert fleet.adopt("pg-store", set, shared=True) == "sqlite-store"
    assert fleet.owner() == "pg-store"
    assert fleet.adopt("pg-store", set, shared=True) is None


def test_a_batch_another_node_makes_during_the_check_is_not_taken_for_foreign(
        tmp_path: Path) -> None:
    """The start check lists the batches on disk first and asks the store second, and
    both again before concluding a batch is unknown: a batch recorded and made by
    another node meanwhile passes; one the store never knows is refused."""
    work = WorkFolder(tmp_path / "work", "scans", "node-a")
    work.adopt("store-1", set)
    (work.batches / "b1").mkdir()
    answers = iter([set(), {"b1"}])  # recorded just after the store's first answer
    work.adopt("store-1", lambda: next(answers))
    with pytest.raises(ForeignWorkFolderError, match="b1"):
        work.adopt("store-1", set)


def test_a_dead_nodes_claims_move_into_this_nodes_folder(tmp_path: Path) -> None:
    """take_claims_of renames every claim of the other node into this node's folder."""
    dead = WorkFolder(tmp_path / "work", "scans", "node-b")
    dead.adopt("store-1", set)
    claim(dead, "c1", "sub/a.pdf", b"one")
    claim(dead, "c2", "b.pdf", b"two")
    work = WorkFolder(tmp_path / "work", "scans", "node-a")
    work.adopt("store-1", set)
    assert work.other_nodes() == ["node-b"]
    assert sorted(work.take_claims_of("node-b")) == ["c1", "c2"]
    assert sorted(work.claim_ids()) == ["c1", "c2"] and dead.claim_ids() == []
    assert (work.claim_dir("c1") / "sub" / "a.pdf").read_bytes() == b"one"


def test_the_manifest_is_written_once_and_notes_of_a_later_lease_win(tmp_path: Path) -> None:
    """Two nodes note what one batch learned: the holder that took the batch over (epoch
    2) and the earlier holder, paused past its lease, whose notes land late (epoch 1).
    Nothing is rewritten in place (the manifest's bytes stay as written; each note is a
    file of its own), every remote id is kept, and a file's latest note is the later
    lease's, whatever the order the notes arrived in."""
    work = WorkFolder(tmp_path / "work", "scans", "node-a")
    work.adopt("store-1", set)
    claim(work, "c1", "a.pdf", b"one")
    move_into_batch(work, "b1", "seal", [record("c1", "a.pdf", size=3, entry="0001_a.pdf")])
    written = (work.batch_dir("b1") / ".batch.json").read_bytes()
    work.manifests.write("b1", "seal", [])  # a second writer keeps the first
    manifests = work.manifests
    manifests.note_remote_id("b1", "r-new", epoch=2)
    manifests.note_document("b1", "c1", {"batch": "r-new", "id": "d-new"}, epoch=2)
    manifests.note_remote_id("b1", "r-old", epoch=1)  # the paused holder, late
    manifests.note_document("b1", "c1", {"batch": "r-old", "id": "d-old"}, epoch=1)
    manifests.note_published("b1", "key-old", epoch=1)
    assert (work.batch_dir("b1") / ".batch.json").read_bytes() == written
    assert sorted(n for n in os.listdir(work.batch_dir("b1")) if n.startswith(".note-")) \
        == [f".note-00000{i}.json" for i in range(5)]
    manifest = manifests.read("b1")
    assert manifest is not None
    assert manifest.remote_ids == ("r-old", "r-new")  # by epoch: the earlier lease's first
    assert manifest.notes["c1"] == {"batch": "r-new", "id": "d-new"}
    assert manifest.published == "key-old"
    (work.batch_dir("b1") / "0001_a.pdf").unlink()
    assert work.remove_batch("b1") and not work.batch_dir("b1").exists()


def test_a_late_note_never_keeps_a_finished_batch_folder(tmp_path: Path) -> None:
    """Removing a finished batch removes its manifest first, so a late writer (a holder
    paused past its lease) adds no note after it; notes are numbered after the highest
    one there, whatever gaps a crash left."""
    work = WorkFolder(tmp_path / "work", "scans", "node-a")
    work.adopt("store-1", set)
    claim(work, "c1", "a.pdf", b"one")
    move_into_batch(work, "b1", "seal", [record("c1", "a.pdf", size=3, entry="0001_a.pdf")])
    work.manifests.note_remote_id("b1", "r1", epoch=1)
    (work.batch_dir("b1") / ".note-000007.json").write_text('{"epoch": 1, "remote_id": "r7"}')
    work.manifests.note_remote_id("b1", "r2", epoch=1)
    assert (work.batch_dir("b1") / ".note-000008.json").exists()
    assert work.manifests.remote_ids("b1") == ["r1", "r7", "r2"]
    (work.batch_dir("b1") / "0001_a.pdf").unlink()
    work.manifests.discard("b1")
    work.manifests.note_remote_id("b1", "late", epoch=1)  # the manifest is gone: no note
    assert work.remove_batch("b1") and not work.batch_dir("b1").exists()
