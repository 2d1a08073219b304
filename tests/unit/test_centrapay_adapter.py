"""The Centrapay adapter over httpx.MockTransport: a scripted in-memory Centrapay that
fetches the file from the publish folder by the URL it is given, an in-test ledger, and
real files. The whole lifecycle, the create's point of no return, refusals, the rate
limiter, `check`, and secrets that must never show."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from folderseal.core import config as config_module
from folderseal.core import crashpoints, metrics
from folderseal.core.errors import ConfigError, NotSent, Throttled, TransientError
from folderseal.core.redact import without_secrets
from folderseal.providers import BatchView, Document, Remote, build, steps_of
from folderseal.providers.centrapay import CentrapayProvider, publish
from folderseal.providers.centrapay.config import CentrapayProviderConfig
from folderseal.providers.http import RateLimiter
from tests.centrapay_world import FakeLedger

KEY = "cp-key-for-the-centrapay-adapter-tests"
ACCOUNT = "C4QnjXvj8At6SMsEN4LRi9"
PREFIX = "http://files.test/batches/"
JSONL = b'{"externalId": "1", "name": "a"}\n{"externalId": "2", "name": "b"}\n'


# -- a scripted Centrapay ------------------------------------------------------------------

@dataclass
class FakeBatch:
    id: str
    type: str
    content: bytes
    statuses: list[str] = field(default_factory=lambda: ["created", "copied", "chunked",
                                                         "complete"])
    errors: list[dict[str, Any]] = field(default_factory=list)


class FakeCentrapay:
    """Creates batches as Centrapay does (fetching the file at the URL from the publish
    folder), walks each through its statuses one poll at a time, answers 403 for a batch
    it does not know, and misbehaves as scripted: ``script("create", "timeout-after")``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.batches: dict[str, FakeBatch] = {}
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[dict[str, Any]] = []
        self.scripts: dict[str, list[str]] = {}

    def script(self, operation: str, *actions: str) -> None:
        self.scripts.setdefault(operation, []).extend(actions)

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("X-Api-Key") != KEY:
            return httpx.Response(401, json={"message": "Unauthorized"})
        parts = request.url.path.strip("/").split("/")
        operation = "create" if request.method == "POST" else "status"
        target = parts[2] if len(parts) > 2 else ""
        self.calls.append((operation, target))
        queue = self.scripts.get(operation)
        action = queue.pop(0) if queue else ""
        if action == "connect":
            raise httpx.ConnectError("connection refused", request=request)
        if action == "timeout-before":
            raise httpx.ReadTimeout("timed out", request=request)
        if action == "429":
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow"})
        if action.isdigit():
            return httpx.Response(int(action), json={"message": f"scripted {action}"})
        if action == "echo":   # a refusal that quotes what it was sent
            return httpx.Response(400, json={"message": f"bad url {request.content.decode()}"})
        if action == "no-id":
            return httpx.Response(200, json={"status": "created"})
        response = self.create(request) if operation == "create" else self.status(target,
                                                                                  action)
        if action == "timeout-after":
            raise httpx.ReadTimeout("timed out", request=request)
        return response

    def create(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        assert body["url"].startswith(PREFIX)
        content = (self.folder / body["url"][len(PREFIX):]).read_bytes()
        batch = FakeBatch(id=f"cp{len(self.batches) + 1}", type=body["type"], content=content)
        self.batches[batch.id] = batch
        return httpx.Response(200, json=self._shown(batch))

    def status(self, target: str, action: str) -> httpx.Response:
        batch = self.batches.get(target)
        if batch is None or action == "gone":
            return httpx.Response(403, json={"message": "Forbidden"})
        if action:
            return httpx.Response(200, json={"id": batch.id, "status": action})
        if len(batch.statuses) > 1:
            batch.statuses.pop(0)
        return httpx.Response(200, json=self._shown(batch))

    def _shown(self, batch: FakeBatch) -> dict[str, Any]:
        lines = [line for line in batch.content.splitlines() if line.strip()]
        return {"id": batch.id, "status": batch.statuses[0], "type": batch.type,
                "count": str(len(lines)), "errorCount": str(len(batch.errors)),
                "errors": batch.errors}


# -- fixtures ------------------------------------------------------------------------------

def _cfg(tmp_path: Path, **overrides: object) -> CentrapayProviderConfig:
    return CentrapayProviderConfig.model_validate({
        "kind": "centrapay", "base_url": "http://centrapay.test", "api_key": KEY,
        "account_id": ACCOUNT, "batch_type": "farmlands-external-asset",
        "publish": "folder", "publish_dir": str(tmp_path / "public"),
        "publish_url_prefix": PREFIX, "max_requests_per_minute": 6000, **overrides})


@pytest.fixture()
def public(tmp_path: Path) -> Path:
    folder = tmp_path / "public"
    folder.mkdir()
    return folder


def _provider(tmp_path: Path, api: Any, **overrides: object) -> CentrapayProvider:
    transport = api if isinstance(api, httpx.BaseTransport) else httpx.MockTransport(api)
    return CentrapayProvider("loads", _cfg(tmp_path, **overrides), tmp_path,
                             transport=transport)


def _view(tmp_path: Path, content: bytes, entry: str = "0000_assets.jsonl",
          extra: int = 0) -> BatchView:
    folder = tmp_path / "batch"
    folder.mkdir(exist_ok=True)
    documents = []
    for number in range(1 + extra):
        name = entry if number == 0 else f"{number:04d}_more.jsonl"
        (folder / name).write_bytes(content)
        st = (folder / name).stat()
        documents.append(Document(entry=name, file_id=f"f{number}",
                                  sha256=hashlib.sha256(content).hexdigest(),
                                  size=len(content), dev=st.st_dev, ino=st.st_ino,
                                  attempts=0))

    def open_document(document: Document) -> int:
        return os.open(folder / document.entry, os.O_RDONLY | os.O_CLOEXEC)

    return BatchView(id="0123456789abcdef01234567", folder="loads_in",
                     documents=tuple(documents), files_dir=folder, package=None,
                     staging=tmp_path / "staging", open_document=open_document)


def _published(provider: CentrapayProvider, view: BatchView,
               ledger: FakeLedger) -> BatchView:
    provider.prepare(view, ledger)
    assert provider.create(view, ledger) == ""
    return ledger.view(view)


def _to_the_end(provider: CentrapayProvider, view: BatchView, remote: str) -> list[Remote]:
    seen = []
    while not seen or seen[-1] == Remote.RUNNING:
        seen.append(provider.status(view, remote).state)
    return seen


# -- the lifecycle -------------------------------------------------------------------------

def test_the_whole_lifecycle(tmp_path: Path, public: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare checks → create publishes (its key recorded first) → the published file
    is the upload → accept creates the Centrapay batch with the URL → polls until
    complete → the original comes out with the report → delete unpublishes."""
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    reached: list[str] = []
    monkeypatch.setattr(crashpoints, "reached", reached.append)
    assert provider.steps.outcome == "loaded" and provider.steps.irrevocable
    assert provider.steps.accept_creates and provider.steps.publishes
    assert "load_failed" in provider.steps.not_sent and provider.max_batch_files == 1
    view = _view(tmp_path, JSONL)
    assert provider.status(view, "").state == Remote.NEW
    ledger.on_publishing = lambda key: reached.append(f"publishing {os.listdir(public)}")
    assert provider.prepare(view, ledger) is None and not ledger.rejected
    assert provider.create(view, ledger) == ""
    (key,) = ledger.published
    assert reached == ["publishing []", "centrapay:publishing", "centrapay:published"]
    assert (public / key).read_bytes() == JSONL
    view = ledger.view(view)
    uploaded = provider.status(view, "")
    assert uploaded.state == Remote.UPLOADED and provider.holds_upload(view, uploaded)
    provider.upload(view, "", ledger)          # nothing to send
    assert api.calls == []
    provider.accept(view, "", ledger)
    assert ledger.created_ids == ["cp1"]
    assert ledger.log == ["publishing", "sending", "created"]
    assert reached[-2:] == ["centrapay:creating", "centrapay:created"]
    assert api.bodies == [{"type": "farmlands-external-asset", "url": PREFIX + key,
                           "accountId": ACCOUNT, "test": False}]
    assert _to_the_end(provider, view, "cp1") == [Remote.RUNNING] * 2 + [Remote.CLOSED]
    (result,) = provider.download(view, "cp1")
    assert result.ok and result.provider_document == "cp1"
    (output,) = result.outputs
    assert (output.role, output.staged, output.suffix) == ("original", "", "")
    assert (output.sha256, output.bytes) == (view.documents[0].sha256, len(JSONL))
    assert result.provider_block == {"report": {"status": "complete", "count": 2,
                                                "errorCount": 0, "errors": [],
                                                "test": False}}
    provider.delete(view, "cp1")
    provider.delete(view, "cp1")               # idempotent
    assert os.listdir(public) == []


def _waited_out(limiter: RateLimiter) -> None:
    """As if every turn and hold the limiter gave out had passed."""
    limiter._next = 0.0
    limiter._tickets.clear()


def test_logs_show_a_fingerprint_of_the_published_name(tmp_path: Path, public: Path) -> None:
    """publish_url_prefix + the name is a read key to the records: no log line of the
    provider shows the whole name, each names its first 8 characters."""
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    with structlog.testing.capture_logs() as logs:
        view = _published(provider, _view(tmp_path, JSONL), ledger)
        provider.create(view, ledger)                    # published again
        provider.accept(view, "", ledger)
        api.batches["cp1"].statuses = ["created", "error"]
        _to_the_end(provider, view, "cp1")
        provider.download(view, "cp1")
        provider.delete(view, "cp1")
    key = view.published
    shown = json.dumps(logs, default=str)
    assert key not in shown and key[8:] not in shown
    keyed = [e["event"] for e in logs if e.get("key") == key[:8] + "…"]
    assert keyed == ["centrapay.published", "centrapay.published", "centrapay.created",
                     "centrapay.load_failed", "centrapay.unpublished"]
    assert provider.shown(key) == key[:8] + "…"


def test_an_invalid_file_is_rejected_with_its_report_and_never_published(
        tmp_path: Path, public: Path) -> None:
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _view(tmp_path, b'{"externalId": "1"}\nnot json\n[]\n')
    provider.prepare(view, ledger)
    code, message, block = ledger.rejected["f0"]
    assert code == "invalid_batch_file"
    assert "2 bad lines of 3 records" in message and "line 1: not valid JSON" in message
    assert "nothing was published or sent" in message
    assert block == {"report": {"status": "invalid", "count": 3, "errorCount": 2, "errors": [
        {"index": 1, "message": "not valid JSON: Expecting value at column 1"},
        {"index": 2, "message": "a JSON array, not an object (each line holds one record "
                                "{…})"}]}}
    assert os.listdir(public) == [] and api.calls == [] and not ledger.published


def test_records_without_an_external_id_are_a_warning_not_a_rejection(
        tmp_path: Path, public: Path) -> None:
    provider = _provider(tmp_path, FakeCentrapay(public))
    ledger = FakeLedger()
    with structlog.testing.capture_logs() as logs:
        provider.prepare(_view(tmp_path, b'\xef\xbb\xbf{"name": "a"}\n{"externalId": "2"}\n'),
                         ledger)
    assert not ledger.rejected
    (warning,) = [e for e in logs if e["event"] == "centrapay.no_external_id"]
    assert warning["log_level"] == "warning" and warning["lines"] == [0]
    assert warning["records"] == 1


def test_a_suffix_that_disagrees_with_the_batch_type_is_a_warning(
        tmp_path: Path, public: Path) -> None:
    provider = _provider(tmp_path, FakeCentrapay(public))
    ledger = FakeLedger()
    with structlog.testing.capture_logs() as logs:
        provider.prepare(_view(tmp_path, JSONL, entry="0000_assets.csv"), ledger)
    assert not ledger.rejected   # checked as JSON Lines, the type's format
    (warning,) = [e for e in logs if e["event"] == "centrapay.format"]
    assert "named like a CSV file" in warning["warning"]


def test_a_csv_batch_type(tmp_path: Path, public: Path) -> None:
    provider = _provider(tmp_path, FakeCentrapay(public), batch_type="business-onboard")
    ledger = FakeLedger()
    provider.prepare(_view(tmp_path, b"id,name\n1,a\n2\n", entry="0000_b.csv"), ledger)
    assert ledger.rejected["f0"][2]["report"]["errors"] == [  # type: ignore[index]
        {"index": 2, "message": "1 column where the header has 2"}]


def test_extra_files_in_a_batch_are_rejected_unsent(tmp_path: Path, public: Path) -> None:
    provider = _provider(tmp_path, FakeCentrapay(public))
    ledger = FakeLedger()
    provider.prepare(_view(tmp_path, JSONL, extra=2), ledger)
    assert {k: v[0] for k, v in ledger.rejected.items()} == {
        "f1": "one_file_per_batch", "f2": "one_file_per_batch"}


def test_publishing_again_reuses_the_recorded_name(tmp_path: Path, public: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A create repeated (a crash in the middle of the copy) publishes under the name the
    batch recorded, its copy replaced whole: nothing is left behind unnamed."""
    provider = _provider(tmp_path, FakeCentrapay(public))
    ledger = FakeLedger()
    view = _view(tmp_path, JSONL * 1000)

    def crash(name: str) -> None:
        if name == "centrapay:publishing":
            raise KeyboardInterrupt   # stands for the SIGKILL
    monkeypatch.setattr(crashpoints, "reached", crash)
    with pytest.raises(KeyboardInterrupt):
        provider.create(view, ledger)
    monkeypatch.undo()
    view = ledger.view(view)
    assert provider.status(view, "").state == Remote.NEW   # the copy never completed
    (first,) = ledger.published
    provider.create(view, ledger)
    assert ledger.published == [first] and os.listdir(public) == [first]
    view = ledger.view(view)
    assert provider.status(view, "").state == Remote.UPLOADED
    provider.create(view, ledger)          # again, whole: the same name, one copy
    assert ledger.published == [first] and os.listdir(public) == [first]
    assert (public / first).read_bytes() == JSONL * 1000


def test_a_recorded_copy_under_another_key_is_removed_first(tmp_path: Path,
                                                            public: Path) -> None:
    """A recorded key this publisher would not give the file (another suffix, another
    configuration): its copy is removed before the new key is recorded."""
    provider = _provider(tmp_path, FakeCentrapay(public))
    ledger = FakeLedger()
    view = _view(tmp_path, JSONL)
    old = "c" * 32 + ".csv"
    (public / old).write_bytes(b"an earlier copy")
    seen: list[list[str]] = []
    ledger.on_publishing = lambda key: seen.append(os.listdir(public))
    import dataclasses
    provider.create(dataclasses.replace(view, published=old), ledger)
    (new,) = ledger.published
    assert new != old and seen == [[]] and os.listdir(public) == [new]


def test_a_published_copy_of_another_size_is_no_upload(tmp_path: Path, public: Path) -> None:
    provider = _provider(tmp_path, FakeCentrapay(public))
    ledger = FakeLedger()
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    (public / view.published).write_bytes(JSONL[:-1])
    assert provider.status(view, "").state == Remote.NEW


# -- the create: the point of no return ----------------------------------------------------

@pytest.mark.parametrize("action", ["connect", "429", "401", "400", "404"])
def test_a_create_that_surely_did_nothing_is_not_sent(tmp_path: Path, public: Path,
                                                      action: str) -> None:
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    api.script("create", action)
    with pytest.raises(NotSent) as caught:
        provider.accept(view, "", ledger)
    assert not ledger.created_ids and not api.batches
    if action == "429":
        assert isinstance(caught.value, Throttled) and caught.value.retry_after == 7.0
        # every call of the account waits out the Retry-After
        with pytest.raises(Throttled):
            provider.accept(view, "", ledger)
        assert api.count("create") == 1
        _waited_out(provider.limiter)
    if action == "401":
        assert "FOLDERSEAL_PROVIDERS__LOADS__API_KEY" in str(caught.value)
    provider.accept(view, "", ledger)      # sent again later
    assert ledger.created_ids == ["cp1"]


@pytest.mark.parametrize("fault", ["sign", "limiter", "build", "ledger"])
def test_a_create_that_fails_before_it_is_sent_is_not_sent(
        tmp_path: Path, public: Path, fault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever fails before POST /api/batches leaves (making the URL, the limiter's
    turn, building the request, noting it in the manifest) is NotSent: the state machine goes
    back to UPLOADED and sends it later, never outcome_unknown."""
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    provider.start()
    assert provider.client is not None
    if fault == "sign":
        def url(key: str) -> str:
            raise publish.PublishError("signing a URL for k in bucket b failed (Boom)")
        monkeypatch.setattr(provider.publisher, "url", url)
    elif fault == "limiter":
        provider.limiter.hold_until(provider.limiter.clock() + 60)
    elif fault == "build":
        def build_request(*args: Any, **kwargs: Any) -> httpx.Request:
            raise httpx.InvalidURL("no host")
        monkeypatch.setattr(provider.client.http, "build_request", build_request)
    else:
        def sending(document: Document, remote_id: str) -> None:
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(ledger, "sending", sending)
    with pytest.raises(NotSent) as caught:
        provider.accept(view, "", ledger)
    assert isinstance(caught.value, Throttled) == (fault == "limiter")
    assert api.count("create") == 0 and not ledger.created_ids
    monkeypatch.undo()
    _waited_out(provider.limiter)
    provider.accept(view, "", ledger)      # sent later, once
    assert ledger.created_ids == ["cp1"] and api.count("create") == 1


@pytest.mark.parametrize("action", ["timeout-before", "timeout-after", "500", "no-id"])
def test_a_create_whose_answer_is_lost_may_have_been_done(tmp_path: Path, public: Path,
                                                          action: str) -> None:
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    api.script("create", action)
    with pytest.raises(TransientError) as caught:
        provider.accept(view, "", ledger)
    assert not isinstance(caught.value, NotSent)
    assert not ledger.created_ids


def test_a_crash_after_the_create_answer_leaves_its_id_recorded(
        tmp_path: Path, public: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _published(provider, _view(tmp_path, JSONL), ledger)

    def crash(name: str) -> None:
        if name == "centrapay:created":
            raise KeyboardInterrupt
    monkeypatch.setattr(crashpoints, "reached", crash)
    with pytest.raises(KeyboardInterrupt):
        provider.accept(view, "", ledger)
    assert ledger.created_ids == ["cp1"]


def test_nothing_published_is_not_sent(tmp_path: Path, public: Path) -> None:
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    with pytest.raises(NotSent, match="no published copy"):
        provider.accept(_view(tmp_path, JSONL), "", ledger)
    assert api.calls == []


def test_a_signed_url_never_shows(tmp_path: Path, public: Path) -> None:
    """A pre-signed URL's query is a read key: a refusal that quotes the request body,
    and the log, show neither it nor the API key."""
    secret_url = "https://s3.test/bucket/k?X-Amz-Signature=deadbeefsignature&X-Amz-Credential=AK"

    class Signing(publish.FolderPublisher):
        def url(self, key: str) -> str:
            return secret_url

    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    provider.publisher = Signing(provider.cfg)
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    api.script("create", "echo")
    with structlog.testing.capture_logs() as logs, pytest.raises(NotSent) as caught:
        provider.accept(view, "", ledger)
    shown = str(caught.value) + json.dumps(logs, default=str)
    assert "deadbeefsignature" not in shown and KEY not in shown
    assert "https://s3.test/bucket/k?…" in str(caught.value)
    assert without_secrets(f"see {secret_url} now") == "see https://s3.test/bucket/k?… now"


def test_a_refusal_that_quotes_the_url_shows_a_fingerprint(tmp_path: Path,
                                                          public: Path) -> None:
    """publish_url_prefix + the folder name is a read key: a refusal that echoes the
    request names the fingerprint, never the name."""
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    api.script("create", "echo")
    with pytest.raises(NotSent) as caught:
        provider.accept(view, "", ledger)
    assert view.published not in str(caught.value)
    assert f"{PREFIX}{view.published[:8]}…" in str(caught.value)


# -- polling and the report ----------------------------------------------------------------

def test_a_complete_batch_with_failed_records_is_delivered_and_counted(
        tmp_path: Path, public: Path) -> None:
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api, test=True)
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    provider.accept(view, "", ledger)
    assert api.bodies[0]["test"] is True
    api.batches["cp1"].errors = [{"externalId": "2", "index": "1", "message": "no name"}]
    _to_the_end(provider, view, "cp1")
    counter = metrics.RECORDS_FAILED.labels("loads_in", "loads")
    before = counter._value.get()
    with structlog.testing.capture_logs() as logs:
        (result,) = provider.download(view, "cp1")
        provider.download(view, "cp1")     # downloaded again after a restart: counted once
    assert result.ok
    assert result.provider_block["report"] == {
        "status": "complete", "count": 2, "errorCount": 1, "test": True,
        "errors": [{"index": 1, "externalId": "2", "message": "no name"}]}
    assert counter._value.get() == before + 1
    assert [e["log_level"] for e in logs if e["event"] == "centrapay.records_failed"] == \
        ["warning", "warning"]


def test_a_batch_in_error_fails_as_load_failed(tmp_path: Path, public: Path) -> None:
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    provider.accept(view, "", ledger)
    api.batches["cp1"].statuses = ["created", "error"]
    assert _to_the_end(provider, view, "cp1") == [Remote.FAILED]
    (result,) = provider.download(view, "cp1")
    assert result.error_code == "load_failed" and not result.outputs
    assert result.error_message.startswith("Centrapay could not read the batch file")
    assert "nothing was loaded: `folderseal retry <id>` publishes and sends it again" in \
        result.error_message
    assert result.provider_block["report"]["status"] == "error"


def test_a_report_that_cannot_be_read_is_pending(tmp_path: Path, public: Path) -> None:
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    provider.accept(view, "", ledger)
    api.script("status", "complete")            # complete, but without a count
    (result,) = provider.download(view, "cp1")
    assert result.pending and result.error_code == "no_report"
    api.script("status", "gone")
    (result,) = provider.download(view, "cp1")
    assert result.pending and "403" in result.error_message


@pytest.mark.parametrize("final", ["complete", "error"])
def test_a_final_status_without_its_report_is_asked_again(tmp_path: Path, public: Path,
                                                          final: str) -> None:
    """complete or error without counts (no report): running, with one clear warning,
    asked again; the next answer with its report ends it. Download on such an answer
    (a restart at CLOSED) is pending no_report, not a crash."""
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    provider.accept(view, "", ledger)
    api.batches["cp1"].statuses = [final]
    with structlog.testing.capture_logs() as logs:
        api.script("status", final, final)       # {id, status} only
        for _ in range(2):
            status = provider.status(view, "cp1")
            assert status.state == Remote.RUNNING and "without its report" in status.detail
        assert provider.status(view, "cp1").state in (Remote.CLOSED, Remote.FAILED)
        (result,) = provider.download(view, "cp1")
    warned = [e for e in logs if e["event"] == "centrapay.no_report"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert warned[0]["status"] == final and "asked again" in warned[0]["next_step"]
    assert not result.pending      # the final answer the poll kept, with its report
    api.script("status", final)
    (result,) = provider.download(view, "cp1")
    assert result.pending and result.error_code == "no_report"
    assert "without its report" in result.error_message


def test_memos_per_batch_are_capped() -> None:
    from folderseal.providers.centrapay.provider import Capped
    memo: Capped[bool] = Capped(size=3)
    for number in range(10):
        memo[f"b{number}"] = True
    assert list(memo) == ["b7", "b8", "b9"]
    memo["b8"] = True             # touched again: the newest
    memo["b10"] = True
    assert list(memo) == ["b9", "b8", "b10"]


def test_status_answers(tmp_path: Path, public: Path) -> None:
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    gone = provider.status(view, "no-such-batch")
    assert gone.state == Remote.GONE and gone.batch == "no-such-batch"
    provider.accept(view, "", ledger)
    api.script("status", "429")
    with pytest.raises(Throttled) as caught:
        provider.status(view, "cp1")
    assert caught.value.retry_after == 7.0
    with pytest.raises(Throttled):         # held until the Retry-After has passed
        provider.status(view, "cp1")
    assert api.count("status") == 2
    _waited_out(provider.limiter)
    api.script("status", "502")
    with pytest.raises(TransientError, match="HTTP 502"):
        provider.status(view, "cp1")
    api.script("status", "401")
    with pytest.raises(TransientError, match="refused the API key"):
        provider.status(view, "cp1")
    with structlog.testing.capture_logs() as logs:
        api.script("status", "exploded", "exploded")
        assert provider.status(view, "cp1").state == Remote.RUNNING
        assert provider.status(view, "cp1").state == Remote.RUNNING
    assert [e["event"] for e in logs].count("centrapay.unknown_status") == 1


def test_salvage_and_tidy(tmp_path: Path, public: Path) -> None:
    provider = _provider(tmp_path, FakeCentrapay(public))
    ledger = FakeLedger()
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    assert provider.salvage(view, "cp1") == []
    (public / ("f" * 32 + ".jsonl")).write_bytes(b"left by a crash")
    assert provider.tidy(lambda: {view.published}) == 1
    assert os.listdir(public) == [view.published]


# -- the request limiter -------------------------------------------------------------------

def test_every_call_waits_at_the_limiter(tmp_path: Path, public: Path) -> None:
    api, ledger = FakeCentrapay(public), FakeLedger()
    provider = _provider(tmp_path, api)
    waits = []
    original = provider.limiter.wait

    def counted(holder: str = "") -> float:
        waits.append(1)
        return original(holder)

    provider.limiter.wait = counted  # type: ignore[method-assign]
    view = _published(provider, _view(tmp_path, JSONL), ledger)
    provider.accept(view, "", ledger)
    _to_the_end(provider, view, "cp1")
    provider.download(view, "cp1")
    # create, then three polls; download reads the final answer the last poll kept
    assert len(waits) == len(api.calls) == 4


# -- check ---------------------------------------------------------------------------------

@pytest.fixture()
def served(public: Path) -> Iterator[str]:
    """publish_dir served over HTTP on loopback, as a web server would."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(public))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_check_proves_the_key_and_the_published_url(tmp_path: Path, public: Path,
                                                    served: str) -> None:
    api = FakeCentrapay(public)
    health = _provider(tmp_path, api, publish_url_prefix=served).check()
    assert "took the API key" in health.verified and "fetched back" in health.verified
    assert "batch_max_files is capped at 1" in health.verified
    assert not health.unreachable and os.listdir(public) == []
    assert api.calls[0][0] == "status" and len(api.calls[0][1]) == 22


def test_check_names_what_to_fix(tmp_path: Path, public: Path, served: str) -> None:
    api = FakeCentrapay(public)
    with pytest.raises(ConfigError, match="refused the API key"):
        _provider(tmp_path, api, publish_url_prefix=served, api_key="wrong-key").check()
    with pytest.raises(ConfigError, match="not 403: base_url is the host root"):
        api.script("status", "404")
        _provider(tmp_path, api, publish_url_prefix=served).check()
    api.script("status", "503")
    assert "HTTP 503" in _provider(tmp_path, api, publish_url_prefix=served).check().unreachable
    with pytest.raises(ConfigError, match="not served back .* serve publish_dir"):
        _provider(tmp_path, api, publish_url_prefix=served + "elsewhere/").check()
    assert os.listdir(public) == []
    down = _provider(tmp_path, api, publish_url_prefix="http://127.0.0.1:9/").check()
    assert "could not be fetched" in down.unreachable and os.listdir(public) == []
    with pytest.raises(ConfigError, match="create it"):
        _provider(tmp_path, api, publish_url_prefix=served,
                  publish_dir=str(tmp_path / "nowhere")).check()


def test_check_offline_warns_about_a_listable_folder(tmp_path: Path, public: Path) -> None:
    public.chmod(0o755)
    warnings = _provider(tmp_path, FakeCentrapay(public)).check(network=False).warnings
    assert any("may be listed by every account" in w for w in warnings)
    public.chmod(0o711)
    assert not _provider(tmp_path, FakeCentrapay(public),
                         max_requests_per_minute=150).check(network=False).warnings


def test_a_rate_above_centrapays_is_accepted_with_a_warning(tmp_path: Path,
                                                            public: Path) -> None:
    provider = _provider(tmp_path, FakeCentrapay(public), max_requests_per_minute=250)
    (warning,) = [w for w in provider.check(network=False).warnings
                  if "max_requests_per_minute" in w]
    assert "above the about 200 requests a minute Centrapay allows" in warning
    with structlog.testing.capture_logs() as logs:
        provider.start()
    (logged,) = [e for e in logs if e["event"] == "centrapay.rate_above_limit"]
    assert logged["log_level"] == "warning" and logged["max_requests_per_minute"] == 250
    quiet = _provider(tmp_path, FakeCentrapay(public), max_requests_per_minute=200)
    with structlog.testing.capture_logs() as logs:
        quiet.start()
    assert not [e for e in logs if e["event"] == "centrapay.rate_above_limit"]


# -- the registry and the configuration ----------------------------------------------------

def test_the_registry_builds_it(tmp_path: Path) -> None:
    provider = build("loads", _cfg(tmp_path), tmp_path)
    assert isinstance(provider, CentrapayProvider)
    assert steps_of("centrapay").accept_creates


@pytest.mark.parametrize(("overrides", "says"), [
    ({"api_key": None}, "FOLDERSEAL_PROVIDERS__<NAME>__API_KEY"),
    ({"account_id": ""}, "account_id is missing"),
    ({"batch_type": ""}, "batch_type must name"),
    ({"publish": "s3"}, "needs s3_bucket"),
    ({"publish": "s3", "s3_bucket": "b", "s3_access_key_id": "AK"}, "needs its secret"),
    ({"publish": "s3", "s3_bucket": "b", "s3_secret_access_key": "s"}, "without s3_access"),
    ({"publish": "s3", "s3_bucket": "b", "s3_endpoint_url": "minio:9000"}, "https://"),
    ({"publish_dir": ""}, "needs publish_dir"),
    ({"publish_url_prefix": ""}, "needs publish_url_prefix"),
    ({"publish_url_prefix": "https://x/batches"}, "must end with /"),
    ({"url_expiry_seconds": 700000}, "less than or equal"),
    ({"max_requests_per_minute": 0}, "greater than 0"),
])
def test_configuration_errors_name_the_fix(tmp_path: Path, overrides: dict[str, object],
                                           says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("<", ".").replace(">", ".")):
        _cfg(tmp_path, **overrides)


def test_the_configuration_from_a_file_and_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "s3.secret").write_text("file-secret-value\n")
    path = tmp_path / "config.toml"
    path.write_text(f"""
state_dir = "{tmp_path / 'state'}"
[providers.loads]
kind = "centrapay"
base_url = "https://service.centrapay.com/"
api_key_file = "centrapay.key"
account_id = "{ACCOUNT}"
batch_type = "business-onboard"
s3_bucket = "batch-files"
s3_access_key_id = "AKIAEXAMPLE"
s3_secret_access_key_file = "s3.secret"
""")
    monkeypatch.setenv("FOLDERSEAL_PROVIDERS__LOADS__API_KEY", "env-api-key-value")
    monkeypatch.setenv("FOLDERSEAL_PROVIDERS__LOADS__S3_SECRET_ACCESS_KEY", "env-s3-secret")
    settings = config_module.load(path)
    cfg = settings.providers["loads"]
    assert isinstance(cfg, CentrapayProviderConfig)
    assert cfg.base_url == "https://service.centrapay.com"
    assert cfg.read_api_key() == b"env-api-key-value" and cfg.api_key_file is None
    assert cfg.read_s3_secret() == b"env-s3-secret" and cfg.s3_secret_access_key_file is None
    assert cfg.max_requests_per_minute == 150 and cfg.poll_interval_seconds == 5.0
    assert cfg.status_grace_seconds == 30.0 and cfg.max_wait_seconds == 3600.0
    assert cfg.format == "csv" and cfg.s3_prefix == "folderseal/"
    monkeypatch.delenv("FOLDERSEAL_PROVIDERS__LOADS__S3_SECRET_ACCESS_KEY")
    cfg = config_module.load(path).providers["loads"]
    assert isinstance(cfg, CentrapayProviderConfig)
    assert cfg.s3_secret_access_key_file == tmp_path / "s3.secret"
    assert cfg.read_s3_secret() == b"file-secret-value"
