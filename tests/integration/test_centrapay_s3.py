"""Centrapay's S3 publishing against a real S3-compatible server: moto's server mode on
loopback (a subprocess, tests/s3server.py), the real Centrapay emulator on loopback
fetching the pre-signed URL over HTTP, and the real provider in between (no mocked
transport): a streamed multipart upload, a create whose URL the emulator really reads,
the object removed after delivery, unfinished uploads aborted, strays tidied."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from folderseal.providers import BatchView, Document, Remote
from folderseal.providers.centrapay import CentrapayProvider, publish
from folderseal.providers.centrapay.config import CentrapayProviderConfig
from folderseal.providers.centrapay.emulator import CentrapayEmulator, start_centrapay
from folderseal.providers.centrapay.publish import s3 as publish_s3
from tests.centrapay_world import FakeLedger
from tests.s3server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, client, keys, uploads

KEY = "cp-key-s3-integration-7c1e"
ACCOUNT = "C4QnjXvj8At6SMsEN4LRi9"
MIB = 1 << 20


class Keep(set[str]):
    """The names tidy must keep, in both forms a publisher may take them: a set, or a
    callable returning it (asked after the listing)."""

    def __call__(self) -> set[str]:
        return set(self)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[CentrapayEmulator]:
    with start_centrapay(api_key=KEY, data_dir=tmp_path / "emulator", seed=3,
                         step_seconds=0.0) as handle:
        yield handle


def _provider(tmp_path: Path, endpoint: str, bucket: str, url: str) -> CentrapayProvider:
    secret = tmp_path / "s3.secret"
    secret.write_text(SECRET_ACCESS_KEY + "\n")
    secret.chmod(0o600)
    cfg = CentrapayProviderConfig.model_validate({
        "kind": "centrapay", "base_url": url, "api_key": KEY, "account_id": ACCOUNT,
        "batch_type": "farmlands-external-asset", "publish": "s3",
        "s3_endpoint_url": endpoint, "s3_bucket": bucket, "s3_prefix": "loads/",
        "s3_access_key_id": ACCESS_KEY_ID, "s3_secret_access_key_file": str(secret),
        "url_expiry_seconds": 300, "max_requests_per_minute": 6000})
    return CentrapayProvider("loads", cfg, tmp_path / "state")


def _records(count: int, width: int = 0, bad: tuple[int, ...] = ()) -> bytes:
    lines = []
    for i in range(count):
        if i in bad:
            lines.append(b'{"name": "no external id"}')
        else:
            lines.append(json.dumps({"externalId": f"asset-{i}", "pad": "x" * width})
                         .encode())
    return b"\n".join(lines) + b"\n"


def _view(tmp_path: Path, content: bytes, entry: str = "0000_assets.jsonl") -> BatchView:
    folder = tmp_path / "batch"
    folder.mkdir(exist_ok=True)
    (folder / entry).write_bytes(content)
    st = (folder / entry).stat()
    document = Document(entry=entry, file_id="f0", sha256=hashlib.sha256(content).hexdigest(),
                        size=len(content), dev=st.st_dev, ino=st.st_ino, attempts=0)

    def open_document(document: Document) -> int:
        return os.open(folder / document.entry, os.O_RDONLY | os.O_CLOEXEC)

    return BatchView(id="0123456789abcdef01234567", folder="loads_in", documents=(document,),
                     files_dir=folder, package=None, staging=tmp_path / "staging",
                     open_document=open_document)


def test_a_multipart_upload_is_fetched_by_centrapay_then_removed(
        tmp_path: Path, s3_endpoint: str, s3_bucket: str, emulator: CentrapayEmulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A file above the multipart threshold is uploaded in parts (streamed), Centrapay
    fetches it through a pre-signed URL made at the create and loads it (the journal
    has its sha256 and size), the report reaches the sidecar's block, and the object is
    gone once the batch is delivered. No signed query reaches the journal."""
    monkeypatch.setattr(publish_s3, "PART", 5 * MIB)   # S3's least part size
    content = _records(75_000, width=120, bad=(7, 70_000))
    assert len(content) > 2 * 5 * MIB
    provider = _provider(tmp_path, s3_endpoint, s3_bucket, emulator.url)
    ledger = FakeLedger()
    view = _view(tmp_path, content)
    provider.prepare(view, ledger)
    assert ledger.rejected == {}
    assert provider.create(view, ledger) == ""
    [key] = ledger.published
    assert key == f"loads/{view.id}/0000_assets.jsonl"
    assert keys(s3_endpoint, s3_bucket) == [key]
    head = client(s3_endpoint).head_object(Bucket=s3_bucket, Key=key)
    assert head["ContentLength"] == len(content)
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]   # three parts
    assert head["ContentType"] == "application/x-ndjson"
    assert uploads(s3_endpoint, s3_bucket) == []

    view = dataclasses.replace(view, published=key)
    assert provider.status(view, "").state == Remote.UPLOADED
    provider.accept(view, "", ledger)
    [remote] = ledger.created_ids
    seen = [provider.status(view, remote).state]
    for _ in range(300):
        if seen[-1] != Remote.RUNNING:
            break
        time.sleep(0.05)
        seen.append(provider.status(view, remote).state)
    assert seen[-1] == Remote.CLOSED, seen
    [result] = provider.download(view, remote)
    report = result.provider_block["report"]
    assert (report["status"], report["count"], report["errorCount"]) == ("complete", 75_000, 2)
    assert [e["index"] for e in report["errors"]] == [7, 70_000]

    journal = emulator.read_journal()
    [created] = [e for e in journal if e["event"] == "create"]
    assert created["batch"] == remote and created["accountId"] == ACCOUNT
    assert created["url"] == f"{s3_endpoint}/{s3_bucket}/{key}"   # the query is not kept
    [fetched] = [e for e in journal if e["event"] == "fetched"]
    assert fetched["sha256"] == hashlib.sha256(content).hexdigest()
    assert fetched["bytes"] == len(content)
    assert "Signature" not in emulator.journal_path.read_text()

    provider.delete(view, remote)
    assert keys(s3_endpoint, s3_bucket) == []


def test_the_url_is_signed_at_the_create_and_reads_only_that_object(
        tmp_path: Path, s3_endpoint: str, s3_bucket: str, emulator: CentrapayEmulator) -> None:
    """The pre-signed URL reads the object; without its query S3 refuses it (it is the
    read key); a second URL made later is another one."""
    provider = _provider(tmp_path, s3_endpoint, s3_bucket, emulator.url)
    ledger = FakeLedger()
    content = _records(10)
    view = _view(tmp_path, content)
    provider.create(view, ledger)
    [key] = ledger.published
    url = provider.publisher.url(key)
    assert "X-Amz-Expires=300" in url and "X-Amz-Signature=" in url
    assert httpx.get(url).content == content
    unsigned = httpx.get(url.split("?")[0])
    assert unsigned.status_code == 403


def test_a_failed_multipart_upload_is_aborted(tmp_path: Path, s3_endpoint: str,
                                              s3_bucket: str, emulator: CentrapayEmulator,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload that breaks off in the middle of its parts leaves neither an object nor
    an unfinished multipart upload in the bucket (the publisher aborts it when S3's own
    abort failed); a file that is not the size its batch recorded is not taken as
    published."""
    monkeypatch.setattr(publish_s3, "PART", 5 * MIB)
    provider = _provider(tmp_path, s3_endpoint, s3_bucket, emulator.url)
    content = _records(60_000, width=120)
    view = _view(tmp_path, content)
    document = view.documents[0]
    path = view.files_dir / document.entry
    key = provider.publisher.key_for(view.id, document.entry)
    # The second part's call fails as a cut network would; s3transfer's own abort of
    # the upload fails too, so only the publisher's abort can clean up after it.
    from botocore.exceptions import EndpointConnectionError

    s3 = provider.publisher.s3
    started: list[str] = []
    aborts: list[str] = []

    def cut(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("PartNumber") == 2:
            started.extend(uploads(s3_endpoint, s3_bucket))
            raise EndpointConnectionError(endpoint_url=s3_endpoint)

    def first_abort_fails(params: dict[str, Any], **kwargs: Any) -> None:
        aborts.append(params["Key"])
        if len(aborts) == 1:
            raise EndpointConnectionError(endpoint_url=s3_endpoint)

    s3.meta.events.register("before-parameter-build.s3.UploadPart", cut)
    s3.meta.events.register("before-parameter-build.s3.AbortMultipartUpload",
                            first_abort_fails)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(publish.PublishError) as caught:
            provider.publisher.publish(key, fd, document.size, lambda: None)
    finally:
        os.close(fd)
    s3.meta.events.unregister("before-parameter-build.s3.UploadPart", cut)
    assert started == [key], "no multipart upload was under way"
    assert aborts == [key, key], aborts
    assert key in str(caught.value) and "later" in str(caught.value)
    assert uploads(s3_endpoint, s3_bucket) == []
    assert keys(s3_endpoint, s3_bucket) == []

    os.truncate(path, 6 * MIB)   # the file is not what the batch recorded any more
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(publish.PublishError, match="again later"):
            provider.publisher.publish(key, fd, document.size, lambda: None)
    finally:
        os.close(fd)
    assert uploads(s3_endpoint, s3_bucket) == []
    assert not provider.publisher.present(key, document.size)


def test_tidy_at_start_removes_strays_and_aborts_unfinished_uploads(
        tmp_path: Path, s3_endpoint: str, s3_bucket: str, emulator: CentrapayEmulator) -> None:
    """At start: objects under the prefix that no batch names are removed, unfinished
    multipart uploads there are aborted; named objects and anything outside the prefix
    stay."""
    s3 = client(s3_endpoint)
    for key in ("loads/aaaa/0000_kept.jsonl", "loads/bbbb/0000_stray.jsonl",
                "loads/probe-0123.txt", "other/not-ours.txt"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b'{"externalId": "1"}\n')
    started = s3.create_multipart_upload(Bucket=s3_bucket, Key="loads/cccc/0000_torn.jsonl")
    s3.upload_part(Bucket=s3_bucket, Key="loads/cccc/0000_torn.jsonl", PartNumber=1,
                   UploadId=started["UploadId"], Body=b"x" * (5 * MIB))
    s3.create_multipart_upload(Bucket=s3_bucket, Key="other/theirs.bin")
    assert uploads(s3_endpoint, s3_bucket) == ["loads/cccc/0000_torn.jsonl",
                                               "other/theirs.bin"]
    provider = _provider(tmp_path, s3_endpoint, s3_bucket, emulator.url)
    removed = provider.tidy(Keep({"loads/aaaa/0000_kept.jsonl"}))
    assert removed == 3   # two strays and one unfinished upload
    assert keys(s3_endpoint, s3_bucket) == ["loads/aaaa/0000_kept.jsonl",
                                            "other/not-ours.txt"]
    assert uploads(s3_endpoint, s3_bucket) == ["other/theirs.bin"]
    assert provider.tidy(Keep({"loads/aaaa/0000_kept.jsonl"})) == 0
