"""The sink publishing a result whose only output is the original file: a provider that
stores files unchanged and hands back a receipt (Clevver). The original goes into the
outbox at its source path as the primary output, its sidecar ``<name>.json`` beside it
with the provider's outcome as status and the receipt in "provider".

Real folders, a real SQLite store, the real WorkFolder and Sink; the batch is recorded
in the store as the state machine leaves it after download. A crash between the outputs and
the sidecars is a real SIGKILL of a child process at the ``output-published`` point.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from folderseal.commands import verify
from folderseal.core import metrics
from folderseal.core.config import FolderConfig
from folderseal.core.model import BatchState, DocumentResult, FileState, Output
from folderseal.intake.batching import move_into_batch
from folderseal.publish.folders import BatchContext
from folderseal.publish.sink import Sink
from folderseal.store import LEASE_SECONDS
from folderseal.store.sqlite import SqliteStore
from folderseal.work import WorkFolder

REPO = Path(__file__).resolve().parents[2]
BATCH = "b1"
FILES = {"2026/11/invoice.pdf": b"%PDF-1.7 an invoice\n%%EOF\n", "memo.txt": b"a memo\n"}


def receipt(digest: str, n: int) -> dict[str, object]:
    txid = f"{n:064x}"
    return {"asset_id": f"asset-{n}", "checksum": digest, "txid": txid,
            "url": f"https://clevver.example/tx/{txid}", "forever_url": "",
            "stored_on": "2026-11-22T10:05:00Z", "updated_at": "2026-11-22T10:05:01Z",
            "duplicate": False}


class Batch:
    """Files claimed into the work folder, batched, and downloaded from a storing
    provider (each result: the original only, and a receipt), in a real store."""

    def __init__(self, root: Path, *, archive: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        for name in ("inbox", "outbox", "errors", "archive", "state"):
            (root / name).mkdir(exist_ok=True)
        self.cfg = FolderConfig(inbox=root / "inbox", outbox=root / "outbox",
                                errors=root / "errors",
                                archive=root / "archive" if archive else None,
                                work_dir=None, provider="proof")
        self.store = SqliteStore(root / "state" / "folderseal.sqlite", "n1", clock=clock)
        self.work = WorkFolder(root / "inbox" / ".folderseal" / "work", "scans", "n1")
        self.sink = Sink("scans", self.cfg, self.work, self.store, "n1")

    def stage(self, contents: dict[str, bytes] = FILES) -> None:
        """Claim, batch and 'store' files, leaving the batch DOWNLOADED with its results."""
        self.work.adopt(self.store.store_id, set)
        entries = []
        for i, (source, data) in enumerate(contents.items()):
            path = self.work.claim_dir(f"f{i}") / source
            path.parent.mkdir(parents=True)
            path.write_bytes(data)
            st = path.stat()
            self.store.add_claim(id=f"f{i}", folder="scans", source=source, dev=st.st_dev,
                                 ino=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns,
                                 sha256=hashlib.sha256(data).hexdigest(),
                                 seen_at=time.time() - 5)
            entries.append((f"f{i}", f"{i:04d}_{path.name[-40:]}"))
        self.store.create_batch(batch_id=BATCH, folder="scans", provider="proof", entries=entries)
        move_into_batch(self.work, BATCH, "proof", self.store.files_of_batch(BATCH))
        batch = self.store.acquire_batch()
        assert batch is not None
        for state in (BatchState.CREATED, BatchState.UPLOADED, BatchState.ACCEPTING,
                      BatchState.ACCEPTED, BatchState.CLOSED):
            self.store.transition(batch, state, remote_id="remote-9" if
                                  state == BatchState.CREATED else None)
            batch = self.store.batch(BATCH) or batch
        for n, record in enumerate(self.store.files_of_batch(BATCH)):
            assert record.sha256 is not None and record.entry is not None
            self.store.set_file_result(record.id, FileState.BATCHED, DocumentResult(
                entry=record.entry, provider_document=f"asset-{n}",
                outputs=(Output(role="original", staged="", suffix="", sha256=record.sha256,
                                bytes=record.size),),
                provider_block={"receipt": receipt(record.sha256, n)}), batch_id=BATCH)
        self.store.transition(batch, BatchState.DOWNLOADED)

    def deliver(self) -> None:
        """What the state machine does with a DOWNLOADED batch: deliver, then finish."""
        if self.store.leases.get(BATCH) is None:  # a restart takes the batch over
            assert self.store.acquire_batch() is not None
        batch = self.store.batch(BATCH)
        records = self.store.files_of_batch(BATCH)
        ctx = BatchContext(batch=batch, provider_name="proof", provider_kind="clevver",
                         outcome="stored", batch_files=len(records),
                         history=self.store.batch_history(BATCH))
        self.sink.deliver(records, ctx, keep_lease=lambda: self.store.keep_lease(BATCH))
        self.sink.finish(self.store.files_of_batch(BATCH), lambda: self.store.keep_lease(BATCH))

    def original(self, source: str) -> Path:
        record = next(r for r in self.store.files_of_batch(BATCH) if r.source == source)
        return self.work.batch_dir(BATCH) / (record.entry or "")


def delivered_count(outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "folderseal_files_delivered_total",
        {"folder": "scans", "provider": "proof", "outcome": outcome}) or 0.0


def signed_count() -> float:
    return metrics.REGISTRY.get_sample_value("folderseal_files_signed_total",
                                             {"folder": "scans"}) or 0.0


def outbox_names(outbox: Path) -> list[str]:
    return sorted(str(p.relative_to(outbox)) for p in outbox.rglob("*") if p.is_file())


def test_the_original_is_published_unchanged_with_its_receipt(tmp_path: Path) -> None:
    """Each file lands at its source path, unchanged and linked (not copied) from the
    claimed file; its sidecar says "stored", lists the original and carries the
    receipt; the originals leave the work folder; verify finds it all good; the
    delivered counter counts them as stored and the signed counter not at all."""
    batch = Batch(tmp_path)
    batch.stage()
    claimed = {s: batch.original(s).stat().st_ino for s in FILES}
    before_stored, before_signed = delivered_count("stored"), signed_count()

    batch.deliver()

    outbox = batch.cfg.outbox
    assert outbox_names(outbox) == ["2026/11/invoice.pdf", "2026/11/invoice.pdf.json",
                                    "memo.txt", "memo.txt.json"]
    for n, (source, data) in enumerate(FILES.items()):
        published = outbox / source
        assert published.read_bytes() == data
        assert published.stat().st_ino == claimed[source]  # linked, not copied
        assert published.stat().st_mode & 0o777 == 0o644
        digest = hashlib.sha256(data).hexdigest()
        sidecar = json.loads((outbox / f"{source}.json").read_bytes())
        assert sidecar["status"] == "stored"
        assert sidecar["outputs"] == [{"path": source, "role": "original", "sha256": digest,
                                       "bytes": len(data)}]
        assert sidecar["provider"] == {"name": "proof", "kind": "clevver", "batch": "remote-9",
                                       "document": f"asset-{n}",
                                       "receipt": receipt(digest, n)}
        steps = [s["step"] for s in sidecar["timeline"]]
        assert steps[-3:] == ["stored", "downloaded", "delivered"] and "signed" not in steps
        assert verify.check_sidecar(outbox / f"{source}.json").problems == []
    assert {r.state for r in batch.store.files_of_batch(BATCH)} == {FileState.DONE}
    assert not any(batch.original(s).exists() for s in FILES)
    assert delivered_count("stored") == before_stored + 2
    assert signed_count() == before_signed


def test_with_an_archive_the_outbox_gets_a_copy(tmp_path: Path) -> None:
    """With an archive, the published original is a copy (it must not share the
    archived file's inode) and the original itself goes to the archive."""
    batch = Batch(tmp_path, archive=True)
    batch.stage()
    claimed = batch.original("memo.txt").stat().st_ino

    batch.deliver()

    published, archived = batch.cfg.outbox / "memo.txt", tmp_path / "archive" / "memo.txt"
    assert published.read_bytes() == archived.read_bytes() == FILES["memo.txt"]
    assert archived.stat().st_ino == claimed and published.stat().st_ino != claimed
    assert json.loads((batch.cfg.outbox / "memo.txt.json").read_bytes())["status"] == "stored"
    assert not [p for p in batch.cfg.outbox.rglob(".*") if p.is_file()]  # no temp left


def test_a_taken_name_moves_the_original_and_its_sidecar_together(tmp_path: Path) -> None:
    """Another file at the source path, or another sidecar at its sidecar's name: the
    original and its sidecar both take the next free suffix; the other files are kept."""
    batch = Batch(tmp_path)
    outbox = batch.cfg.outbox
    (outbox / "2026/11").mkdir(parents=True)
    (outbox / "2026/11/invoice.pdf").write_bytes(b"someone else's invoice")
    (outbox / "memo.txt.json").write_bytes(b"{}")
    batch.stage()

    batch.deliver()

    assert (outbox / "2026/11/invoice.pdf").read_bytes() == b"someone else's invoice"
    assert (outbox / "memo.txt.json").read_bytes() == b"{}"
    assert (outbox / "2026/11/invoice-1.pdf").read_bytes() == FILES["2026/11/invoice.pdf"]
    assert (outbox / "memo-1.txt").read_bytes() == FILES["memo.txt"]
    for name in ("2026/11/invoice-1.pdf", "memo-1.txt"):
        sidecar = json.loads((outbox / f"{name}.json").read_bytes())
        assert [o["path"] for o in sidecar["outputs"]] == [name]
        assert sidecar["status"] == "stored"
    assert "memo.txt" not in outbox_names(outbox)


def test_a_file_the_outbox_refuses_keeps_its_receipt_in_its_error_record(
        tmp_path: Path) -> None:
    """A name the outbox can hold but not with ".json" after it: the original is taken
    back out of the outbox, and the file goes to errors with a record that still
    carries the provider's document and receipt (it was stored: the proof matters)."""
    long_name = "r" * 247 + ".txt"  # 251 bytes; its sidecar's name would be 256
    batch = Batch(tmp_path)
    batch.stage({long_name: b"a stored file\n"})
    before = delivered_count("stored")

    batch.deliver()

    assert outbox_names(batch.cfg.outbox) == []
    records = list((tmp_path / "errors").rglob("*.error.json"))
    assert len(records) == 1
    data = json.loads(records[0].read_bytes())
    assert data["error"]["code"] == "name_refused"
    digest = hashlib.sha256(b"a stored file\n").hexdigest()
    assert data["provider"]["document"] == "asset-0"
    assert data["provider"]["receipt"] == receipt(digest, 0)
    assert delivered_count("stored") == before
    assert [r.state for r in batch.store.files_of_batch(BATCH)] == [FileState.FAILED]


def _first_run(root: str) -> None:
    """The child: stage and deliver until the crash point kills it."""
    batch = Batch(Path(root))
    batch.stage()
    batch.deliver()


def _crashed_after_outputs(root: Path) -> Batch:
    """Run a first delivery in a child killed right after the outputs were published;
    return the batch as a restarted node sees it (the dead node's lease expired)."""
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from tests.integration.test_sink_original "
         "import _first_run; _first_run(sys.argv[1])", str(root)],
        cwd=REPO, env={**os.environ, "FOLDERSEAL_CRASH_AT": "output-published"},
        capture_output=True, timeout=60)
    assert child.returncode == -9, child.stderr.decode()
    return Batch(root, clock=lambda: time.time() + LEASE_SECONDS + 1)


def test_a_crash_between_outputs_and_sidecars_publishes_each_original_once(
        tmp_path: Path) -> None:
    """Killed after the originals were published and synced, before any sidecar: the
    restart finds each original at its recorded name with the right hash, does not
    publish it again, writes the sidecars, then removes the originals."""
    outbox = tmp_path / "outbox"
    batch = _crashed_after_outputs(tmp_path)
    assert outbox_names(outbox) == ["2026/11/invoice.pdf", "memo.txt"]  # no sidecar yet
    inodes = {s: (outbox / s).stat().st_ino for s in FILES}

    batch.deliver()

    assert outbox_names(outbox) == ["2026/11/invoice.pdf", "2026/11/invoice.pdf.json",
                                    "memo.txt", "memo.txt.json"]
    assert {s: (outbox / s).stat().st_ino for s in FILES} == inodes  # not written again
    assert all(verify.check_sidecar(outbox / f"{s}.json").problems == [] for s in FILES)
    assert {r.state for r in batch.store.files_of_batch(BATCH)} == {FileState.DONE}


def test_a_name_taken_after_a_crash_moves_the_group_on(tmp_path: Path) -> None:
    """After the crash, the published original was replaced by another file at its
    name: the restart leaves that file alone and publishes the original and its sidecar
    under the next suffix (the careful, one-group path)."""
    outbox = tmp_path / "outbox"
    batch = _crashed_after_outputs(tmp_path)
    (outbox / "memo.txt").unlink()
    (outbox / "memo.txt").write_bytes(b"not the memo")

    batch.deliver()

    assert (outbox / "memo.txt").read_bytes() == b"not the memo"
    assert (outbox / "memo-1.txt").read_bytes() == FILES["memo.txt"]
    assert verify.check_sidecar(outbox / "memo-1.txt.json").problems == []
    assert not (outbox / "memo.txt.json").exists()
    assert {r.state for r in batch.store.files_of_batch(BATCH)} == {FileState.DONE}
