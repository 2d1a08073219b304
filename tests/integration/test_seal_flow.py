"""The real state machine, store and sink driving the SEAL adapter over a scripted fake SEAL.

Each test loses an answer, a connection or a request around one lifecycle step and
checks the contract: never two uploads to one batch, never a second accept of a
batch that may have been accepted, every file sealed once or in errors with a reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from folderseal.batches.send import MAX_RECREATES
from folderseal.commands.retry import retry
from folderseal.core import config
from folderseal.core.configbase import ProviderSection
from folderseal.core.model import BatchState, DocumentResult, FileState
from folderseal.providers import BatchView
from folderseal.providers.seal import SealProvider
from folderseal.providers.seal.config import SealProviderConfig
from folderseal.service.daemon import Daemon
from tests.helpers import Layout, error_records, sidecars
from tests.pdfs import make_pdf
from tests.seal_fake import FakeSealApi

KEY = "integration-key-0123"


def _layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path, provider={"kind": "seal", "base_url": "http://127.0.0.1:9",
                                        "api_key": KEY, "poll_interval_seconds": 0.01,
                                        "status_grace_seconds": 0.2})
    layout.write()
    return layout


def _daemon(layout: Layout, fake: FakeSealApi, provider: type[SealProvider] = SealProvider
            ) -> Daemon:
    """A prepared daemon whose SEAL provider (``provider``) talks to ``fake``."""
    def to_fake(name: str, cfg: ProviderSection, state_dir: Path) -> SealProvider:
        assert isinstance(cfg, SealProviderConfig)
        return provider(name, cfg, state_dir, transport=httpx.MockTransport(fake))

    daemon = Daemon(config.load(layout.config), delay=lambda attempts: 0.0,
                    build_provider=to_fake)
    daemon.prepare()
    return daemon


def _drop(layout: Layout) -> list[str]:
    (layout.inbox / "a.pdf").write_bytes(make_pdf(None, text="a"))
    (layout.inbox / "b.txt").write_text("b")
    return ["a.pdf", "b.txt"]


def _run(daemon: Daemon, names: list[str], timeout: float = 30) -> list[str]:
    intake = daemon.intakes["scans"]
    ids = [intake.claim_now(name)[0] for name in names]
    intake.form_batches(float("inf"))
    assert daemon.store is not None
    store = daemon.store
    final = (FileState.DONE, FileState.FAILED)
    daemon.drain(lambda: all(store.file(i).state in final for i in ids), timeout)
    return [i for i in ids if i]


def _drain(daemon: Daemon, ids: list[str]) -> None:
    """Let the daemon work until the files are delivered, then close it."""
    try:
        assert daemon.store is not None
        store = daemon.store
        daemon.drain(lambda: all(store.file(i).state == FileState.DONE for i in ids), 30)
    finally:
        daemon.close()


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return _layout(tmp_path)


def _sealed(layout: Layout) -> set[str]:
    return {json.loads(p.read_text())["source"] for p in sidecars(layout.outbox)}


def test_a_clean_run_makes_each_call_once(layout: Layout) -> None:
    """create, upload, accept, download and delete each happen once; both files sealed."""
    fake = FakeSealApi(key=KEY)
    daemon = _daemon(layout, fake)
    try:
        _run(daemon, _drop(layout))
    finally:
        daemon.close()
    assert _sealed(layout) == {"a.pdf", "b.txt"}
    for operation in ("create", "upload", "accept", "download", "delete"):
        assert fake.count(operation) == 1, operation
    sidecar = json.loads((layout.outbox / "a.pdf.json").read_text())
    assert sidecar["provider"]["kind"] == "seal" and sidecar["provider"]["batch"] == "2123"
    assert sidecar["provider"]["document"] == "1"


@pytest.mark.parametrize("action", ["timeout-after", "500-after"])
def test_an_upload_whose_answer_was_lost_is_not_sent_again(layout: Layout, action: str) -> None:
    """After an upload that reached SEAL but whose answer was lost, the status shows the
    manifest and the batch goes on without a second upload."""
    fake = FakeSealApi(key=KEY)
    fake.script("upload", action)
    daemon = _daemon(layout, fake)
    try:
        _run(daemon, _drop(layout))
    finally:
        daemon.close()
    assert fake.count("upload") == 1 and fake.count("accept") == 1
    assert _sealed(layout) == {"a.pdf", "b.txt"}


def test_an_upload_that_may_not_have_arrived_goes_to_a_new_batch(layout: Layout) -> None:
    """After an upload that failed (500), nothing shows within the grace: the batch is never
    uploaded to twice; it is abandoned and a new one gets the package."""
    fake = FakeSealApi(key=KEY)
    fake.script("upload", "500-before")
    daemon = _daemon(layout, fake)
    try:
        _run(daemon, _drop(layout))
    finally:
        daemon.close()
    assert fake.count("upload", 2123) == 1 and fake.batches[2123].status == "DELETED"
    assert fake.count("upload", 2124) == 1 and fake.count("accept", 2124) == 1
    assert _sealed(layout) == {"a.pdf", "b.txt"}


def test_a_batch_with_a_wrong_document_list_is_abandoned(layout: Layout) -> None:
    """A batch whose documents do not match the manifest (a double upload) is deleted and
    a new one created; the files are signed once, in the new batch."""
    class UploadedTwice(FakeSealApi):
        def _do(self, operation: str, batch_id: int | None, request: httpx.Request
                ) -> httpx.Response:
            response = super()._do(operation, batch_id, request)
            if operation == "upload" and batch_id == 2123:
                super()._do(operation, batch_id, request)  # as if uploaded twice
            return response

    fake = UploadedTwice(key=KEY)
    fake.script("upload", "timeout-after")
    daemon = _daemon(layout, fake)
    try:
        _run(daemon, _drop(layout))
    finally:
        daemon.close()
    assert fake.batches[2123].status == "DELETED"
    assert fake.count("accept", 2123) == 0 and fake.count("accept", 2124) == 1
    assert _sealed(layout) == {"a.pdf", "b.txt"}


def test_a_seal_that_keeps_listing_the_wrong_documents_fails_the_batch(layout: Layout) -> None:
    """A SEAL that lists the wrong documents after every upload (here: each upload shows
    twice) is not fed new remote batches without end: after MAX_RECREATES mismatches the
    batch fails with remote_mismatch, nothing accepted, each file in errors saying so; the
    abandons are counted in the store as mismatches."""
    class ListsEachFileTwice(FakeSealApi):
        def _do(self, operation: str, batch_id: int | None, request: httpx.Request
                ) -> httpx.Response:
            response = super()._do(operation, batch_id, request)
            if operation == "upload":
                super()._do(operation, batch_id, request)  # every batch lists each file twice
            return response

    fake = ListsEachFileTwice(key=KEY)
    daemon = _daemon(layout, fake)
    try:
        ids = _run(daemon, _drop(layout), timeout=20)
        assert daemon.store is not None
        store = daemon.store
        assert all(store.file(i).state == FileState.FAILED for i in ids)
        batch = store.batch(store.file(ids[0]).batch_id)
        assert batch is not None and batch.state == BatchState.FAILED
        assert batch.error_code == "remote_mismatch"
        assert store.abandons(batch.id) == (0, MAX_RECREATES)
    finally:
        daemon.close()
    assert fake.count("create") == MAX_RECREATES + 1
    assert fake.count("upload") == MAX_RECREATES + 1 and fake.count("accept") == 0
    assert {json.loads(p.read_text())["error"]["code"] for p in error_records(layout.errors)} \
        == {"remote_mismatch"}


def test_lost_upload_answers_do_not_use_up_the_mismatch_limit(layout: Layout) -> None:
    """Uploads that never show (the network lost them) abandon their remote batches as
    lost answers: more of them than MAX_RECREATES still end in a sealed batch."""
    fake = FakeSealApi(key=KEY)
    fake.script("upload", *["500-before"] * (MAX_RECREATES + 2))
    daemon = _daemon(layout, fake)
    try:
        ids = _run(daemon, _drop(layout))
        assert daemon.store is not None
        batch_id = daemon.store.file(ids[0]).batch_id
        assert daemon.store.abandons(batch_id) == (MAX_RECREATES + 2, 0)
    finally:
        daemon.close()
    assert fake.count("accept") == 1 and fake.count("create") == MAX_RECREATES + 3
    assert _sealed(layout) == {"a.pdf", "b.txt"}


@pytest.mark.parametrize("action", ["timeout-after", "500-after"])
def test_an_accept_whose_answer_was_lost_is_not_sent_again(layout: Layout, action: str) -> None:
    """After an accept that reached SEAL, the status shows it accepted: no second accept."""
    fake = FakeSealApi(key=KEY)
    fake.script("accept", action)
    daemon = _daemon(layout, fake)
    try:
        _run(daemon, _drop(layout))
    finally:
        daemon.close()
    assert fake.count("accept") == 1
    assert _sealed(layout) == {"a.pdf", "b.txt"}


def test_an_accept_that_never_arrived_is_sent_again(layout: Layout) -> None:
    """An accept refused before SEAL did anything (500): the status still says UPLOADED with
    the manifest, so it is sent again, and the batch is signed once."""
    fake = FakeSealApi(key=KEY)
    fake.script("accept", "500-before")
    daemon = _daemon(layout, fake)
    try:
        _run(daemon, _drop(layout))
    finally:
        daemon.close()
    assert fake.count("accept") == 2 and _sealed(layout) == {"a.pdf", "b.txt"}


def test_a_refused_create_fails_the_batch_and_retry_rebatches(layout: Layout) -> None:
    """A 400 on create sends the files to errors with the status and body (key masked);
    retry puts them back into the inbox, and they are sealed on the next run."""
    fake = FakeSealApi(key=KEY)
    fake.script("create", "400")
    daemon = _daemon(layout, fake)
    try:
        _run(daemon, _drop(layout))
    finally:
        daemon.close()
    records = [json.loads(p.read_text()) for p in error_records(layout.errors)]
    assert len(records) == 2
    for record in records:
        assert record["error"]["code"] == "http_400"
        assert "HTTP 400" in record["error"]["message"] and KEY not in json.dumps(record)
    assert retry(config.load(layout.config), None) == 0
    assert sorted(p.name for p in layout.inbox.iterdir() if p.is_file()) == ["a.pdf", "b.txt"]
    daemon = _daemon(layout, fake)
    try:
        _run(daemon, ["a.pdf", "b.txt"])
    finally:
        daemon.close()
    assert _sealed(layout) == {"a.pdf", "b.txt"} and fake.count("accept") == 1


def test_a_failure_after_accept_is_retried_on_the_same_remote_batch(layout: Layout) -> None:
    """A 400 while polling an accepted batch fails it as "may have been signed"; retry asks
    the same remote batch again and never submits the files again."""
    fake = FakeSealApi(key=KEY)
    daemon = _daemon(layout, fake)
    fake.script("status", None, None, "400")  # the poll after accept is refused
    try:
        ids = _run(daemon, _drop(layout))
        assert daemon.store is not None
        batch = daemon.store.batch(daemon.store.file(ids[0]).batch_id)
        assert batch is not None and batch.state == BatchState.FAILED
        assert batch.failed_step == BatchState.ACCEPTED
    finally:
        daemon.close()
    assert len(error_records(layout.errors)) == 2
    assert retry(config.load(layout.config), None) == 0
    assert error_records(layout.errors) == []
    _drain(_daemon(layout, fake), ids)
    assert _sealed(layout) == {"a.pdf", "b.txt"}
    assert fake.count("create") == 1 and fake.count("upload") == 1
    assert fake.count("accept") == 1


@pytest.mark.parametrize("reason", ["", "the document's signature field is locked"])
def test_a_document_the_provider_did_not_sign_fails_alone(layout: Layout, reason: str) -> None:
    """signingResult_Success false for one document: it goes to errors, the other is out;
    its record passes on SEAL's reason when SEAL gives one, and says what to do."""
    fake = FakeSealApi(key=KEY)
    daemon = _daemon(layout, fake)
    intake = daemon.intakes["scans"]
    names = _drop(layout)
    ids = [intake.claim_now(n)[0] for n in names]
    assert daemon.store is not None
    intake.form_batches(float("inf"))
    entry_of = {daemon.store.file(i).source: daemon.store.file(i).entry for i in ids}
    fake.fail_documents.add(entry_of["b.txt"])
    if reason:
        fake.fail_reasons[entry_of["b.txt"]] = reason
    try:
        store = daemon.store
        daemon.drain(lambda: all(store.file(i).state in (FileState.DONE, FileState.FAILED)
                                 for i in ids), 30)
    finally:
        daemon.close()
    assert _sealed(layout) == {"a.pdf"}
    [record] = [json.loads(p.read_text()) for p in error_records(layout.errors)]
    assert record["source"] == "b.txt" and record["error"]["code"] == "not_signed"
    message = record["error"]["message"]
    if reason:
        assert f"SEAL did not sign it (signingResult_Message: {reason})" in message
    else:
        assert "gave no reason: ask SEAL's administrator" in message
    assert "`folderseal retry`" in message


def test_429_waits_as_long_as_seal_asks(layout: Layout) -> None:
    """A 429 postpones the batch by its Retry-After (7 s here), not the usual backoff."""
    fake = FakeSealApi(key=KEY)
    fake.script("create", "429")
    daemon = _daemon(layout, fake)
    try:
        intake = daemon.intakes["scans"]
        (layout.inbox / "a.pdf").write_bytes(make_pdf(None))
        assert intake.claim_now("a.pdf")[0] is not None
        [batch_id] = intake.form_batches(float("inf"))
        assert daemon.store is not None
        store = daemon.store
        daemon.drain(lambda: store.batch(batch_id).attempts == 1, 10)
        batch = store.batch(batch_id)
        assert batch is not None and batch.state == BatchState.BATCHED
        assert batch.next_attempt_at is not None
        assert 6.5 <= batch.next_attempt_at - daemon.store.clock() <= 7.0
    finally:
        daemon.close()


def test_a_failed_delete_never_blocks_delivery(layout: Layout) -> None:
    """BatchDeleteCache failing leaves the files delivered; it is retried until it works."""
    fake = FakeSealApi(key=KEY)
    fake.script("delete", "500-before", "500-before")
    daemon = _daemon(layout, fake)
    try:
        ids = _run(daemon, _drop(layout))
        assert daemon.store is not None
        store = daemon.store
        assert _sealed(layout) == {"a.pdf", "b.txt"}  # delivered before any delete worked
        batch_id = store.file(ids[0]).batch_id
        daemon.drain(lambda: store.batch(batch_id).state == BatchState.CLEANED, 30)
    finally:
        daemon.close()
    assert fake.count("delete") == 3 and fake.batches[2123].status == "DELETED"


def test_an_unknown_status_counts_as_running_until_max_wait(tmp_path: Path) -> None:
    """A status name SEAL never documented is logged and waited on, then the batch fails
    after max_wait_seconds as "may have been signed"."""
    layout = Layout(tmp_path, provider={"kind": "seal", "base_url": "http://127.0.0.1:9",
                                        "api_key": KEY, "poll_interval_seconds": 0.05,
                                        "max_wait_seconds": 0.5})
    layout.write()
    class OddStatus(FakeSealApi):
        def _do(self, operation: str, batch_id: int | None, request: httpx.Request
                ) -> httpx.Response:
            if operation == "status" and self.batches.get(batch_id or -1) and \
                    self.batches[batch_id or -1].status == "ACCEPTED":
                return httpx.Response(200, json={
                    "id": batch_id, "status": "SPLINED",
                    "documents": self.batches[batch_id or -1].documents})
            return super()._do(operation, batch_id, request)

    fake = OddStatus(key=KEY)
    daemon = _daemon(layout, fake)
    try:
        _run(daemon, _drop(layout))
    finally:
        daemon.close()
    records = [json.loads(p.read_text()) for p in error_records(layout.errors)]
    assert {r["error"]["code"] for r in records} == {"never_closed"}
    assert fake.count("accept") == 1 and fake.count("status") > 3


def test_a_batch_refused_at_accept_is_retried_at_accept(layout: Layout) -> None:
    """An AcceptBatch answered 400 fails the batch at ACCEPTING; retry goes back there, the
    status shows it never accepted, and accept is sent again: the files are signed once."""
    fake = FakeSealApi(key=KEY)
    fake.script("accept", "400")
    daemon = _daemon(layout, fake)
    try:
        ids = _run(daemon, _drop(layout))
        assert daemon.store is not None
        batch = daemon.store.batch(daemon.store.file(ids[0]).batch_id)
        assert batch is not None and batch.failed_step == BatchState.ACCEPTING
    finally:
        daemon.close()
    assert retry(config.load(layout.config), None) == 0
    _drain(_daemon(layout, fake), ids)
    assert _sealed(layout) == {"a.pdf", "b.txt"}
    assert fake.count("accept") == 2 and fake.count("upload") == 1


def test_a_provider_surprise_postpones_the_batch_only(layout: Layout) -> None:
    """An exception nobody foresaw in a provider step is logged, the batch waits and then
    goes on; the daemon is not stopped by it."""
    fake = FakeSealApi(key=KEY)
    calls = []

    class Surprising(SealProvider):
        def download(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("an odd answer nobody foresaw")
            return super().download(batch, remote_id)

    daemon = _daemon(layout, fake, Surprising)
    try:
        _run(daemon, _drop(layout))
    finally:
        daemon.close()
    assert len(calls) == 2 and _sealed(layout) == {"a.pdf", "b.txt"}


def test_a_lost_store_with_seal_sends_files_to_errors_not_the_inbox(layout: Layout) -> None:
    """recover, for a remote provider's batch the store forgot, holds its files in errors
    with a "check with the provider" record; it never submits them again."""
    from folderseal.service.recover import recover

    batch = layout.work / "batches" / "01a2feedbeef"
    batch.mkdir(parents=True)
    (batch / "0001_scan.pdf").write_bytes(make_pdf(None, text="lost"))
    layout.incoming.mkdir(parents=True, exist_ok=True)
    assert recover(config.load(layout.config)) == 0
    assert not any(p.is_file() for p in layout.inbox.rglob("*") if ".folderseal" not in p.parts)
    [record] = [json.loads(p.read_text()) for p in error_records(layout.errors)]
    assert record["error"]["code"] == "store_lost" and "check" in record["error"]["message"]
    assert (layout.errors / "scan.pdf").exists()
