"""Publishing into a served folder, with real files: unguessable names, temp + rename,
mode 0644, the crash point in the middle of the copy, removal, and tidy at start."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from folderseal.providers.centrapay import publish
from folderseal.providers.centrapay.config import CentrapayProviderConfig
from folderseal.providers.centrapay.publish import FolderPublisher, PublishError


def _publisher(folder: Path) -> FolderPublisher:
    cfg = CentrapayProviderConfig.model_validate({
        "kind": "centrapay", "base_url": "http://centrapay.test", "api_key": "k",
        "account_id": "acc", "batch_type": "farmlands-external-asset", "publish": "folder",
        "publish_dir": str(folder), "publish_url_prefix": "https://files.test/batches/"})
    made = publish.make(cfg)
    assert isinstance(made, FolderPublisher)
    return made


def _source(tmp_path: Path, data: bytes) -> int:
    path = tmp_path / "source.jsonl"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def test_a_copy_under_an_unguessable_name(tmp_path: Path) -> None:
    folder = tmp_path / "public"
    folder.mkdir()
    publisher = _publisher(folder)
    key = publisher.key_for("b1", "0000_orders.JSONL")
    assert FolderPublisher.NAME.match(key) and key.endswith(".jsonl") and len(key) == 38
    assert publisher.key_for("b1", "0000_orders.JSONL") != key
    assert publisher.key_for("b1", "0000_plain").isalnum()
    data = os.urandom(3 * publish.CHUNK + 5)
    fd = _source(tmp_path, data)
    seen: list[list[str]] = []
    try:
        publisher.publish(key, fd, len(data), lambda: seen.append(sorted(os.listdir(folder))))
    finally:
        os.close(fd)
    # Reached once, after the first chunk: only the temp name existed then.
    assert seen == [[f".{key}.part"]]
    assert os.listdir(folder) == [key]
    assert (folder / key).read_bytes() == data
    assert stat.S_IMODE((folder / key).stat().st_mode) == 0o644
    assert publisher.url(key) == "https://files.test/batches/" + key
    assert publisher.present(key, len(data))
    assert not publisher.present(key, len(data) + 1)
    publisher.remove(key)
    publisher.remove(key)   # idempotent
    assert not publisher.present(key, len(data)) and os.listdir(folder) == []


def test_a_copy_that_fails_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "public"
    folder.mkdir()
    publisher = _publisher(folder)
    key = publisher.key_for("b1", "0000_a.csv")
    data = b"x" * (2 * publish.CHUNK)
    fd = _source(tmp_path, data)

    def interrupted() -> None:
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            publisher.publish(key, fd, len(data), interrupted)
        with pytest.raises(PublishError, match="changed while it was copied"):
            publisher.publish(key, fd, len(data) - 1, lambda: None)
    finally:
        os.close(fd)
    assert os.listdir(folder) == []


def test_a_missing_folder_names_the_fix(tmp_path: Path) -> None:
    publisher = _publisher(tmp_path / "nowhere")
    fd = _source(tmp_path, b"{}\n")
    try:
        with pytest.raises(PublishError, match="publish_dir .*nowhere.*create it") as caught:
            publisher.publish(publisher.key_for("b", "0000_a.jsonl"), fd, 3, lambda: None)
    finally:
        os.close(fd)
    assert caught.value.config
    assert publisher.tidy(set) == 0


def test_a_key_that_is_not_a_published_name_is_refused(tmp_path: Path) -> None:
    publisher = _publisher(tmp_path)
    for key in ("../etc/passwd", "config.toml", "0" * 31 + ".jsonl", ""):
        with pytest.raises(PublishError, match="not a name folderseal publishes under"):
            publisher.remove(key)
        with pytest.raises(PublishError):
            publisher.url(key)


def test_tidy_removes_what_no_batch_names(tmp_path: Path) -> None:
    folder = tmp_path / "public"
    folder.mkdir()
    publisher = _publisher(folder)
    kept, stale, odd = "a" * 32 + ".jsonl", "b" * 32 + ".csv", "c" * 32
    names = [kept, stale, odd, f".{kept}.part", f".{stale}.part", f".{'d' * 32}.part",
             "index.html", "A" * 32, "e" * 31, f"{'f' * 32}.jsonl.bak", ".hidden"]
    for name in names:
        (folder / name).write_bytes(b"x")
    (folder / ("0" * 32)).mkdir()    # a folder of that name is not ours to remove
    assert publisher.tidy(lambda: {kept, "9" * 32}) == 4
    assert sorted(os.listdir(folder)) == sorted(
        [kept, f".{kept}.part", "index.html", "A" * 32, "e" * 31, f"{'f' * 32}.jsonl.bak",
         ".hidden", "0" * 32])
    assert publisher.tidy(lambda: {kept}) == 0


def test_tidy_lists_first_and_asks_what_to_keep_after(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that records its key and writes its copy while tidy starts (before the
    listing) keeps it: keep() is asked after the listing. (Asked before, as the store
    was read once, the copy would be removed as a stray.)"""
    folder = tmp_path / "public"
    folder.mkdir()
    publisher = _publisher(folder)
    stray, fresh = "a" * 32 + ".jsonl", "b" * 32 + ".jsonl"
    (folder / stray).write_bytes(b"left by a crash")
    recorded: set[str] = set()
    events: list[str] = []
    scandir = os.scandir

    def listing(path: object) -> object:
        recorded.add(fresh)                  # the batch records its key…
        (folder / fresh).write_bytes(b"x")   # …then copies
        events.append("listed")
        return scandir(path)  # type: ignore[call-overload]

    def keep() -> set[str]:
        events.append("keep")
        return set(recorded)

    monkeypatch.setattr(os, "scandir", listing)
    assert publisher.tidy(keep) == 1
    assert events == ["listed", "keep"]
    assert os.listdir(folder) == [fresh]


# -- S3: what is told apart without a server (a real one: tests/s3server.py) ------------------

class FakeS3:
    """The calls tidy makes, over a fixed listing."""

    def __init__(self, keys: list[str], uploads: list[str]) -> None:
        self.keys = keys
        self.uploads = uploads
        self.deleted: list[str] = []
        self.aborted: list[str] = []

    def get_paginator(self, name: str) -> object:
        fake = self

        class Pages:
            def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, object]]:
                if name == "list_objects_v2":
                    return [{"Contents": [{"Key": k} for k in fake.keys
                                          if k.startswith(Prefix)]}]
                return [{"Uploads": [{"Key": k, "UploadId": f"u-{k}"} for k in fake.uploads
                                     if k.startswith(Prefix)]}]
        return Pages()

    def delete_objects(self, Bucket: str, Delete: dict[str, object]) -> dict[str, object]:
        self.deleted += [o["Key"] for o in Delete["Objects"]]  # type: ignore[attr-defined]
        return {}

    def abort_multipart_upload(self, Bucket: str, Key: str, UploadId: str) -> None:
        self.aborted.append(Key)


def _s3(**overrides: object) -> publish.S3Publisher:
    cfg = CentrapayProviderConfig.model_validate({
        "kind": "centrapay", "base_url": "http://centrapay.test", "api_key": "k",
        "account_id": "acc", "batch_type": "ticketek-ticket", "s3_bucket": "batch-files",
        **overrides})
    made = publish.make(cfg)
    assert isinstance(made, publish.S3Publisher)
    return made


def test_s3_keys_and_tidy_under_the_prefix() -> None:
    publisher = _s3()
    key = publisher.key_for("0123456789abcdef01234567", "0000_t.jsonl")
    assert key == "folderseal/0123456789abcdef01234567/0000_t.jsonl"
    probe = publisher.probe_key()
    stale = "folderseal/aaaaaaaaaaaaaaaaaaaaaaaa/0000_old.jsonl"
    fake = FakeS3([key, stale, probe, "folderseal/README", "folderseal/x/y/z",
                   "other/aaaaaaaaaaaaaaaaaaaaaaaa/0000_a.jsonl"],
                  [key, "folderseal/notes/unfinished"])
    publisher._client = fake
    assert publisher.tidy(lambda: {key}) == 5
    assert fake.deleted == [stale, probe, "folderseal/README", "folderseal/x/y/z"]
    assert fake.aborted == ["folderseal/notes/unfinished"]   # not the batch's own


def test_s3_tidy_lists_first_and_asks_what_to_keep_after() -> None:
    """An upload (finished or in progress) whose key is recorded while tidy lists is
    neither removed nor aborted."""
    publisher = _s3()
    fresh = publisher.key_for("0123456789abcdef01234567", "0000_t.jsonl")
    fake = FakeS3([fresh], [fresh])
    publisher._client = fake
    recorded: set[str] = set()
    paginator = fake.get_paginator

    def listing(name: str) -> object:
        recorded.add(fresh)   # recorded while tidy lists (before its upload started)
        return paginator(name)

    fake.get_paginator = listing  # type: ignore[method-assign]
    assert publisher.tidy(lambda: set(recorded)) == 0
    assert fake.deleted == [] and fake.aborted == []


def test_an_empty_prefix_never_tidies_foreign_objects() -> None:
    publisher = _s3(s3_prefix="")
    fake = FakeS3(["photos/2026/a.jpg", "0123456789abcdef01234567/0000_a.csv", "index.html",
                   "deadbeef/0000_a.csv", "0123456789abcdef01234567/notes.txt"], [])
    publisher._client = fake
    assert publisher.tidy(set) == 1
    assert fake.deleted == ["0123456789abcdef01234567/0000_a.csv"]


def test_s3_errors_name_the_bucket_and_the_fix() -> None:
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    publisher = _s3(s3_secret_access_key="s3-secret-value", s3_access_key_id="AKIA")

    def error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"}}, "PutObject")

    cases = [(error("NoSuchBucket"), "the bucket does not exist", True),
             (error("AccessDenied"), "s3:PutObject", True),
             (error("SignatureDoesNotMatch"), "s3_secret_access_key_file", True),
             (NoCredentialsError(), "no S3 credentials", True),
             (EndpointConnectionError(endpoint_url="https://s3.test"), "cannot be reached",
              False),
             (error("SlowDown"), "SlowDown", False)]
    for exc, says, config in cases:
        found = publisher._error("uploading", "folderseal/b/0000_a.jsonl", exc)
        assert says in str(found) and found.config == config, (exc, str(found))
        assert "folderseal/b/0000_a.jsonl in bucket batch-files at AWS" in str(found)
        assert "s3-secret-value" not in str(found)
    try:
        raise S3UploadFailedError("Failed to upload x to batch-files/k: An error occurred "
                                  "(AccessDenied) when calling the PutObject operation")
    except S3UploadFailedError as exc:
        assert publisher._error("uploading", "k", exc).config


# -- S3: a real S3-compatible server on loopback (moto's server mode) ---------------------

@pytest.fixture()
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_s3_uploads_share_one_client_and_one_bounded_transfer_manager(
        tmp_path: Path, moto_url: str) -> None:
    """Uploads from many threads at once (a PUT and multipart ones) go through the
    publisher's one client and one transfer manager, whose bounds are shared; each is
    published whole, fetched back by its pre-signed URL, removed, and tidy sees the
    rest."""
    publisher = _s3(s3_endpoint_url=moto_url, s3_access_key_id="test-key-id",
                    s3_secret_access_key="test-secret-for-moto")
    publisher.s3.create_bucket(Bucket="batch-files")
    sizes = [publish.PART + 5, publish.PART * 2 + 7, 1000]
    datas = [os.urandom(size) for size in sizes]
    keys = [publisher.key_for(f"{n:024x}", f"0000_{n}.jsonl") for n in range(len(sizes))]
    reached: list[str] = []
    errors: list[BaseException] = []

    def upload(number: int) -> None:
        path = tmp_path / f"source{number}"
        path.write_bytes(datas[number])
        fd = os.open(path, os.O_RDONLY)
        try:
            publisher.publish(keys[number], fd, sizes[number],
                              lambda: reached.append(keys[number]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            os.close(fd)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(len(sizes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(reached) == sorted(keys)        # once each, after its first bytes
    client, transfers = publisher.s3, publisher.transfers
    assert publisher.s3 is client and publisher.transfers is transfers
    assert client.meta.config.max_pool_connections == publish.S3_CONNECTIONS
    assert transfers.config.max_request_concurrency == publish.S3_CONCURRENCY
    assert transfers.config.max_in_memory_upload_chunks == publish.S3_CONCURRENCY
    for key, data in zip(keys, datas, strict=True):
        assert publisher.present(key, len(data))
        url = publisher.url(key)
        assert "X-Amz-Signature=" in url and publisher.shown(key) == key
        assert httpx.get(url).content == data
    publisher.remove(keys[0])
    assert not publisher.present(keys[0], sizes[0])
    assert publisher.tidy(lambda: {keys[1]}) == 1
    assert publisher.present(keys[1], sizes[1]) and not publisher.present(keys[2], sizes[2])
    publisher.close()
    assert publisher.transfers is not transfers   # built again after close
    publisher.close()
