"""SEAL's upload in fleet mode (issue 12, item 4: every staging on the share): the
flat ZIP is made in the holder's staging folder of the share, per lease epoch; a node
that takes a batch over uploads those very bytes (their sha256 recorded with the batch)
and never uploads twice to one remote batch; a node frozen mid-upload past its lease
sends no more of it. Real PostgreSQL, real work folders, the real SEAL adapter over
loopback HTTP to the SEAL emulator."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from folderseal.batches.machine import Machine
from folderseal.batches.views import UPLOAD_PACKAGE, Staging
from folderseal.core import crashpoints, fencing, files
from folderseal.core.errors import LeaseLost
from folderseal.core.model import BatchState, FileState
from folderseal.providers.seal import SealProvider, flatzip
from folderseal.providers.seal.client import SealClient
from folderseal.providers.seal.config import SealProviderConfig
from folderseal.providers.seal.emulator import EmulatorHandle, start_seal
from folderseal.publish.sink import Sink
from folderseal.store import LEASE_SECONDS
from folderseal.store.leases import Leases
from folderseal.store.postgres import PostgresStore, migrate
from tests.batch_parts import NODE, Parts, batched, build, drive
from tests.helpers import log_events
from tests.store_backends import Clock

FILES = {"a.txt": b"page a\n", "b.txt": b"page b\n"}
KEY = "takeover-key-0123"


@pytest.fixture
def seal(tmp_path: Path) -> Iterator[EmulatorHandle]:
    handle = start_seal(api_key=KEY, data_dir=tmp_path / "seal", step_delay=0.0)
    yield handle
    handle.stop()


def _provider(seal: EmulatorHandle, state_dir: Path) -> SealProvider:
    cfg = SealProviderConfig.model_validate({
        "kind": "seal", "base_url": seal.url, "api_key": KEY,
        "poll_interval_seconds": 0.01, "status_grace_seconds": 0.0})
    return SealProvider("remote", cfg, state_dir)


def _parts(root: Path, url: str, seal: EmulatorHandle, *, shared: bool) -> Parts:
    """Folder "scans" on a PostgreSQL store, with a real SEAL provider, staging as a
    fleet node (``shared``) or as one node."""
    migrate(url)
    clock = Clock()
    (root / "state").mkdir(parents=True, exist_ok=True)
    store = PostgresStore(url, NODE, root / "state", clock=clock,
                          leases=Leases(LEASE_SECONDS, clock))
    parts = build(root, _provider(seal, root / "state"), store=store)  # type: ignore[arg-type]
    parts.clock = clock
    parts.machine = _machine(parts, store, shared=shared)
    return parts


def _machine(parts: Parts, store: Any, *, shared: bool) -> Machine:
    sink = Sink("scans", parts.cfg, parts.work, store, store.node)
    return Machine(store, {parts.provider.name: parts.provider}, {"scans": sink},
                   {"scans": parts.work}, parts.state_dir, parts.stop, delay=parts.backoff,
                   staging=Staging(parts.state_dir, shared=shared))


def _until(parts: Parts, state: BatchState, batch_id: str,
           monkeypatch: pytest.MonkeyPatch) -> None:
    """Node a's batch thread runs the batch up to ``state`` and stops there."""
    def stop_at(point: str) -> None:
        if point == f"state:{state}":
            parts.stop.set()
    with monkeypatch.context() as patch:
        patch.setattr(crashpoints, "reached", stop_at)
        assert parts.machine.run_once()
    parts.stop.clear()
    assert parts.batch(batch_id).state == state


def _spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[Path]:
    """The path each call of ``owner.name`` (which still runs) was given."""
    paths: list[Path] = []
    real = getattr(owner, name)

    def spy(*args: Any) -> Any:
        paths.extend(a for a in args if isinstance(a, Path))
        return real(*args)
    monkeypatch.setattr(owner, name, spy)
    return paths


def _uploads(seal: EmulatorHandle) -> int:
    return sum(n for call, n in seal.request_counts().items() if "upload" in call)


def test_a_takeover_after_create_uploads_the_package_the_earlier_holder_made(
        tmp_path: Path, postgres_url: str, seal: EmulatorHandle, debug_log: io.StringIO,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Node a made the ZIP (in its epoch's staging folder on the share, not in its state
    folder) and created the remote batch, then went silent; node b (epoch N+1) uploads
    node a's very ZIP, making none of its own, once, and the batch is delivered."""
    parts = _parts(tmp_path, postgres_url, seal, shared=True)
    try:
        batch_id, ids = batched(parts, FILES)
        _until(parts, BatchState.CREATED, batch_id, monkeypatch)
        epoch_a = parts.batch(batch_id).epoch
        package = parts.work.staging_dir(batch_id, epoch_a) / UPLOAD_PACKAGE
        assert files.hash_path(package)[0] == parts.batch(batch_id).package_sha256
        assert not (parts.state_dir / "packages").exists()
        built, sent = _spy(monkeypatch, flatzip, "build_package"), \
            _spy(monkeypatch, SealClient, "upload")
        parts.clock.advance(LEASE_SECONDS + 1)  # node a is gone
        other = parts.store.connect("node-b")
        held = other.acquire_batch()
        assert held is not None and held.epoch == epoch_a + 1
        assert _uploads(seal) == 0
        b = _machine(parts, other, shared=True)
        b.advance(held)
        drive(parts, b)
        assert _uploads(seal) == 1 and sent == [package] and built == []  # never remade
        assert not log_events(debug_log, "seal.package_rebuilt")
        for file_id in ids.values():
            record = other.file(file_id)
            assert record is not None and record.state == FileState.DONE
        assert sorted(p.name for p in parts.cfg.outbox.iterdir() if p.suffix == ".txt") == \
            sorted(FILES)
        assert not (parts.work.batch_dir(batch_id) / ".staging").exists()  # cleaned up
        other.close()
    finally:
        parts.store.close()


def test_a_package_lost_before_the_upload_is_made_again_and_sent_once(
        tmp_path: Path, postgres_url: str, seal: EmulatorHandle, debug_log: io.StringIO,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One node: the ZIP in ``<state_dir>/packages/`` is gone at CREATED (a state folder
    restored without it): it is made again from the batch's files, with a warning, and
    uploaded once; the batch is delivered."""
    parts = _parts(tmp_path, postgres_url, seal, shared=False)
    try:
        batch_id, ids = batched(parts, FILES)
        _until(parts, BatchState.CREATED, batch_id, monkeypatch)
        package = parts.state_dir / "packages" / f"{batch_id}.zip"
        package.unlink()
        drive(parts)
        assert _uploads(seal) == 1
        [rebuilt] = log_events(debug_log, "seal.package_rebuilt")
        assert rebuilt["same_as_recorded"] is True  # the same entries, the same stored ZIP
        for file_id in ids.values():
            record = parts.store.file(file_id)
            assert record is not None and record.state == FileState.DONE
    finally:
        parts.store.close()


def test_an_upload_frozen_past_its_lease_sends_no_more_of_the_package(
        tmp_path: Path, seal: EmulatorHandle) -> None:
    """Each chunk of the upload leaves only while the lease holds: a node frozen after
    the first chunk (another node took the batch meanwhile) stops there. SEAL gets a
    torn body, which it drops; its batch holds nothing."""
    provider = _provider(seal, tmp_path)
    package = tmp_path / "upload.zip"
    with package.open("wb") as out:  # three chunks
        out.write(os.urandom(3 * files.CHUNK))
    remote = provider._client.create().id
    chunks = 0

    def confirm() -> None:
        nonlocal chunks
        chunks += 1
        if chunks > 2:  # the request's own check, then the first chunk's
            raise LeaseLost(f"batch b1 was taken over (after chunk {chunks - 2})")

    try:
        with fencing.fenced_by(confirm), pytest.raises(LeaseLost):
            provider._client.upload(remote, package)
        assert chunks == 3
        status = provider._client.status(remote)
        assert status is not None and status.status == "NEW" and status.documents == ()
    finally:
        provider.close()
