"""The Clevver adapter over httpx.MockTransport: a scripted in-memory Clevver and an
in-test ledger. Lost answers, checksum mismatches, refusals and receipts without a txid."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from folderseal.core import crashpoints
from folderseal.core.errors import ConfigError, NotSent, ProviderError, Throttled, TransientError
from folderseal.providers import (
    Abandon,
    BatchView,
    Document,
    Remote,
    RemoteDocument,
    build,
)
from folderseal.providers.clevver import ClevverProvider
from folderseal.providers.clevver.config import ClevverProviderConfig

TOKEN = "tok-for-the-clevver-adapter-tests"


# -- a scripted Clevver -------------------------------------------------------------------

@dataclass
class FakeBatch:
    id: str
    status: str = "created"
    assets: list[str] = field(default_factory=list)
    polls: int = 0


class FakeClevver:
    """Keeps batches and assets like Clevver (an attach adds an asset, twice if sent
    twice), records every call, and misbehaves as scripted: ``script("attach",
    "timeout-after")`` makes the next attach do its work and then time out."""

    def __init__(self) -> None:
        self.batches: dict[str, FakeBatch] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.scripts: dict[str, list[str]] = {}
        self.bodies: list[bytes] = []

    def script(self, operation: str, *actions: str) -> None:
        self.scripts.setdefault(operation, []).extend(actions)

    def count(self, operation: str, batch: str | None = None) -> int:
        return sum(1 for op, b in self.calls if op == operation and batch in (None, b))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"message": "Unauthenticated."})
        operation, target = self._route(request)
        self.calls.append((operation, target))
        queue = self.scripts.get(operation)
        action = queue.pop(0) if queue else ""
        if action == "timeout-before":
            raise httpx.ReadTimeout("timed out", request=request)
        if action == "connect":
            raise httpx.ConnectError("connection refused", request=request)
        if action == "429":
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow"})
        if action.isdigit():
            return httpx.Response(int(action), json={"status": "error",
                                                      "message": f"scripted {action}"})
        if action.startswith("say:"):
            status, message = action[4:].split(":", 1)
            return httpx.Response(int(status), json={"status": "error", "message": message})
        response = getattr(self, operation)(request, target, action)
        if action == "timeout-after":
            raise httpx.ReadTimeout("timed out", request=request)
        if action == "500-after":
            return httpx.Response(500, text="oops")
        return response

    def _route(self, request: httpx.Request) -> tuple[str, str]:
        parts = request.url.path.strip("/").split("/")
        if parts == ["api", "batches"]:
            return ("create" if request.method == "POST" else "list"), ""
        if parts[:2] == ["api", "files"]:
            return "receipt", parts[2]
        if len(parts) == 4 and parts[3] == "files":
            return "attach", parts[2]
        if len(parts) == 4 and parts[3] == "start":
            return "start", parts[2]
        return "status", parts[2]

    def _batch(self, batch: FakeBatch, message: str = "") -> dict[str, Any]:
        progress = {"created": 0, "processing": 10.5 * batch.polls, "delivered": 100}
        return {"status": "success", "message": message,
                "data": {"id": batch.id, "status": batch.status,
                         "progress": progress.get(batch.status, 0)}}

    def create(self, request: httpx.Request, target: str, action: str) -> httpx.Response:
        batch = FakeBatch(str(uuid.uuid4()))
        self.batches[batch.id] = batch
        return httpx.Response(201, json=self._batch(batch, "Batch created successfully"))

    def list(self, request: httpx.Request, target: str, action: str) -> httpx.Response:
        return httpx.Response(200, json={"status": "success", "data": []})

    def attach(self, request: httpx.Request, target: str, action: str) -> httpx.Response:
        batch = self.batches.get(target)
        if batch is None:
            return httpx.Response(404, json={"message": "batch not found"})
        content = _file_part(request)
        self.bodies.append(content)
        checksum = hashlib.sha256(content).hexdigest()
        if action == "bad-checksum":
            checksum = hashlib.sha256(content + b"!").hexdigest()
        asset = {"id": str(uuid.uuid4()), "status": "created", "txid": None,
                 "checksum": "" if action == "no-checksum" else checksum,
                 "file_size": len(content), "name": "x", "duplicate": False, "batch": target,
                 "true_checksum": checksum}
        self.assets[asset["id"]] = asset
        batch.assets.append(asset["id"])
        return httpx.Response(200, json={"message": "Asset successfully uploaded",
                                         "status": "success", "data": asset})

    def start(self, request: httpx.Request, target: str, action: str) -> httpx.Response:
        batch = self.batches[target]
        batch.status = "processing"
        return httpx.Response(200, json=self._batch(batch, "Job batch started"))

    def status(self, request: httpx.Request, target: str, action: str) -> httpx.Response:
        batch = self.batches.get(target)
        if batch is None or action == "gone":
            return httpx.Response(404, json={"message": "not found"})
        if action:
            return httpx.Response(200, json={"data": {"id": batch.id, "status": action}})
        if batch.status == "processing":
            batch.polls += 1
            if batch.polls >= 3:
                batch.status = "delivered"
                for asset_id in batch.assets:
                    self.assets[asset_id].update(
                        txid="0x" + asset_id.replace("-", ""), status="cached",
                        url=f"https://clevver.test/f/{asset_id}",
                        forever_url=f"https://chain.test/{asset_id}", stored_on="chain",
                        checksum=self.assets[asset_id]["true_checksum"])
        return httpx.Response(200, json=self._batch(batch))

    def receipt(self, request: httpx.Request, target: str, action: str) -> httpx.Response:
        asset = self.assets.get(target)
        if asset is None:
            return httpx.Response(404, json={"message": "not found"})
        shown = dict(asset)
        if action == "no-txid":
            shown["txid"] = None
        if action == "bad-checksum":
            shown["checksum"] = "0" * 64
        return httpx.Response(200, json={"status": "success", "data": shown})


def _file_part(request: httpx.Request) -> bytes:
    """The bytes of the multipart field ``file``."""
    boundary = request.headers["Content-Type"].split("boundary=")[1].encode()
    for part in request.content.split(b"--" + boundary):
        head, _, body = part.partition(b"\r\n\r\n")
        if b'name="file"' in head:
            return body.removesuffix(b"\r\n")
    raise AssertionError("no file field")


# -- an in-test ledger -------------------------------------------------------------------

class FakeLedger:
    """Keeps each document's latest note, as the state machine's store column does."""

    def __init__(self) -> None:
        self.notes: dict[str, RemoteDocument] = {}
        self.rejected: dict[str, tuple[str, str]] = {}
        self.log: list[tuple[str, str, str | None]] = []
        self.stop = False

    def begin(self, documents: list[Document]) -> list[int]:
        return [d.attempts + 1 for d in documents]

    def forgive(self, documents: list[Document]) -> None:
        pass

    def stopping(self) -> bool:
        return self.stop

    def sending(self, document: Document, remote_id: str) -> None:
        self.notes[document.file_id] = RemoteDocument(batch=remote_id, id=None)
        self.log.append(("sending", document.entry, remote_id))

    def answered(self, document: Document, remote: RemoteDocument) -> None:
        self.notes[document.file_id] = remote
        self.log.append(("answered", document.entry, remote.id))

    def reject(self, document: Document, code: str, message: str) -> None:
        self.rejected[document.file_id] = (code, message)

    def view(self, view: BatchView) -> BatchView:
        """The batch as the state machine would hand it next: notes, rejected files gone."""
        return dataclasses.replace(view, documents=tuple(
            dataclasses.replace(d, remote=self.notes.get(d.file_id))
            for d in view.documents if d.file_id not in self.rejected))


# -- fixtures ----------------------------------------------------------------------------

def _cfg(**overrides: object) -> ClevverProviderConfig:
    return ClevverProviderConfig.model_validate({
        "kind": "clevver", "base_url": "http://clevver.test", "api_token": TOKEN, **overrides})


def _provider(tmp_path: Path, api: Any, **overrides: object) -> ClevverProvider:
    transport = api if isinstance(api, httpx.BaseTransport) else httpx.MockTransport(api)
    return ClevverProvider("proof", _cfg(**overrides), tmp_path, transport=transport)


def _view(tmp_path: Path, contents: list[bytes]) -> BatchView:
    folder = tmp_path / "batch"
    folder.mkdir(exist_ok=True)
    documents = []
    for number, content in enumerate(contents):
        entry = f"doc{number}.pdf"
        (folder / entry).write_bytes(content)
        st = (folder / entry).stat()
        documents.append(Document(entry=entry, file_id=f"f{number}",
                                  sha256=hashlib.sha256(content).hexdigest(),
                                  size=len(content), dev=st.st_dev, ino=st.st_ino, attempts=0))

    def open_document(document: Document) -> int:
        return os.open(folder / document.entry, os.O_RDONLY | os.O_CLOEXEC)

    return BatchView(id="b1", folder="scans", documents=tuple(documents), files_dir=folder,
                     package=None, staging=tmp_path / "staging", open_document=open_document)


CONTENTS = [b"first file", b"second file", b"third file"]


def _deliver(provider: ClevverProvider, view: BatchView, remote: str) -> None:
    for _ in range(3):
        provider.status(view, remote)


# -- the lifecycle -----------------------------------------------------------------------

def test_the_whole_lifecycle(tmp_path: Path) -> None:
    """create → attach each file → start → status until delivered → a receipt per file."""
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS)
    assert provider.steps.outcome == "stored" and provider.steps.irrevocable
    assert provider.max_batch_files == 20
    assert provider.prepare(view, ledger) is None
    remote = provider.create(view, FakeLedger())
    provider.upload(view, remote, ledger)
    view = ledger.view(view)
    opened = provider.status(view, remote)
    assert opened.state == Remote.UPLOADED and opened.batch == remote
    assert provider.holds_upload(view, opened)
    provider.accept(view, remote, ledger)
    running = provider.status(view, remote)
    assert running.state == Remote.RUNNING and running.progress == 10.5
    _deliver(provider, view, remote)
    assert provider.status(view, remote).state == Remote.CLOSED
    results = provider.download(view, remote)
    assert [r.ok for r in results] == [True, True, True]
    for document, result in zip(view.documents, results, strict=True):
        assert document.remote is not None
        receipt = result.provider_block["receipt"]
        assert receipt["asset_id"] == result.provider_document == document.remote.id
        assert receipt["checksum"] == document.sha256
        assert receipt["txid"].startswith("0x") and receipt["forever_url"]
        assert set(receipt) == {"asset_id", "checksum", "txid", "url", "forever_url",
                                "stored_on", "updated_at", "duplicate"}
        (output,) = result.outputs
        assert (output.role, output.staged, output.suffix) == ("original", "", "")
        assert (output.sha256, output.bytes) == (document.sha256, document.size)
    assert api.bodies == CONTENTS
    assert api.count("attach") == 3 and api.count("start") == 1
    # Receipts already read are not asked again at the next poll.
    provider.download(view, remote)
    assert api.count("receipt") == 3
    assert [step for step, _, _ in ledger.log] == ["sending", "answered"] * 3


def test_a_5xx_attach_answer_leaves_the_file_in_doubt(tmp_path: Path) -> None:
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS)
    remote = provider.create(view, FakeLedger())
    api.script("attach", "", "503")
    with pytest.raises(TransientError, match="HTTP 503"):
        provider.upload(view, remote, ledger)
    # A 5xx may come after the work: the second file is in doubt, the batch abandoned.
    with pytest.raises(Abandon) as abandon:
        provider.upload(ledger.view(view), remote, ledger)
    assert abandon.value.lost_answer
    assert api.count("attach") == 2


def test_a_lost_attach_answer_abandons_the_remote_batch(tmp_path: Path) -> None:
    """The attach did its work but the answer timed out: that remote batch may hold the
    file twice if it is sent again, so it is never started; the files go to a new one."""
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS)
    first = provider.create(view, FakeLedger())
    api.script("attach", "", "timeout-after")
    with pytest.raises(TransientError, match="ReadTimeout"):
        provider.upload(view, first, ledger)
    assert ledger.notes["f0"].id and ledger.notes["f1"].in_doubt and "f2" not in ledger.notes
    with pytest.raises(Abandon, match="doc1.pdf") as abandon:
        provider.upload(ledger.view(view), first, ledger)
    assert abandon.value.lost_answer
    assert api.count("attach") == 2                 # nothing more was sent to it
    second = provider.create(view, FakeLedger())
    provider.upload(ledger.view(view), second, ledger)
    view = ledger.view(view)
    assert all(d.remote is not None and d.remote.batch == second for d in view.documents)
    assert provider.holds_upload(view, provider.status(view, second))
    assert not provider.holds_upload(view, provider.status(view, first))
    assert api.count("start") == 0


def test_a_timeout_before_the_work_is_in_doubt_too(tmp_path: Path) -> None:
    """The adapter cannot tell a request that never arrived from a lost answer."""
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:1])
    remote = provider.create(view, FakeLedger())
    api.script("attach", "timeout-before")
    with pytest.raises(TransientError):
        provider.upload(view, remote, ledger)
    with pytest.raises(Abandon):
        provider.upload(ledger.view(view), remote, ledger)


@pytest.mark.parametrize("fault", ["429", "connect"])
def test_an_attach_clevver_surely_did_not_do_is_sent_again_without_doubt(
        tmp_path: Path, fault: str) -> None:
    """429 and a refused connection mean nothing reached Clevver: the note says so (id
    ""), and the next upload sends the file to the same remote batch."""
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS)
    remote = provider.create(view, FakeLedger())
    api.script("attach", "", fault)
    with pytest.raises(NotSent) as caught:
        provider.upload(view, remote, ledger)
    if fault == "429":
        assert isinstance(caught.value, Throttled) and caught.value.retry_after == 7.0
    assert ledger.notes["f1"] == RemoteDocument(batch=remote, id="")
    provider.upload(ledger.view(view), remote, ledger)
    view = ledger.view(view)
    assert provider.holds_upload(view, provider.status(view, remote))
    assert len(api.batches[remote].assets) == 3


def test_a_crash_after_the_attach_answer_leaves_the_file_in_doubt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """clevver:attached fires after the answer, before the ledger hears it."""
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:1])
    remote = provider.create(view, FakeLedger())

    def crash(name: str) -> None:
        if name == "clevver:attached":
            raise SystemExit("killed")

    monkeypatch.setattr(crashpoints, "reached", crash)
    with pytest.raises(SystemExit):
        provider.upload(view, remote, ledger)
    assert ledger.notes["f0"].in_doubt
    monkeypatch.undo()
    with pytest.raises(Abandon):
        provider.upload(ledger.view(view), remote, ledger)


# -- checksums -----------------------------------------------------------------------------

def test_a_checksum_mismatch_abandons_then_rejects_on_repeat(tmp_path: Path) -> None:
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS)
    first = provider.create(view, FakeLedger())
    api.script("attach", "", "bad-checksum")
    with pytest.raises(Abandon, match="not its sha256") as abandon:
        provider.upload(view, first, ledger)
    assert not abandon.value.lost_answer
    assert ledger.notes["f1"].id and ledger.notes["f1"].checksum != view.documents[1].sha256
    assert api.count("attach") == 2                 # the third was not sent to it
    second = provider.create(view, FakeLedger())
    api.script("attach", "", "bad-checksum")
    with pytest.raises(Abandon, match="rejected") as abandon:  # its wrong copy is there
        provider.upload(ledger.view(view), second, ledger)
    assert not abandon.value.lost_answer
    code, message = ledger.rejected["f1"]
    assert code == "checksum_mismatch"
    assert view.documents[1].sha256 in message
    assert ledger.notes["f1"].checksum in message
    third = provider.create(view, FakeLedger())
    view = ledger.view(view)
    assert [d.entry for d in view.documents] == ["doc0.pdf", "doc2.pdf"]
    provider.upload(view, third, ledger)
    view = ledger.view(view)
    assert provider.holds_upload(view, provider.status(view, third))
    assert api.count("start") == 0


def test_a_missing_checksum_is_asked_of_the_asset(tmp_path: Path) -> None:
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:1])
    remote = provider.create(view, FakeLedger())
    api.script("attach", "no-checksum")
    api.script("receipt", "bad-checksum")
    with pytest.raises(Abandon, match="0000"):
        provider.upload(view, remote, ledger)
    assert api.count("receipt") == 1


def test_a_receipt_with_another_checksum_fails_that_file(tmp_path: Path) -> None:
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:2])
    remote = provider.create(view, FakeLedger())
    provider.upload(view, remote, ledger)
    view = ledger.view(view)
    provider.accept(view, remote, ledger)
    _deliver(provider, view, remote)
    api.script("receipt", "bad-checksum")
    bad, good = provider.download(view, remote)
    assert bad.error_code == "checksum_mismatch" and not bad.pending
    assert "0" * 64 in bad.error_message and view.documents[0].sha256 in bad.error_message
    assert bad.provider_block["receipt"]["checksum"] == "0" * 64
    assert good.ok


# -- start and status ------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "state"), [("timeout-after", Remote.RUNNING),
                                              ("timeout-before", Remote.UPLOADED)])
def test_a_lost_start_answer_is_settled_by_the_status(
        tmp_path: Path, fault: str, state: Remote) -> None:
    """The start answer is lost: "processing" means it started (never start again),
    "created" that it did not (start again)."""
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:1])
    remote = provider.create(view, FakeLedger())
    provider.upload(view, remote, ledger)
    api.script("start", fault)
    with pytest.raises(TransientError):
        provider.accept(ledger.view(view), remote, ledger)
    assert provider.status(view, remote).state == state
    assert api.count("start") == 1          # the adapter never repeats a start itself


def test_an_unknown_status_is_running_and_warned_about_once(tmp_path: Path) -> None:
    api = FakeClevver()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:1])
    remote = provider.create(view, FakeLedger())
    api.script("status", "archiving", "archiving")
    with structlog.testing.capture_logs() as logs:
        first = provider.status(view, remote)
        second = provider.status(view, remote)
    assert first.state == second.state == Remote.RUNNING
    assert first.detail == "archiving"
    assert [e["event"] for e in logs].count("clevver.unknown_status") == 1


def test_a_batch_clevver_no_longer_knows_is_gone(tmp_path: Path) -> None:
    api = FakeClevver()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:1])
    gone = provider.status(view, "no-such-batch")
    assert gone.state == Remote.GONE
    assert not provider.holds_upload(view, gone)


@pytest.mark.parametrize("fault", ["429", "connect"])
def test_a_start_that_never_reached_clevver_is_not_sent(tmp_path: Path, fault: str) -> None:
    """A 429 or a refused connection on start: NotSent (Throttled for a 429), so the
    state machine goes back to UPLOADED and starts it again, never counting it as sent."""
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:1])
    remote = provider.create(view, FakeLedger())
    provider.upload(view, remote, ledger)
    api.script("start", fault)
    with pytest.raises(NotSent) as caught:
        provider.accept(ledger.view(view), remote, ledger)
    assert isinstance(caught.value, Throttled) == (fault == "429")
    provider.accept(ledger.view(view), remote, ledger)
    assert api.count("start") == 2


def test_status_429_waits_retry_after(tmp_path: Path) -> None:
    api = FakeClevver()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:1])
    remote = provider.create(view, FakeLedger())
    api.script("status", "429")
    with pytest.raises(Throttled) as caught:
        provider.status(view, remote)
    assert caught.value.retry_after == 7.0


# -- receipts ------------------------------------------------------------------------------

def test_a_receipt_without_a_txid_is_pending(tmp_path: Path) -> None:
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:2])
    remote = provider.create(view, FakeLedger())
    provider.upload(view, remote, ledger)
    view = ledger.view(view)
    provider.accept(view, remote, ledger)
    _deliver(provider, view, remote)
    api.script("receipt", "no-txid")
    pending, stored = provider.download(view, remote)
    assert pending.pending and not pending.ok and pending.error_code == "no_receipt"
    assert pending.error_message == ("Clevver took the file but gave no transaction id; "
                                     "`folderseal retry` asks again, never re-sends")
    assert stored.ok
    again, _ = provider.download(view, remote)      # the next poll asks again
    assert again.ok and again.provider_block["receipt"]["txid"]


def test_salvage_keeps_only_receipts_with_a_txid(tmp_path: Path) -> None:
    """Clevver lost a started batch: what its receipts prove is kept, nothing else."""
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS)
    remote = provider.create(view, FakeLedger())
    provider.upload(view, remote, ledger)
    view = ledger.view(view)
    provider.accept(view, remote, ledger)
    _deliver(provider, view, remote)
    api.script("receipt", "", "no-txid", "")
    del api.assets[view.documents[2].remote.id]  # type: ignore[union-attr]
    salvaged = provider.salvage(view, remote)
    assert [r.entry for r in salvaged] == ["doc0.pdf"]
    assert salvaged[0].ok


# -- refusals ------------------------------------------------------------------------------

def test_a_refused_token_is_permanent_and_never_shown(tmp_path: Path) -> None:
    provider = _provider(tmp_path, FakeClevver(), api_token="a-wrong-token-1234")
    view = _view(tmp_path, CONTENTS[:1])
    with pytest.raises(ProviderError) as caught:
        provider.create(view, FakeLedger())
    assert caught.value.code == "http_401"
    assert "check api_token" in caught.value.message
    assert "FOLDERSEAL_PROVIDERS__PROOF__API_TOKEN" in caught.value.message
    assert "a-wrong-token-1234" not in str(caught.value)


def test_check_says_whether_the_token_is_accepted(tmp_path: Path) -> None:
    assert "token was accepted" in _provider(tmp_path, FakeClevver()).check().verified
    with pytest.raises(ConfigError, match="refused the API token"):
        _provider(tmp_path, FakeClevver(), api_token="a-wrong-token-1234").check()
    api = FakeClevver()
    api.script("list", "503")
    assert "HTTP 503" in _provider(tmp_path, api).check().unreachable
    api.script("list", "404")
    with pytest.raises(ConfigError, match="host root"):
        _provider(tmp_path, api).check()


@pytest.mark.parametrize("action", ["402", "say:400:Quota exceeded for plan",
                                    "say:422:Insufficient credit on the account",
                                    "say:400:Payment required to store more files",
                                    "say:400:Your subscription has expired"])
def test_payment_and_quota_refusals_are_permanent_with_their_message(
        tmp_path: Path, action: str) -> None:
    api = FakeClevver()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:1])
    api.script("create", action)
    with pytest.raises(ProviderError) as caught:
        provider.create(view, FakeLedger())
    assert caught.value.code == "quota"
    said = "scripted 402" if action == "402" else action.split(":", 2)[2]
    assert said in caught.value.message and "folderseal retry" in caught.value.message


def test_a_file_clevver_refuses_is_rejected_and_the_rest_go_on(tmp_path: Path) -> None:
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS)
    remote = provider.create(view, FakeLedger())
    api.script("attach", "", "say:415:unsupported file type")
    provider.upload(view, remote, ledger)
    assert ledger.rejected["f1"][0] == "refused"
    assert "unsupported file type" in ledger.rejected["f1"][1]
    view = ledger.view(view)
    assert provider.holds_upload(view, provider.status(view, remote))


@pytest.mark.parametrize("said", ["credit_note.pdf: unsupported file type",
                                  "balance-2026.xlsx is empty",
                                  "subscription_invoice.pdf exceeds the size limit"])
def test_a_refusal_naming_a_file_is_that_files_not_the_accounts(
        tmp_path: Path, said: str) -> None:
    """Words such as credit or balance in a file's name make no quota refusal: only
    that file is rejected, and the batch goes on."""
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS)
    remote = provider.create(view, FakeLedger())
    api.script("attach", "", f"say:422:{said}")
    provider.upload(view, remote, ledger)
    assert ledger.rejected["f1"][0] == "refused" and said in ledger.rejected["f1"][1]
    assert set(ledger.rejected) == {"f1"}


def test_an_attach_to_a_batch_clevver_lost_abandons_it(tmp_path: Path) -> None:
    api, ledger = FakeClevver(), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS[:1])
    with pytest.raises(Abandon) as abandon:
        provider.upload(view, "no-such-batch", ledger)
    assert not abandon.value.lost_answer


def test_stopping_leaves_the_rest_for_the_next_run(tmp_path: Path) -> None:
    api, ledger = FakeClevver(), FakeLedger()
    ledger.stop = True
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, CONTENTS)
    with pytest.raises(TransientError, match="stopping"):
        provider.upload(view, provider.create(view, FakeLedger()), ledger)
    assert api.count("attach") == 0 and not ledger.notes


# -- streaming -----------------------------------------------------------------------------

class StreamingTransport(httpx.BaseTransport):
    """Reads the request body as a server would, chunk by chunk, noting how far the file
    had been read each time a chunk arrives."""

    def __init__(self, fds: list[int]) -> None:
        self.fds = fds
        self.chunks: list[tuple[int, int]] = []    # (bytes received so far, file offset)
        self.length = 0
        self.received = 0
        self.digest = hashlib.sha256()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/files"):
            self.length = int(request.headers["Content-Length"])
            assert "Transfer-Encoding" not in request.headers
            body = request.stream
            assert isinstance(body, httpx.SyncByteStream)
            for chunk in body:
                self.received += len(chunk)
                offset = os.lseek(self.fds[-1], 0, os.SEEK_CUR)
                self.chunks.append((self.received, offset))
                self.digest.update(chunk)
            data = {"id": "a1", "checksum": "", "txid": None}
            return httpx.Response(200, json={"data": data})
        return httpx.Response(201, json={"data": {"id": "r1", "status": "created"}})


def test_an_attach_streams_the_file_and_never_reads_it_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx's multipart reads the file object 64 KiB at a time as it sends: whenever a
    chunk reaches the server, the file has been read at most one chunk further. Content-
    Length comes from fstat (no chunked encoding). clevver:attaching fires mid-stream."""
    size = 8 * 1024 * 1024 + 123
    content = os.urandom(size)
    view = _view(tmp_path, [content])
    fds: list[int] = []
    opener = view.open_document
    assert opener is not None

    def open_document(document: Document) -> int:
        fds.append(opener(document))
        return fds[-1]

    view = dataclasses.replace(view, open_document=open_document)
    transport = StreamingTransport(fds)
    reached: list[str] = []
    monkeypatch.setattr(crashpoints, "reached", reached.append)
    provider = _provider(tmp_path, transport)
    ledger = FakeLedger()
    with pytest.raises(Abandon):  # the fake answers with no checksum at all
        provider.upload(view, provider.create(view, FakeLedger()), ledger)
    assert len(transport.chunks) > 100
    assert max(offset - received for received, offset in transport.chunks) <= 64 * 1024
    assert transport.received == transport.length > size
    attaching = reached.count("clevver:attaching")
    assert attaching == -(-size // (64 * 1024))         # every read after the first
    assert reached[0] == "clevver:created" and "clevver:attached" in reached
    with contextlib.suppress(OSError):                  # the descriptor was closed
        assert os.fstat(fds[-1]).st_ino != view.documents[0].ino


# -- the registry and the configuration ------------------------------------------------

def test_the_registry_builds_a_clevver_provider(tmp_path: Path) -> None:
    provider = build("proof", _cfg(), tmp_path)
    assert isinstance(provider, ClevverProvider) and provider.kind == "clevver"


def test_loading_the_configuration_imports_no_adapter() -> None:
    code = ("import sys, folderseal.providers.registry, folderseal.core.config as c; "
            "print(sorted(c.known_kinds())); "
            "print([m for m in ('httpx', 'folderseal.signing', 'folderseal.providers.seal."
            "provider', 'folderseal.providers.clevver.provider', 'boto3', "
            "'folderseal.providers.centrapay.provider') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == "['centrapay', 'clevver', 'local', 'seal']"
    assert out[1] == "[]"


def _config(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text("[providers.Proof]\nkind = \"clevver\"\nbase_url = \"https://c.test/\"\n"
                    + table + "[folders.scans]\ninbox = \"i\"\noutbox = \"o\"\n"
                    "errors = \"e\"\nprovider = \"proof\"\n")
    return path


@pytest.fixture
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.upper().startswith("FOLDERSEAL_"):
            monkeypatch.delenv(key)
    yield


@pytest.mark.usefixtures("_clean_env")
def test_the_token_from_the_environment_wins_over_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from folderseal.core.config import load
    from folderseal.core.redact import REDACTOR

    path = _config(tmp_path, 'api_token_file = "clevver.token"\n')
    monkeypatch.setenv("FOLDERSEAL_PROVIDERS__PROOF__API_TOKEN", "env-token-5678")
    cfg = load(path).providers["proof"]
    assert isinstance(cfg, ClevverProviderConfig)
    assert cfg.base_url == "https://c.test" and cfg.api_token_file is None
    assert cfg.read_api_token() == b"env-token-5678"
    assert "env-token-5678" not in repr(cfg)
    assert REDACTOR.text("a env-token-5678 b") == "a *** b"


@pytest.mark.usefixtures("_clean_env")
def test_a_clevver_table_without_a_token_says_how_to_give_one(tmp_path: Path) -> None:
    from folderseal.core.config import load

    with pytest.raises(ConfigError) as caught:
        load(_config(tmp_path, ""))
    message = str(caught.value)
    assert "providers.proof" in message and "api_token_file" in message
    assert "FOLDERSEAL_PROVIDERS__<NAME>__API_TOKEN" in message
    (tmp_path / "t").write_text("file-token-9\n")
    cfg = load(_config(tmp_path, 'auth = "header"\napi_token_header = "X-Token"\n'
                       'api_token_file = "t"\n')).providers["proof"]
    api_seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        api_seen.append(request)
        return httpx.Response(200, json={"data": []})

    assert isinstance(cfg, ClevverProviderConfig)
    ClevverProvider("proof", cfg, tmp_path, httpx.MockTransport(handler)).check()
    assert api_seen[0].headers["X-Token"] == "file-token-9"
    assert "Authorization" not in api_seen[0].headers
