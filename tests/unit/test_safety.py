"""Tests for folderseal.core.safety: refused layouts and opening claimed files without being
fooled."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from folderseal.core.config import Settings, load
from folderseal.core.errors import ConfigError, PlantedFile
from folderseal.core.safety import check_layout, layout_problems, open_claimed, open_relative_dir
from tests.helpers import Layout

SHM = Path("/dev/shm")


def settings(tmp_path: Path, folders: dict[str, dict[str, Any]] | None = None,
             state_dir: str = "state") -> Settings:
    """Write and load a config; every folder defaults to inbox/outbox/errors under its name."""
    folders = folders if folders is not None else {"scans": {}}
    lines = [f'state_dir = "{state_dir}"', "", "[providers.local]", 'kind = "local"',
             'certificate = "seal.p12"']
    for name, overrides in folders.items():
        values = {"inbox": f"{name}/inbox", "outbox": f"{name}/outbox",
                  "errors": f"{name}/errors", "provider": "local", **overrides}
        lines += ["", f"[folders.{name}]"] + [f'{k} = "{v}"' for k, v in values.items()]
        for key in ("inbox", "outbox", "errors"):
            target = Path(values[key])
            (target if target.is_absolute() else tmp_path / target).mkdir(
                parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load(path)


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than tmp_path (a tmpfs), removed afterwards."""
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm)")
    folder = SHM / f"folderseal-test-{os.getpid()}-{os.urandom(4).hex()}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- layout ----------------------------------------------------------------------------------

def test_clean_layout_has_no_problems(tmp_path: Path) -> None:
    """Separate inbox, outbox, errors, archive and state folders are fine."""
    cfg = settings(tmp_path, {"scans": {"archive": "scans/archive"}, "mail": {}})
    assert layout_problems(cfg) == []
    check_layout(cfg)


def test_default_work_dir_is_accepted(tmp_path: Path) -> None:
    """The default work folder <inbox>/.folderseal/work is hidden and on the inbox's disk."""
    cfg = settings(tmp_path)
    assert cfg.folders["scans"].work_folder == tmp_path / "scans/inbox/.folderseal/work"
    assert layout_problems(cfg) == []


def test_work_dir_under_a_dot_folder_is_accepted(tmp_path: Path) -> None:
    """A work_dir inside the inbox but below a dot-folder is not scanned, so it is fine."""
    cfg = settings(tmp_path, {"scans": {"work_dir": "scans/inbox/.hidden/work"}})
    assert layout_problems(cfg) == []


def test_work_dir_beside_the_inbox_is_accepted(tmp_path: Path) -> None:
    """A work_dir outside the inbox on the same filesystem is fine."""
    cfg = settings(tmp_path, {"scans": {"work_dir": "scans/work"}})
    assert layout_problems(cfg) == []


@pytest.mark.parametrize("key", ["outbox", "errors", "archive"])
def test_output_folder_inside_the_inbox_is_refused(tmp_path: Path, key: str) -> None:
    """An outbox, errors or archive folder inside an inbox would feed the inbox: refused."""
    cfg = settings(tmp_path, {"scans": {key: f"scans/inbox/{key}"}})
    problems = layout_problems(cfg)
    assert len(problems) == 1
    assert f"folders.scans.{key}" in problems[0] and "inside" in problems[0]
    with pytest.raises(ConfigError) as caught:
        check_layout(cfg)
    assert caught.value.exit_code == 78


def test_outbox_equal_to_the_inbox_is_refused(tmp_path: Path) -> None:
    """An outbox that is the inbox itself is refused."""
    cfg = settings(tmp_path, {"scans": {"outbox": "scans/inbox"}})
    assert any("folders.scans.outbox" in p for p in layout_problems(cfg))


def test_output_folder_inside_another_folders_inbox_is_refused(tmp_path: Path) -> None:
    """The errors folder of one folder inside the inbox of another is refused."""
    cfg = settings(tmp_path, {"scans": {"errors": "mail/inbox/failed"}, "mail": {}})
    problems = layout_problems(cfg)
    assert any("folders.scans.errors" in p and "folders.mail.inbox" in p for p in problems)


def test_output_inside_the_inbox_through_a_symlink_is_refused(tmp_path: Path) -> None:
    """An outbox reached through a symlink into the inbox is still inside the inbox."""
    (tmp_path / "scans" / "inbox" / "signed").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "scans" / "inbox" / "signed")
    cfg = settings(tmp_path, {"scans": {"outbox": "alias"}})
    assert any("folders.scans.outbox" in p for p in layout_problems(cfg))


def test_state_dir_inside_an_inbox_is_refused(tmp_path: Path) -> None:
    """The store inside an inbox is refused."""
    cfg = settings(tmp_path, state_dir="scans/inbox/state")
    problems = layout_problems(cfg)
    assert any("state_dir" in p and "folders.scans.inbox" in p for p in problems)


def test_inbox_inside_another_inbox_is_refused(tmp_path: Path) -> None:
    """An inbox inside another would share its files between two folders: refused."""
    cfg = settings(tmp_path, {"scans": {}, "sub": {"inbox": "scans/inbox/sub"}})
    problems = layout_problems(cfg)
    assert any("folders.sub.inbox" in p and "folders.scans.inbox" in p for p in problems)


def test_work_dir_visible_inside_the_inbox_is_refused(tmp_path: Path) -> None:
    """A work_dir inside the inbox and not under a dot-folder would be scanned: refused."""
    cfg = settings(tmp_path, {"scans": {"work_dir": "scans/inbox/work"}})
    problems = layout_problems(cfg)
    assert len(problems) == 1
    assert "folders.scans.work_dir" in problems[0]


def test_work_dir_visible_inside_another_folders_inbox_is_refused(tmp_path: Path) -> None:
    """A work_dir inside another folder's inbox would be scanned (and claimed) by that folder."""
    cfg = settings(tmp_path, {"scans": {"work_dir": "mail/inbox/work"}, "mail": {}})
    problems = layout_problems(cfg)
    assert any("folders.scans.work_dir" in p for p in problems), problems


def test_work_dir_equal_to_the_inbox_is_refused(tmp_path: Path) -> None:
    """The inbox itself as work_dir is refused."""
    cfg = settings(tmp_path, {"scans": {"work_dir": "scans/inbox"}})
    assert any("folders.scans.work_dir" in p for p in layout_problems(cfg))


def test_work_dir_on_another_filesystem_is_refused(tmp_path: Path, other_fs: Path) -> None:
    """A work_dir on another filesystem than its inbox cannot take an atomic rename: refused."""
    cfg = settings(tmp_path, {"scans": {"work_dir": str(other_fs / "work")}})
    problems = layout_problems(cfg)
    assert len(problems) == 1
    assert "folders.scans.work_dir" in problems[0] and "filesystem" in problems[0]


# -- open_claimed ----------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A work folder with one claimed file, and a descriptor of the folder."""
    path = tmp_path / "batch"
    path.mkdir()
    (path / "0000_a.pdf").write_bytes(b"claimed content")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield path, fd
    finally:
        os.close(fd)


def test_open_claimed_opens_the_claimed_file(folder: tuple[Path, int]) -> None:
    """The claimed file (same device and inode) opens for blocking reads."""
    path, dir_fd = folder
    st = os.stat(path / "0000_a.pdf")
    fd = open_claimed(dir_fd, "0000_a.pdf", st.st_dev, st.st_ino)
    try:
        assert os.read(fd, 100) == b"claimed content"
        assert os.get_blocking(fd)
    finally:
        os.close(fd)


def test_open_claimed_refuses_a_symlink(folder: tuple[Path, int], tmp_path: Path) -> None:
    """A symlink put where the claimed file was is a PlantedFile, not followed."""
    path, dir_fd = folder
    st = os.stat(path / "0000_a.pdf")
    secret = tmp_path / "shadow"
    secret.write_bytes(b"do not seal")
    os.replace(path / "0000_a.pdf", tmp_path / "moved")
    (path / "0000_a.pdf").symlink_to(secret)
    with pytest.raises(PlantedFile) as caught:
        open_claimed(dir_fd, "0000_a.pdf", st.st_dev, st.st_ino)
    assert caught.value.code == "planted"


def test_open_claimed_refuses_a_symlink_to_the_claimed_file(
        folder: tuple[Path, int], tmp_path: Path) -> None:
    """Even a symlink pointing at the very inode that was claimed is refused."""
    path, dir_fd = folder
    os.replace(path / "0000_a.pdf", tmp_path / "real")
    st = os.stat(tmp_path / "real")
    (path / "0000_a.pdf").symlink_to(tmp_path / "real")
    with pytest.raises(PlantedFile):
        open_claimed(dir_fd, "0000_a.pdf", st.st_dev, st.st_ino)


def test_open_claimed_refuses_a_different_inode(folder: tuple[Path, int]) -> None:
    """A different file under the claimed name is a PlantedFile."""
    path, dir_fd = folder
    st = os.stat(path / "0000_a.pdf")
    (path / "swap").write_bytes(b"planted content")
    os.replace(path / "swap", path / "0000_a.pdf")
    assert os.stat(path / "0000_a.pdf").st_ino != st.st_ino
    with pytest.raises(PlantedFile):
        open_claimed(dir_fd, "0000_a.pdf", st.st_dev, st.st_ino)


def test_open_claimed_refuses_a_wrong_device(folder: tuple[Path, int]) -> None:
    """The same inode number on another device is not the claimed file."""
    path, dir_fd = folder
    st = os.stat(path / "0000_a.pdf")
    with pytest.raises(PlantedFile):
        open_claimed(dir_fd, "0000_a.pdf", st.st_dev + 1, st.st_ino)


def test_open_claimed_refuses_a_different_inode_with_other_content_even_knowing_the_hash(
        folder: tuple[Path, int]) -> None:
    """Knowing the claim's hash does not let a different file with other bytes through."""
    path, dir_fd = folder
    st = os.stat(path / "0000_a.pdf")
    claimed = hashlib.sha256(b"claimed content").hexdigest()
    (path / "swap").write_bytes(b"planted content")
    os.replace(path / "swap", path / "0000_a.pdf")
    with pytest.raises(PlantedFile):
        open_claimed(dir_fd, "0000_a.pdf", st.st_dev, st.st_ino, claimed)


def test_open_claimed_accepts_a_remounted_share_by_content(folder: tuple[Path, int]) -> None:
    """A share mounted again gives its files a new device (and on SMB inode) number: the
    file whose bytes hash to the claim's sha256 is the claimed file, read from its start."""
    path, dir_fd = folder
    st = os.stat(path / "0000_a.pdf")
    claimed = hashlib.sha256(b"claimed content").hexdigest()
    fd = open_claimed(dir_fd, "0000_a.pdf", st.st_dev + 1, st.st_ino + 7, claimed)
    try:
        assert os.read(fd, 100) == b"claimed content"
        assert os.get_blocking(fd)
    finally:
        os.close(fd)


def test_open_claimed_refuses_a_fifo_without_blocking(folder: tuple[Path, int]) -> None:
    """A FIFO under the claimed name is refused at once (not a regular file, no hang)."""
    path, dir_fd = folder
    os.unlink(path / "0000_a.pdf")
    os.mkfifo(path / "0000_a.pdf")
    st = os.stat(path / "0000_a.pdf")
    with pytest.raises(PlantedFile):
        open_claimed(dir_fd, "0000_a.pdf", st.st_dev, st.st_ino)


def test_open_claimed_refuses_a_directory(folder: tuple[Path, int]) -> None:
    """A directory under the claimed name is refused even with its own inode."""
    path, dir_fd = folder
    os.unlink(path / "0000_a.pdf")
    (path / "0000_a.pdf").mkdir()
    st = os.stat(path / "0000_a.pdf")
    with pytest.raises(PlantedFile):
        open_claimed(dir_fd, "0000_a.pdf", st.st_dev, st.st_ino)


def test_open_claimed_of_a_missing_file_is_not_found(folder: tuple[Path, int]) -> None:
    """A claimed file that is gone raises FileNotFoundError (not a PlantedFile)."""
    path, dir_fd = folder
    st = os.stat(path / "0000_a.pdf")
    os.unlink(path / "0000_a.pdf")
    with pytest.raises(FileNotFoundError):
        open_claimed(dir_fd, "0000_a.pdf", st.st_dev, st.st_ino)


# -- open_relative_dir -----------------------------------------------------------------------

@pytest.fixture
def claim_root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "incoming" / "c1"
    (root / "2026" / "11").mkdir(parents=True)
    (root / "2026" / "11" / "a.pdf").write_bytes(b"x")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield root, fd
    finally:
        os.close(fd)


def test_open_relative_dir_walks_down(claim_root: tuple[Path, int]) -> None:
    """open_relative_dir opens root/2026/11 and the root descriptor stays open."""
    root, root_fd = claim_root
    fd = open_relative_dir(root_fd, ("2026", "11"))
    try:
        assert os.listdir(fd) == ["a.pdf"]
        assert os.fstat(fd).st_ino == os.stat(root / "2026" / "11").st_ino
    finally:
        os.close(fd)
    os.fstat(root_fd)  # still open


def test_open_relative_dir_with_no_parts_is_the_root(claim_root: tuple[Path, int]) -> None:
    """No parts gives a new descriptor of the root itself."""
    root, root_fd = claim_root
    fd = open_relative_dir(root_fd, ())
    try:
        assert fd != root_fd
        assert os.fstat(fd).st_ino == os.stat(root).st_ino
    finally:
        os.close(fd)


@pytest.mark.parametrize("parts", [("..",), ("2026", ".."), (".",), ("",), ("2026/11",)])
def test_open_relative_dir_refuses_unsafe_components(
        claim_root: tuple[Path, int], parts: tuple[str, ...]) -> None:
    """"..", ".", empty and slashed components are refused as PlantedFile."""
    _, root_fd = claim_root
    with pytest.raises(PlantedFile):
        open_relative_dir(root_fd, parts)


def test_open_relative_dir_does_not_follow_a_symlinked_directory(
        claim_root: tuple[Path, int], tmp_path: Path) -> None:
    """A symlinked directory in the path is never followed."""
    root, root_fd = claim_root
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (root / "2026" / "link").symlink_to(elsewhere)
    with pytest.raises((PlantedFile, OSError)) as caught:
        open_relative_dir(root_fd, ("2026", "link"))
    if isinstance(caught.value, OSError):
        assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR)


def test_open_relative_dir_reports_a_symlinked_directory_as_planted(
        claim_root: tuple[Path, int], tmp_path: Path) -> None:
    """A symlinked directory is a PlantedFile (the file goes to errors), like a symlinked file."""
    root, root_fd = claim_root
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    os.replace(root / "2026" / "11", tmp_path / "moved")
    (root / "2026" / "11").symlink_to(elsewhere)
    with pytest.raises(PlantedFile):
        open_relative_dir(root_fd, ("2026", "11"))


def test_state_dir_on_a_network_filesystem_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state_dir on cifs (SQLite's WAL needs a local filesystem) is a layout problem."""
    layout = Layout(tmp_path)
    layout.write()
    settings = load(layout.config)
    fake = tmp_path / "mountinfo"
    fake.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        f"40 22 0:50 / {layout.state} rw - cifs //nas/state rw\n")
    monkeypatch.setattr("folderseal.core.mounts.MOUNTINFO", fake)
    problems = layout_problems(settings)
    assert any("network filesystem (cifs)" in p and "state_dir" in p for p in problems)
