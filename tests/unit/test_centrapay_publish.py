"""Publishing into a served folder, with real files: unguessable names, temp + rename,
mode 0644, the crash point in the middle of the copy, removal, and tidy at start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
    assert publisher.tidy(set()) == 0


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
    assert publisher.tidy({kept, "9" * 32}) == 4
    assert sorted(os.listdir(folder)) == sorted(
        [kept, f".{kept}.part", "index.html", "A" * 32, "e" * 31, f"{'f' * 32}.jsonl.bak",
         ".hidden", "0" * 32])
    assert publisher.tidy({kept}) == 0
