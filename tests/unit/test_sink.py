"""The sink (folderseal.publish.sink.Sink) on the in-memory store, with a real work folder,
outbox, errors folder and archive in a temp folder.

Each batch is taken to DOWNLOADED by the state machine with the scripted provider
(tests/scripted.py), which stages a signed copy of each file (or the original and a
detached signature); the test then delivers it as the DOWNLOADED and DELIVERED steps
do: outputs and sidecars into the outbox, failures into errors, then the originals
removed or archived.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from folderseal import __version__
from folderseal.core.errors import LeaseLost, OutboxUnavailable
from folderseal.core.model import BatchState, FileRecord, FileState
from folderseal.publish.folders import BatchContext
from tests.batch_parts import Parts, batched, build, claim, form
from tests.scripted import SIGNED

FILES = {"a.txt": b"page a\n", "sub/b.txt": b"page b\n"}


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return build(tmp_path)


def _downloaded(parts: Parts, batch_id: str) -> list[FileRecord]:
    """Run the batch's turn until its results are recorded (DOWNLOADED: the stop event,
    set during the download, ends the turn there), and take its lease as the next turn
    does: its files."""
    parts.provider.script["download"] = [parts.stop.set]
    assert parts.machine.run_once()
    parts.stop.clear()
    batch = parts.store.acquire_batch()
    assert batch is not None and batch.id == batch_id and batch.state == BatchState.DOWNLOADED
    return parts.store.files_of_batch(batch_id)


def _context(parts: Parts, batch_id: str) -> BatchContext:
    """What the state machine tells the sink about the batch (StepContext.delivery)."""
    batch = parts.store.batch(batch_id)
    return BatchContext(batch=batch, provider_name=parts.provider.name,
                        provider_kind=parts.provider.kind, outcome="signed", batch_files=2,
                        history=parts.store.batch_history(batch_id))


def _deliver(parts: Parts, batch_id: str, keep_lease: Callable[[], None] | None = None) -> None:
    records = parts.store.files_of_batch(batch_id)
    parts.sink.deliver(records, _context(parts, batch_id),
                       keep_lease or (lambda: parts.store.keep_lease(batch_id)))


def _names(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_bytes())
    return data


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the files fsynced from now on (each call still syncs)."""
    fsynced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsynced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return fsynced


def test_outputs_and_sidecars_land_in_the_outbox_with_every_field(parts: Parts) -> None:
    """Each signed file at its source path, its sidecar beside it with the documented
    fields; the files PUBLISHED; the originals are removed only by ``finish``."""
    batch_id, ids = batched(parts, FILES)
    _downloaded(parts, batch_id)

    _deliver(parts, batch_id)

    outbox = parts.cfg.outbox
    assert _names(outbox) == ["a.txt", "a.txt.json", "sub/b.txt", "sub/b.txt.json"]
    signed = SIGNED + FILES["sub/b.txt"]
    assert (outbox / "sub/b.txt").read_bytes() == signed
    sidecar = _json(outbox / "sub/b.txt.json")
    steps = [s.pop("step") for s in sidecar.pop("timeline")]
    assert steps == ["seen", "claimed", "batched", "submitted", "accepted", "signed",
                     "downloaded", "delivered"]
    assert sidecar == {
        "schema": "folderseal.sidecar/1", "status": "signed", "folder": "scans",
        "source": "sub/b.txt",
        "input": {"sha256": _sha(FILES["sub/b.txt"]), "bytes": len(FILES["sub/b.txt"])},
        "outputs": [{"path": "sub/b.txt", "role": "signed", "sha256": _sha(signed),
                     "bytes": len(signed)}],
        "provider": {"name": "remote", "kind": "scripted", "batch": "r1",
                     "document": "r1/0002_b.txt"},
        "batch": {"id": batch_id, "files": 2}, "node": "node-a", "version": __version__,
        "signer": None}
    records = parts.store.files_of_batch(batch_id)
    assert {r.state for r in records} == {FileState.PUBLISHED}
    originals = [parts.work.path_of(r) for r in records]
    assert all(p.exists() for p in originals)

    parts.sink.finish(parts.store.files_of_batch(batch_id),
                      lambda: parts.store.keep_lease(batch_id))

    assert not any(p.exists() for p in originals)
    assert {r.state for r in parts.store.files_of_batch(batch_id)} == {FileState.DONE}
    assert parts.store.file(ids["a.txt"]) is not None


def test_a_detached_signature_goes_beside_the_original_and_the_archive_gets_it(
        tmp_path: Path) -> None:
    """The original unchanged (a copy: the archived file must not share its inode) and
    its signature, both listed in the sidecar; ``finish`` moves the original to the
    archive."""
    parts = build(tmp_path, archive=True)
    parts.provider.detached = True
    batch_id, _ = batched(parts, {"a.txt": FILES["a.txt"]})
    [record] = _downloaded(parts, batch_id)
    original = parts.work.path_of(record)

    _deliver(parts, batch_id)
    parts.sink.finish(parts.store.files_of_batch(batch_id),
                      lambda: parts.store.keep_lease(batch_id))

    outbox = parts.cfg.outbox
    assert _names(outbox) == ["a.txt", "a.txt.json", "a.txt.p7s"]
    assert (outbox / "a.txt").read_bytes() == FILES["a.txt"]
    roles = [(o["path"], o["role"]) for o in _json(outbox / "a.txt.json")["outputs"]]
    assert roles == [("a.txt", "original"), ("a.txt.p7s", "signature")]
    archived = parts.root / "archive" / "a.txt"
    assert archived.read_bytes() == FILES["a.txt"] and not original.exists()
    assert archived.stat().st_ino != (outbox / "a.txt").stat().st_ino


def test_outputs_a_run_placed_before_its_names_were_recorded_are_not_placed_again(
        parts: Parts) -> None:
    """A run that placed a file's output and sidecar, then lost the record of their names
    (a store restored from a backup): planned again, the names hold this very output and
    this file's own sidecar, which stay as they are; nothing gets a numbered name."""
    batch_id, _ = batched(parts, {"a.txt": FILES["a.txt"]})
    [record] = _downloaded(parts, batch_id)
    outbox = parts.cfg.outbox
    (outbox / "a.txt").write_bytes(SIGNED + FILES["a.txt"])
    earlier = json.dumps({"input": {"sha256": record.sha256}, "batch": {"id": batch_id}})
    (outbox / "a.txt.json").write_text(earlier)

    _deliver(parts, batch_id)

    assert _names(outbox) == ["a.txt", "a.txt.json"]
    assert (outbox / "a.txt.json").read_text() == earlier
    assert {r.state for r in parts.store.files_of_batch(batch_id)} == {FileState.PUBLISHED}


def _detached(tmp_path: Path, synced: bool) -> tuple[Parts, str, FileRecord]:
    """One file signed with a detached signature, downloaded; its outputs marked
    ``synced`` or not."""
    parts = build(tmp_path)
    parts.provider.detached = True
    parts.provider.synced = synced
    batch_id, _ = batched(parts, {"a.txt": FILES["a.txt"]})
    [record] = _downloaded(parts, batch_id)
    return parts, batch_id, record


@pytest.mark.parametrize("synced", [False, True])
def test_an_output_is_synced_before_its_name_unless_its_provider_synced_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synced: bool) -> None:
    """Each output's content reaches the disk before its name: publishing fsyncs it,
    unless its provider did (``Output.synced``) and publishing leaves its mode alone. One
    whose mode publishing changes is synced again either way."""
    parts, batch_id, record = _detached(tmp_path, synced)
    assert record.result is not None
    original, staged = parts.work.path_of(record), record.result.outputs[1].staged
    os.chmod(original, parts.cfg.file_mode)
    os.chmod(staged, 0o600)
    fsynced = _fsyncs(monkeypatch)
    _deliver(parts, batch_id)

    assert (str(original) in fsynced) is not synced
    assert staged in fsynced
    assert os.stat(parts.cfg.outbox / "a.txt.p7s").st_mode & 0o777 == parts.cfg.file_mode


def test_a_copy_found_elsewhere_is_synced_whatever_its_result_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``synced`` speaks for the file its result names: a copy with the same bytes found
    in another staging folder (a holder may have written it and not synced it yet) is
    synced before it gets its name."""
    parts, batch_id, record = _detached(tmp_path, synced=True)
    assert record.result is not None
    recorded = Path(record.result.outputs[1].staged)
    elsewhere = tmp_path / "earlier-holder"
    elsewhere.mkdir()
    os.rename(recorded, elsewhere / recorded.name)
    os.chmod(elsewhere / recorded.name, parts.cfg.file_mode)
    fsynced = _fsyncs(monkeypatch)
    context = dataclasses.replace(_context(parts, batch_id), staged_in=(elsewhere,))
    parts.sink.deliver(parts.store.files_of_batch(batch_id), context,
                       lambda: parts.store.keep_lease(batch_id))

    assert str(elsewhere / recorded.name) in fsynced
    assert (parts.cfg.outbox / "a.txt.p7s").exists()


def test_a_failed_file_goes_to_errors_with_its_error_record(parts: Parts) -> None:
    parts.provider.refusals = {"0001_a.txt": ("unsupported", "cannot sign this (scripted)")}
    batch_id, ids = batched(parts, FILES)
    _downloaded(parts, batch_id)

    _deliver(parts, batch_id)

    assert _names(parts.cfg.outbox) == ["sub/b.txt", "sub/b.txt.json"]
    assert _names(parts.cfg.errors) == ["a.txt", "a.txt.error.json"]
    assert (parts.cfg.errors / "a.txt").read_bytes() == FILES["a.txt"]
    record = _json(parts.cfg.errors / "a.txt.error.json")
    assert (record["status"], record["source"], record["retry_id"]) == (
        "failed", "a.txt", ids["a.txt"])
    assert record["error"] == {"code": "unsupported", "message": "cannot sign this (scripted)",
                               "attempts": 0, "original": "a.txt"}
    assert record["input"] == {"sha256": _sha(FILES["a.txt"]), "bytes": len(FILES["a.txt"])}
    assert [s["step"] for s in record["timeline"]][-1] == "failed"
    states = {r.source: r.state for r in parts.store.files_of_batch(batch_id)}
    assert states == {"a.txt": FileState.FAILED, "sub/b.txt": FileState.PUBLISHED}


def test_a_taken_name_moves_the_whole_group_on_and_overwrites_nothing(
        parts: Parts) -> None:
    """Another file at an output's name or at its sidecar's: the output and its sidecar
    both take the next number; what was there is left as it was."""
    outbox = parts.cfg.outbox
    (outbox / "sub").mkdir()
    (outbox / "a.txt").write_bytes(b"someone else's a")
    (outbox / "sub/b.txt.json").write_bytes(b"{}")
    batch_id, _ = batched(parts, FILES)
    _downloaded(parts, batch_id)

    _deliver(parts, batch_id)

    assert _names(outbox) == ["a-1.txt", "a-1.txt.json", "a.txt", "sub/b-1.txt",
                              "sub/b-1.txt.json", "sub/b.txt.json"]
    assert (outbox / "a.txt").read_bytes() == b"someone else's a"
    assert (outbox / "sub/b.txt.json").read_bytes() == b"{}"
    assert (outbox / "a-1.txt").read_bytes() == SIGNED + FILES["a.txt"]
    assert [o["path"] for o in _json(outbox / "a-1.txt.json")["outputs"]] == ["a-1.txt"]


def test_two_files_of_one_batch_with_one_name_get_two_names(parts: Parts) -> None:
    """A file dropped again under the name of one still in flight: both are delivered,
    each under its own name, neither over the other."""
    claim(parts, {"a.txt": b"first a\n"})
    claim(parts, {"a.txt": b"second a\n"})
    batch_id = form(parts)
    _downloaded(parts, batch_id)

    _deliver(parts, batch_id)

    outbox = parts.cfg.outbox
    assert _names(outbox) == ["a-1.txt", "a-1.txt.json", "a.txt", "a.txt.json"]
    assert {(outbox / n).read_bytes() for n in ("a.txt", "a-1.txt")} == {
        SIGNED + b"first a\n", SIGNED + b"second a\n"}
    for name in ("a.txt", "a-1.txt"):
        assert _json(outbox / f"{name}.json")["outputs"][0]["sha256"] == _sha(
            (outbox / name).read_bytes())


def test_a_taken_name_in_errors_gets_the_next_number(parts: Parts) -> None:
    (parts.cfg.errors / "a.txt").write_bytes(b"an earlier failure")
    parts.provider.refusals = {"0001_a.txt": ("unsupported", "cannot sign this (scripted)")}
    batch_id, _ = batched(parts, {"a.txt": FILES["a.txt"]})
    _downloaded(parts, batch_id)

    _deliver(parts, batch_id)

    assert _names(parts.cfg.errors) == ["a-1.txt", "a-1.txt.error.json", "a.txt"]
    assert (parts.cfg.errors / "a.txt").read_bytes() == b"an earlier failure"
    assert (parts.cfg.errors / "a-1.txt").read_bytes() == FILES["a.txt"]


def test_a_delivery_resumed_after_its_outputs_were_published_publishes_nothing_twice(
        parts: Parts) -> None:
    """The first delivery stopped after the outputs were placed and synced (its lease was
    lost before the sidecars): the next finds each output at its recorded name with the
    right hash, leaves it (the same file), and writes only the sidecars."""
    batch_id, _ = batched(parts, FILES)
    _downloaded(parts, batch_id)
    asked: list[int] = []

    def lost_before_sidecars() -> None:
        # Asked before the outputs, before each of the 2 files, then before the sidecars.
        asked.append(1)
        if len(asked) == 1 + len(FILES) + 1:
            raise LeaseLost("taken over (scripted)")

    with pytest.raises(LeaseLost):
        _deliver(parts, batch_id, keep_lease=lost_before_sidecars)
    outbox = parts.cfg.outbox
    assert _names(outbox) == ["a.txt", "sub/b.txt"]
    assert {r.state for r in parts.store.files_of_batch(batch_id)} == {FileState.READY}
    inodes = {n: (outbox / n).stat().st_ino for n in ("a.txt", "sub/b.txt")}

    _deliver(parts, batch_id)

    assert _names(outbox) == ["a.txt", "a.txt.json", "sub/b.txt", "sub/b.txt.json"]
    assert {n: (outbox / n).stat().st_ino for n in ("a.txt", "sub/b.txt")} == inodes
    assert {r.state for r in parts.store.files_of_batch(batch_id)} == {FileState.PUBLISHED}
    assert [o["path"] for o in _json(outbox / "a.txt.json")["outputs"]] == ["a.txt"]


def test_a_missing_outbox_holds_the_whole_batch_back(parts: Parts) -> None:
    """The outbox's share is away: nothing is published, nothing goes to errors, and the
    files wait READY (a transient error: the batch retries)."""
    parts.provider.refusals = {"0001_a.txt": ("unsupported", "cannot sign this (scripted)")}
    batch_id, _ = batched(parts, FILES)
    _downloaded(parts, batch_id)
    parts.cfg.outbox.rmdir()

    with pytest.raises(OutboxUnavailable):
        _deliver(parts, batch_id)

    assert _names(parts.cfg.errors) == []
    states = {r.source: r.state for r in parts.store.files_of_batch(batch_id)}
    assert states == {"a.txt": FileState.REJECTED, "sub/b.txt": FileState.READY}
