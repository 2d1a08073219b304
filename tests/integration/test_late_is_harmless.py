"""Late is harmless (issue 12, item 4), on a real PostgreSQL store with a hand clock
(standing for the database's and the hosts' own, as in tests/unit/test_leases.py), real
work, staging, outbox and errors folders, and the scripted provider:

* in fleet mode a batch stages on the share, per batch and lease epoch, beside its
  manifest (on one node, in ``<state_dir>/downloads/<batch>/``, as before);
* a node that took a batch over publishes the very bytes an earlier holder staged and
  whose sha256 the store recorded, from that holder's epoch folder;
* a node whose lease was taken over in the instant between its check and a ``link()``
  finds the name taken and then publishes nothing, removes nothing, picks no new name
  (the fenced store write before any of that fails) and logs ``lease.lost``.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from folderseal.batches.machine import Machine
from folderseal.batches.views import Staging, staging_dir
from folderseal.core import files
from folderseal.core.model import BatchState, FileState
from folderseal.publish import sink as sink_module
from folderseal.publish.folders import BatchContext
from folderseal.store import LEASE_SECONDS
from folderseal.store.leases import Leases
from folderseal.store.postgres import PostgresStore, migrate
from tests.batch_parts import NODE, Parts, batched, build
from tests.helpers import log_events
from tests.scripted import SIGNED, Scripted
from tests.store_backends import Clock

FILES = {"a.txt": b"page a\n", "b.txt": b"page b\n"}


def _on_postgres(root: Path, url: str, *, shared: bool) -> Parts:
    """The parts of folder "scans" on a PostgreSQL store, staging as a fleet node does
    (``shared``) or as one node does."""
    migrate(url)
    clock = Clock()
    (root / "state").mkdir(parents=True, exist_ok=True)
    store = PostgresStore(url, NODE, root / "state", clock=clock,
                          leases=Leases(LEASE_SECONDS, clock))
    parts = build(root, Scripted(), store=store)  # type: ignore[arg-type]
    parts.clock = clock
    parts.machine = _machine(parts, store, shared=shared)
    return parts


def _machine(parts: Parts, store: Any, *, shared: bool) -> Machine:
    """A batch thread's machine on ``store`` (its own sink), staging as told."""
    sink = sink_module.Sink("scans", parts.cfg, parts.work, store, store.node)
    return Machine(store, {parts.provider.name: parts.provider}, {"scans": sink},
                   {"scans": parts.work}, parts.state_dir, parts.stop, delay=parts.backoff,
                   staging=Staging(parts.state_dir, shared=shared))


@pytest.fixture
def fleet(tmp_path: Path, postgres_url: str) -> Iterator[Parts]:
    parts = _on_postgres(tmp_path, postgres_url, shared=True)
    yield parts
    parts.store.close()


def _take_over(parts: Parts) -> PostgresStore:
    """The lease runs out (this node paused) and node-b takes the batch: its store."""
    parts.clock.advance(LEASE_SECONDS + 1)
    other = parts.store.connect("node-b")
    assert other.acquire_batch() is not None
    return other  # type: ignore[return-value]


def _staged_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _outbox(parts: Parts) -> list[str]:
    return sorted(p.name for p in parts.cfg.outbox.iterdir())


def test_staging_is_chosen_in_one_place() -> None:
    """One node: ``<state_dir>/downloads/<batch>/`` for every turn; a fleet node: the
    batch's folder on the share, one folder per epoch, read newest first."""
    state, work = Path("/state"), _work(Path("/share"))
    one = Staging(state)
    assert one.folder(work, "b1", 3) == state / "downloads" / "b1" == staging_dir(state, "b1")
    assert one.earlier(work, "b1", 3) == ()
    assert Staging(state, shared=True).folder(work, "b1", 3) == \
        Path("/share/work/batches/b1/.staging/3")


def _work(root: Path) -> Any:
    from folderseal.work import WorkFolder
    return WorkFolder(root / "work", "scans", NODE)


def test_a_takeover_after_results_were_recorded_publishes_the_staged_bytes(
        fleet: Parts) -> None:
    """The results were recorded (DOWNLOADED) by epoch N, staged in N's folder; node b
    (epoch N+1) publishes exactly those bytes, linking the very inodes, and never calls
    the provider's download again."""
    parts = fleet
    batch_id, _ = batched(parts, FILES)
    parts.provider.script["download"] = [parts.stop.set]
    assert parts.machine.run_once()  # ends at DOWNLOADED
    parts.stop.clear()
    batch = parts.batch(batch_id)
    assert batch.state == BatchState.DOWNLOADED
    epoch_a = batch.epoch
    folder = parts.work.staging_dir(batch_id, epoch_a)
    inodes = {p.name: os.stat(p).st_ino for p in folder.iterdir()}
    downloads = len(parts.provider.called("download"))
    parts.clock.advance(LEASE_SECONDS + 1)  # node a is gone
    other = parts.store.connect("node-b")
    held = other.acquire_batch()
    assert held is not None and held.epoch == epoch_a + 1
    _machine(parts, other, shared=True).advance(held)
    assert len(parts.provider.called("download")) == downloads
    for record in other.files_of_batch(batch_id):
        assert record.state == FileState.DONE
        out = parts.cfg.outbox / record.source
        assert out.read_bytes() == SIGNED + FILES[record.source]
        assert os.stat(out).st_ino == inodes[record.entry or ""]  # the very bytes
    other.close()


def test_a_recorded_result_whose_staged_bytes_changed_is_not_published(
        fleet: Parts) -> None:
    """A staged output that no longer holds the sha256 the store recorded is never
    published (nor signed again silently): the file goes to errors with the reason."""
    parts = fleet
    batch_id, ids = batched(parts, {"a.txt": b"page a\n"})
    parts.provider.script["download"] = [parts.stop.set]
    assert parts.machine.run_once()
    parts.stop.clear()
    [staged] = parts.work.staging_dir(batch_id, parts.batch(batch_id).epoch).iterdir()
    staged.unlink()
    staged.write_bytes(b"not what was signed\n")
    parts.clock.advance(LEASE_SECONDS + 1)
    other = parts.store.connect("node-b")
    held = other.acquire_batch()
    assert held is not None
    _machine(parts, other, shared=True).advance(held)
    record = other.file(ids["a.txt"])
    assert record is not None and record.state == FileState.FAILED
    assert record.error_code == "output_changed"
    assert "a.txt" not in _outbox(parts)
    other.close()


def test_one_node_stages_in_its_state_folder(tmp_path: Path, postgres_url: str) -> None:
    """Not shared (one node): ``<state_dir>/downloads/<batch>/``, as before."""
    parts = _on_postgres(tmp_path, postgres_url, shared=False)
    try:
        batch_id, _ = batched(parts, FILES)
        parts.provider.script["download"] = [parts.stop.set]
        assert parts.machine.run_once()
        assert _staged_files(parts.state_dir / "downloads" / batch_id) == \
            ["0001_a.txt", "0002_b.txt"]
        assert not (parts.work.batch_dir(batch_id) / ".staging").exists()
    finally:
        parts.store.close()


# -- a late holder: taken over between its check and its link() ----------------------


def _downloaded(parts: Parts, batch_id: str) -> None:
    parts.provider.script["download"] = [parts.stop.set]
    assert parts.machine.run_once()
    parts.stop.clear()


def _late_link(parts: Parts, url: str, monkeypatch: pytest.MonkeyPatch,
               meanwhile: Callable[[Path], None]) -> list[PostgresStore]:
    """The first link() into the outbox comes late: just before it, node-b (on the
    database's clock, past node a's lease; node a's own count says its lease is still
    fresh: it was stopped right after its check) took the batch, and ``meanwhile`` ran
    (with the name about to be linked)."""
    taken: list[PostgresStore] = []
    real = files.link_noreplace

    def late(src: Path, dst: Path, follow: bool = False) -> None:
        if not taken:
            later = Clock(parts.clock() + LEASE_SECONDS + 1)
            other = PostgresStore(url, "node-b", parts.state_dir, clock=later,
                                  leases=Leases(LEASE_SECONDS, later))
            assert other.acquire_batch() is not None
            taken.append(other)
            meanwhile(dst)
        real(src, dst, follow)

    monkeypatch.setattr(files, "link_noreplace", late)
    return taken


def test_a_late_holder_that_finds_a_name_taken_re_plans_and_removes_nothing(
        debug_log: io.StringIO, fleet: Parts, postgres_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Taken over in the instant before its link(), node a finds the output's name
    taken (by another file): before it would give the name up it makes a fenced store
    write, which fails. It picks no new name (its plan stays as recorded), removes
    nothing (the other file stays, nothing of its own is left either), and logs
    ``lease.lost``."""
    parts = fleet
    batch_id, ids = batched(parts, FILES)
    _downloaded(parts, batch_id)
    foreign = b"someone else's file\n"
    taken = _late_link(parts, postgres_url, monkeypatch, lambda dst: dst.write_bytes(foreign))
    held = parts.store.acquire_batch()
    assert held is not None
    parts.machine.advance(held)
    assert taken
    [lost] = log_events(debug_log, "lease.lost")
    assert "taken over" in lost["reason"]
    [taken_name] = [p for p in parts.cfg.outbox.iterdir()]
    assert taken_name.read_bytes() == foreign  # not removed, not replaced
    plans = [o for r in parts.store.files_of_batch(batch_id) for o in r.outputs]
    assert plans and {o["n"] for o in plans} == {0}  # the first names, none re-planned
    assert {r.state for r in parts.store.files_of_batch(batch_id)} == {FileState.READY}
    assert ids


def test_a_late_holder_whose_name_holds_the_same_bytes_publishes_and_removes_nothing(
        debug_log: io.StringIO, fleet: Parts, postgres_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder now (node b) published the same output under the recorded name in
    that instant: node a's link finds it taken, sees its own bytes there and undoes
    nothing (it never linked that inode); its next store write fails: lease.lost, and
    b's outputs stand as b published them."""
    parts = fleet
    batch_id, _ = batched(parts, FILES)
    _downloaded(parts, batch_id)
    placed: dict[Path, int] = {}

    def node_b_publishes(dst: Path) -> None:
        staged = next(parts.work.staging_dirs(batch_id)[0].glob("0001_*"))
        os.link(staged, dst)  # b linked the very staged file, as its sink does
        placed[dst] = os.stat(dst).st_ino

    _late_link(parts, postgres_url, monkeypatch, node_b_publishes)
    held = parts.store.acquire_batch()
    assert held is not None
    parts.machine.advance(held)
    assert log_events(debug_log, "lease.lost")
    [(dst, ino)] = placed.items()
    assert os.stat(dst).st_ino == ino
    assert _outbox(parts) == ["a.txt"]  # a published nothing more: no sidecar either


def test_an_undo_removes_only_the_inode_it_linked(fleet: Parts) -> None:
    """Undoing a group removes a name only while it holds the inode this run linked
    there: one replaced meanwhile (even by the same bytes) stays."""
    parts = fleet
    dest = parts.cfg.outbox / "a.txt"
    elsewhere = parts.root / "mine"
    elsewhere.write_bytes(b"x")
    mine = os.stat(elsewhere)  # what this run linked, replaced at the name meanwhile
    dest.write_bytes(b"x")  # another inode, the same bytes
    plan = [{"role": "signed", "path": "a.txt", "sha256": hashlib.sha256(b"x").hexdigest()},
            {"role": "sidecar", "path": "a.txt.json"}]
    parts.sink._undo_group(plan, {dest: (mine.st_dev, mine.st_ino)})
    assert dest.exists()
    theirs = os.stat(dest)
    parts.sink._undo_group(plan, {dest: (theirs.st_dev, theirs.st_ino)})
    assert not dest.exists()


def test_delivery_temp_names_carry_the_batch_epoch(fleet: Parts,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every temp file the delivery writes (outputs copied, sidecars) is named with the
    batch's lease epoch; leftovers of a newer epoch are not removed."""
    parts = fleet
    batch_id, ids = batched(parts, {"a.txt": b"page a\n"})
    _downloaded(parts, batch_id)
    made: list[str] = []
    real = files.temp_name

    def seen(tag: str = "", epoch: int | None = None) -> str:
        name = real(tag, epoch)
        made.append(name)
        return name

    monkeypatch.setattr(files, "temp_name", seen)
    held = parts.store.acquire_batch()
    assert held is not None
    newer = parts.cfg.outbox / real(ids["a.txt"], held.epoch + 1)
    newer.write_bytes(b"a newer holder's temp file")
    record = parts.store.files_of_batch(batch_id)[0]
    context = BatchContext(batch=held, provider_name=parts.provider.name,
                           provider_kind=parts.provider.kind, outcome="signed", batch_files=1,
                           history=[], staged_in=(parts.work.staging_dir(batch_id, 1),))
    parts.sink._folder_of(record, {record.id}, context)
    assert newer.exists()  # a newer epoch's: maybe in use
    parts.sink.deliver(parts.store.files_of_batch(batch_id), context,
                       lambda: parts.store.keep_lease(batch_id))
    assert made and all(f"-e{held.epoch}-" in name for name in made)


def test_seal_uses_a_package_an_earlier_epoch_downloaded_when_its_sha256_matches(
        tmp_path: Path) -> None:
    """SEAL: the package epoch 1 downloaded whole (its sha256 noted beside it) is what
    epoch 2 extracts, never downloaded again; one whose bytes changed is not used."""
    from folderseal.providers import BatchView
    from folderseal.providers.seal import provider as seal

    first, second = tmp_path / ".staging" / "1", tmp_path / ".staging" / "2"
    first.mkdir(parents=True)
    package = first / seal.PACKAGE
    package.write_bytes(b"PK\x03\x04 a signed package")
    seal._note_package(package, "remote-1")
    view = BatchView(id="b1", folder="scans", documents=(), files_dir=tmp_path,
                     package=None, staging=second, staged_before=(first,))
    assert seal._downloaded_before(view, "remote-1") == package
    assert seal._downloaded_before(view, "remote-2") is None  # another remote batch's
    package.write_bytes(b"PK\x03\x04 torn")
    assert seal._downloaded_before(view, "remote-1") is None
