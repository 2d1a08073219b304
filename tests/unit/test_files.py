"""Tests for folderseal.core.files: numbering, durable no-replace writes and moves, hashing."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from folderseal.core import files

SHM = Path("/dev/shm")


def leftovers(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(files.TEMP_PREFIX))


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than tmp_path (a tmpfs), removed afterwards."""
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) to move across")
    folder = SHM / f"folderseal-test-{os.getpid()}-{os.urandom(4).hex()}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- numbered ------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "n", "expected"), [
    ("invoice.pdf", 0, "invoice.pdf"),
    ("invoice.pdf", 1, "invoice-1.pdf"),
    ("invoice.pdf", 2, "invoice-2.pdf"),
    ("invoice.pdf", 17, "invoice-17.pdf"),
    ("README", 2, "README-2"),
    (".profile", 2, ".profile-2"),
    ("archive.tar.gz", 3, "archive.tar-3.gz"),
    ("invoice.pdf.json", 1, "invoice.pdf-1.json"),
])
def test_numbered(name: str, n: int, expected: str) -> None:
    """The n-th free name puts -n before the extension (n=0 is the name itself)."""
    assert files.numbered(name, n) == expected


# -- write_new -----------------------------------------------------------------------------

def test_write_new_writes_the_data_with_the_mode(tmp_path: Path) -> None:
    """write_new creates the file with the bytes and exactly the mode asked (umask aside)."""
    old = os.umask(0o077)
    try:
        path = files.write_new(tmp_path, "out.json", b'{"a": 1}\n', 0o644)
    finally:
        os.umask(old)
    assert path == tmp_path / "out.json"
    assert path.read_bytes() == b'{"a": 1}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert leftovers(tmp_path) == []


def test_write_new_never_replaces(tmp_path: Path) -> None:
    """An existing name raises FileExistsError, keeps its content and leaves no temp file."""
    (tmp_path / "out.json").write_bytes(b"first")
    with pytest.raises(FileExistsError):
        files.write_new(tmp_path, "out.json", b"second", 0o644, tag="f1")
    assert (tmp_path / "out.json").read_bytes() == b"first"
    assert leftovers(tmp_path) == []
    assert os.listdir(tmp_path) == ["out.json"]


def test_write_new_does_not_follow_a_symlink(tmp_path: Path) -> None:
    """A dangling symlink at the name counts as taken: nothing is written through it."""
    target = tmp_path / "target"
    (tmp_path / "out.json").symlink_to(target)
    with pytest.raises(FileExistsError):
        files.write_new(tmp_path, "out.json", b"data", 0o644)
    assert not target.exists()
    assert leftovers(tmp_path) == []


# -- link_noreplace ------------------------------------------------------------------------

def test_link_noreplace_adds_a_name(tmp_path: Path) -> None:
    """link_noreplace gives the file a second name with the same inode."""
    src = tmp_path / "a"
    src.write_bytes(b"x")
    files.link_noreplace(src, tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == b"x"
    assert os.stat(src).st_ino == os.stat(tmp_path / "b").st_ino


def test_link_noreplace_refuses_a_taken_name(tmp_path: Path) -> None:
    """A taken name raises FileExistsError and is left as it was."""
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        files.link_noreplace(src, dst)
    assert dst.read_bytes() == b"old"


# -- move_noreplace ------------------------------------------------------------------------

def test_move_noreplace_same_filesystem(tmp_path: Path) -> None:
    """A move on one filesystem keeps the inode and removes the source name."""
    src = tmp_path / "src" / "a.pdf"
    src.parent.mkdir()
    src.write_bytes(b"content")
    inode = src.stat().st_ino
    dst = tmp_path / "dst.pdf"
    files.move_noreplace(src, dst)
    assert not src.exists()
    assert dst.read_bytes() == b"content"
    assert dst.stat().st_ino == inode


def test_move_noreplace_refuses_a_taken_name(tmp_path: Path) -> None:
    """A taken destination raises FileExistsError; source and destination are untouched."""
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        files.move_noreplace(src, dst)
    assert src.read_bytes() == b"new"
    assert dst.read_bytes() == b"old"


def test_move_noreplace_across_filesystems(tmp_path: Path, other_fs: Path) -> None:
    """Across filesystems the file is copied, fsynced, linked, then the source removed."""
    src = tmp_path / "a.pdf"
    data = os.urandom((1 << 20) + 123)
    src.write_bytes(data)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    dst = other_fs / "a.pdf"
    files.move_noreplace(src, dst, mode=0o640, tag="f1")
    assert not src.exists()
    assert dst.read_bytes() == data
    assert stat.S_IMODE(dst.stat().st_mode) == 0o640
    assert dst.stat().st_mtime_ns == 1_600_000_000_123_456_789
    assert leftovers(other_fs) == []


def test_move_noreplace_across_filesystems_makes_the_copy_durable_before_removing(
        tmp_path: Path, other_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy's folder is fsynced before the original is unlinked: a power cut between
    the two cannot leave the file in neither place."""
    calls: list[str] = []
    real_fsync_dir, real_unlink = files.fsync_dir, Path.unlink

    def fsync_dir(folder: Path) -> None:
        calls.append(f"fsync {folder}")
        real_fsync_dir(folder)

    def unlink(self: Path, missing_ok: bool = False) -> None:
        calls.append(f"unlink {self}")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(files, "fsync_dir", fsync_dir)
    monkeypatch.setattr(Path, "unlink", unlink)
    src = tmp_path / "a.pdf"
    src.write_bytes(b"%PDF-1.7 sealed later")
    files.move_noreplace(src, other_fs / "a.pdf", tag="f1")
    assert f"unlink {src}" in calls
    assert calls.index(f"fsync {other_fs}") < calls.index(f"unlink {src}"), calls


def test_move_noreplace_across_filesystems_refuses_a_taken_name(
        tmp_path: Path, other_fs: Path) -> None:
    """Across filesystems a taken name is not replaced, the source stays, no temp is left."""
    src = tmp_path / "a.pdf"
    src.write_bytes(b"new")
    dst = other_fs / "a.pdf"
    dst.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        files.move_noreplace(src, dst)
    assert src.read_bytes() == b"new"
    assert dst.read_bytes() == b"old"
    assert leftovers(other_fs) == []


def test_move_noreplace_moves_a_symbolic_link_across_filesystems(
        tmp_path: Path, other_fs: Path) -> None:
    """A symbolic link (a link dropped into an inbox, on its way to an errors folder on
    another filesystem) moves as the link it is, never followed, where it failed before."""
    src = tmp_path / "link.txt"
    src.symlink_to("/etc/hostname")
    dst = other_fs / "link.txt"
    files.move_noreplace(src, dst, tag="f1")
    assert not os.path.lexists(src)
    assert dst.is_symlink() and os.readlink(dst) == "/etc/hostname"
    assert leftovers(other_fs) == []


def test_move_noreplace_refuses_a_fifo_across_filesystems_without_waiting(
        tmp_path: Path, other_fs: Path) -> None:
    """A FIFO cannot be copied to another filesystem: it is refused at once and stays,
    instead of the move waiting for ever for a writer."""
    src = tmp_path / "pipe"
    os.mkfifo(src)
    with pytest.raises(OSError, match="not a regular file"):
        files.move_noreplace(src, other_fs / "pipe")
    assert stat.S_ISFIFO(os.lstat(src).st_mode)
    assert leftovers(other_fs) == []


# -- hashing and copying -------------------------------------------------------------------

def test_hash_fd_hashes_from_the_start(tmp_path: Path) -> None:
    """hash_fd gives sha256 and size of the whole file, wherever the descriptor points."""
    data = os.urandom(2 * files.CHUNK + 5)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 0, os.SEEK_END)
        assert files.hash_fd(fd) == (hashlib.sha256(data).hexdigest(), len(data))
    finally:
        os.close(fd)
    assert files.hash_path(path) == (hashlib.sha256(data).hexdigest(), len(data))


def test_hash_fd_of_an_empty_file(tmp_path: Path) -> None:
    """An empty file hashes to the sha256 of nothing, size 0."""
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert files.hash_path(path) == (hashlib.sha256(b"").hexdigest(), 0)


def test_hash_path_refuses_a_symlink(tmp_path: Path) -> None:
    """hash_path does not follow a symlink."""
    (tmp_path / "real").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        files.hash_path(tmp_path / "link")


def test_copy_fd_copies_and_hashes(tmp_path: Path) -> None:
    """copy_fd writes every byte of the source and returns the copy's sha256 and size."""
    data = os.urandom(files.CHUNK + 999)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(data)
    src_fd = os.open(src, os.O_RDONLY)
    dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        result = files.copy_fd(src_fd, dst_fd)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    assert result == (hashlib.sha256(data).hexdigest(), len(data))
    assert dst.read_bytes() == data


# -- leftovers, folders --------------------------------------------------------------------

def test_temp_names_are_hidden_and_tagged() -> None:
    """Temp names start with a dot (the scan ignores them) and carry the tag."""
    name = files.temp_name("f1")
    assert name.startswith(".") and name.startswith(files.TEMP_PREFIX + "f1-")
    assert files.temp_name("f1") != name


def test_remove_leftovers_removes_only_that_tags_temp_files(tmp_path: Path) -> None:
    """remove_leftovers deletes a tag's temp files and nothing else."""
    mine = [tmp_path / files.temp_name("f1") for _ in range(2)]
    other = tmp_path / files.temp_name("f2")
    untagged = tmp_path / files.temp_name()
    keep = tmp_path / "f1-invoice.pdf"
    for path in (*mine, other, untagged, keep):
        path.write_bytes(b"x")
    files.remove_leftovers(tmp_path, "f1")
    assert sorted(os.listdir(tmp_path)) == sorted([other.name, untagged.name, keep.name])


def test_temp_file_is_removed_unless_linked(tmp_path: Path) -> None:
    """A temp file the caller did not give a name disappears when the block ends."""
    with files.temp_file(tmp_path, 0o600, "f1") as (fd, path):
        os.write(fd, b"x")
        assert path.exists()
    assert leftovers(tmp_path) == []


def test_fsync_dir(tmp_path: Path) -> None:
    """fsync_dir syncs a folder and refuses what is not a folder."""
    files.fsync_dir(tmp_path)
    files.fsync_dir(str(tmp_path))
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        files.fsync_dir(tmp_path / "f")
    with pytest.raises(FileNotFoundError):
        files.fsync_dir(tmp_path / "missing")


def test_makedirs_creates_missing_parents(tmp_path: Path) -> None:
    """makedirs creates every missing level and accepts an existing folder."""
    target = tmp_path / "a" / "b" / "c"
    files.makedirs(target)
    assert target.is_dir()
    files.makedirs(target)
    assert target.is_dir()


def test_free_bytes(tmp_path: Path) -> None:
    """free_bytes is a number for an existing folder and None for a missing one."""
    free = files.free_bytes(tmp_path)
    assert isinstance(free, int) and free > 0
    assert files.free_bytes(tmp_path / "missing" / "x") is None
