"""The flat ZIP package, through the real state machine, for a provider that uploads one.

The local provider signs the batch folder's files directly and needs no package; a
provider like SEAL uploads one flat ZIP. A test provider that wants a package (and
otherwise signs like the local one) shows the package is built, flat and faithful,
recorded with its hash, rebuilt when torn, and removed after cleanup.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from folderseal.core import config
from folderseal.core.errors import TransientError
from folderseal.core.model import BatchState, FileState
from folderseal.providers import BatchView, Ledger, Remote, RemoteStatus, Steps
from folderseal.providers.local.provider import LocalProvider
from folderseal.providers.seal import SealProvider
from folderseal.service.daemon import Daemon
from tests.helpers import Layout, check_sidecar
from tests.pdfs import make_pdf
from tests.provider_parts import Built


class PackagingProvider(LocalProvider):
    """Signs like the local provider, but first checks the package it would upload."""

    steps = Steps(remote=True, irrevocable=False)
    prepare = SealProvider.prepare  # the flat ZIP SEAL uploads

    def __init__(self, *args: object, fail_create: int = 0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fail_create = fail_create
        self.uploaded: list[dict[str, bytes]] = []

    def create(self, batch: BatchView, ledger: Ledger) -> str:
        if self.fail_create:
            self.fail_create -= 1
            raise TransientError("provider not reachable (test)")
        return super().create(batch, ledger)

    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus:
        if not self.uploaded:
            return RemoteStatus(Remote.NEW)  # like a remote batch nothing was uploaded to
        return super().status(batch, remote_id)

    def holds_upload(self, batch: BatchView, status: RemoteStatus) -> bool:
        return bool(self.uploaded)

    def upload(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        assert batch.package is not None
        with zipfile.ZipFile(batch.package) as package:
            assert package.testzip() is None
            self.uploaded.append({i.filename: package.read(i) for i in package.infolist()})


def _daemon(layout: Layout, fail_create: int = 0) -> tuple[Daemon, PackagingProvider]:
    built = Built(lambda name, cfg, state_dir: PackagingProvider(name, cfg, state_dir,
                                                                 fail_create=fail_create))
    daemon = Daemon(config.load(layout.config), delay=lambda attempts: 0.0,
                    build_provider=built)
    daemon.prepare()
    return daemon, built.only()


def _drop(layout: Layout) -> dict[str, bytes]:
    files = {"a/Bericht.pdf": make_pdf(None, text="a"), "b/Bericht.pdf": make_pdf(None, text="b"),
             "Rechnung für März.txt": "März".encode() * 300}
    for source, data in files.items():
        (layout.inbox / source).parent.mkdir(parents=True, exist_ok=True)
        (layout.inbox / source).write_bytes(data)
    return files


def _batch(daemon: Daemon, sources: list[str]) -> tuple[str, list[str]]:
    intake = daemon.intakes["scans"]
    ids = [intake.claim_now(source)[0] for source in sources]
    [batch_id] = intake.form_batches(float("inf"))
    return batch_id, [i for i in ids if i]


def test_the_package_is_flat_faithful_and_removed_after_cleanup(tmp_path: Path) -> None:
    """Uploaded: one stored ZIP, flat ASCII-safe unique names (twins from two subfolders
    apart), each entry byte-identical to its file; hash recorded; removed once cleaned."""
    layout = Layout(tmp_path)
    layout.write()
    files = _drop(layout)
    daemon, provider = _daemon(layout)
    try:
        batch_id, ids = _batch(daemon, list(files))
        assert daemon.store is not None
        store = daemon.store
        daemon.drain(lambda: store.batch(batch_id).state == BatchState.CLEANED, timeout=60)
        [entries] = provider.uploaded
        names = sorted(entries)
        assert names == ["0001_Bericht.pdf", "0002_Bericht.pdf", "0003_Rechnung_fur_Marz.txt"]
        assert all("/" not in n and n.isascii() for n in names)
        by_entry = {store.file(i).entry: store.file(i) for i in ids}
        for entry, data in entries.items():
            assert hashlib.sha256(data).hexdigest() == by_entry[entry].sha256
        batch = store.batch(batch_id)
        assert batch is not None and batch.package_sha256 and batch.package_bytes
        assert not (layout.state / "packages" / f"{batch_id}.zip").exists()
        for source in files:
            check_sidecar(layout.outbox / f"{source}.json", layout)
    finally:
        daemon.close()


def test_a_torn_package_is_rebuilt_before_it_is_uploaded(tmp_path: Path) -> None:
    """A package that no longer matches its recorded hash (a crash tore it) is rebuilt,
    and the rebuilt one is what the provider receives."""
    layout = Layout(tmp_path)
    layout.write()
    files = _drop(layout)
    daemon, provider = _daemon(layout, fail_create=1)
    try:
        batch_id, ids = _batch(daemon, list(files))
        assert daemon.store is not None
        store = daemon.store
        daemon.drain(lambda: store.batch(batch_id).package_sha256 is not None, timeout=30)
        batch = store.batch(batch_id)
        assert batch is not None and batch.state == BatchState.BATCHED  # create failed: waiting
        package = layout.state / "packages" / f"{batch_id}.zip"
        recorded = batch.package_sha256
        package.write_bytes(package.read_bytes()[:100])  # torn
        daemon.drain(lambda: store.batch(batch_id).state == BatchState.CLEANED, timeout=60)
        [entries] = provider.uploaded
        assert {hashlib.sha256(d).hexdigest() for d in entries.values()} == \
            {store.file(i).sha256 for i in ids}
        assert store.batch(batch_id).package_sha256 == recorded  # same content, same package
        assert all(store.file(i).state == FileState.DONE for i in ids)
    finally:
        daemon.close()
