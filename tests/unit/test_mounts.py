"""Tests for folderseal.core.mounts with a hand-written mountinfo file."""

from __future__ import annotations

from pathlib import Path

import pytest

from folderseal.core.mounts import Mount, mount_of, mounts


def mountinfo(tmp_path: Path, entries: list[tuple[str, str]]) -> Path:
    """A mountinfo file with one line per (escaped mount point, fstype)."""
    lines = []
    for number, (point, fstype) in enumerate(entries, start=20):
        lines.append(f"{number} 1 0:{number} / {point} rw,relatime shared:{number} - {fstype} "
                     f"src{number} rw")
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "fs"
    folder.mkdir()
    return folder


def test_mounts_reads_point_and_type(tmp_path: Path) -> None:
    """Each line gives its mount point (field 5) and the type after " - "."""
    info = mountinfo(tmp_path, [("/", "ext4"), ("/srv/share", "cifs")])
    assert mounts(info) == [Mount("/", "ext4"), Mount("/srv/share", "cifs")]


def test_optional_fields_do_not_shift_the_type(tmp_path: Path) -> None:
    """Lines with several or no optional fields still yield the right fstype."""
    path = tmp_path / "mountinfo"
    path.write_text(
        "36 35 98:0 /mnt1 /mnt/a rw,noatime master:1 shared:3 - ext3 /dev/root rw\n"
        "37 35 98:0 / /mnt/b rw - nfs4 server:/export rw,vers=4.2\n"
        "garbage line\n", encoding="utf-8")
    assert mounts(path) == [Mount("/mnt/a", "ext3"), Mount("/mnt/b", "nfs4")]


def test_octal_escapes_are_decoded(tmp_path: Path) -> None:
    """\\040 (space), \\011 (tab), \\012 (newline) and \\134 (backslash) are decoded."""
    info = mountinfo(tmp_path, [(r"/srv/my\040share", "cifs"), (r"/srv/tab\011x", "nfs"),
                                (r"/srv/nl\012x", "nfs"), (r"/srv/back\134slash", "nfs"),
                                (r"/srv/lit\134040", "nfs")])
    assert [m.point for m in mounts(info)] == [
        "/srv/my share", "/srv/tab\tx", "/srv/nl\nx", "/srv/back\\slash", "/srv/lit\\040"]


def test_mount_of_a_path_with_a_space(tmp_path: Path, root: Path) -> None:
    """A share mounted at a folder whose name has a space is found for paths below it."""
    share = root / "my share"
    (share / "scans").mkdir(parents=True)
    escaped = str(share).replace(" ", "\\040")
    info = mountinfo(tmp_path, [("/", "ext4"), (escaped, "cifs")])
    found = mount_of(share / "scans", info)
    assert found == Mount(str(share), "cifs")
    assert found.is_network


def test_longest_mount_point_wins(tmp_path: Path, root: Path) -> None:
    """For nested mounts, the deepest mount point holding the path is the one."""
    outer, inner = root / "share", root / "share" / "local"
    (inner / "x").mkdir(parents=True)
    info = mountinfo(tmp_path, [(str(inner), "ext4"), ("/", "ext4"), (str(outer), "cifs")])
    assert mount_of(inner / "x", info).fstype == "ext4"
    assert mount_of(inner, info).fstype == "ext4"
    assert mount_of(outer / "other", info).fstype == "cifs"
    assert mount_of(outer, info).fstype == "cifs"


def test_a_prefix_that_is_not_a_parent_does_not_match(tmp_path: Path, root: Path) -> None:
    """/srv/share does not hold /srv/shared: matching is by path component, not by text."""
    (root / "shared").mkdir()
    info = mountinfo(tmp_path, [("/", "ext4"), (str(root / "share"), "cifs")])
    assert mount_of(root / "shared", info).fstype == "ext4"


def test_a_later_mount_over_the_same_point_wins(tmp_path: Path, root: Path) -> None:
    """A mount stacked over another at the same point hides it."""
    info = mountinfo(tmp_path, [("/", "ext4"), (str(root), "ext4"), (str(root), "nfs4")])
    assert mount_of(root, info).fstype == "nfs4"


def test_missing_path_uses_its_nearest_mount(tmp_path: Path, root: Path) -> None:
    """A path that does not exist yet belongs to the mount of its ancestors."""
    info = mountinfo(tmp_path, [("/", "ext4"), (str(root), "nfs")])
    assert mount_of(root / "not" / "yet", info).fstype == "nfs"


def test_symlinks_are_resolved_first(tmp_path: Path, root: Path) -> None:
    """A symlink into a share is on the share."""
    share = root / "share"
    share.mkdir()
    (root / "link").symlink_to(share)
    info = mountinfo(tmp_path, [("/", "ext4"), (str(share), "cifs")])
    assert mount_of(root / "link", info).fstype == "cifs"


def test_no_matching_line_is_unknown(tmp_path: Path, root: Path) -> None:
    """With no line covering the path, the mount is "unknown": neither local nor network."""
    info = mountinfo(tmp_path, [("/nowhere", "ext4")])
    found = mount_of(root, info)
    assert found.fstype == "unknown"
    assert not found.is_local and not found.is_network


@pytest.mark.parametrize("fstype", ["cifs", "smb3", "nfs", "nfs4", "9p", "fuse", "fuse.sshfs",
                                    "fuse.rclone", "ceph", "glusterfs"])
def test_network_filesystems(fstype: str) -> None:
    """Shares and FUSE filesystems are network filesystems (polling, no SQLite)."""
    mount = Mount("/srv", fstype)
    assert mount.is_network
    assert not mount.is_local


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs", "zfs", "f2fs", "tmpfs", "overlay"])
def test_local_filesystems(fstype: str) -> None:
    """Kernel-local filesystems are local (events can be trusted)."""
    mount = Mount("/srv", fstype)
    assert mount.is_local
    assert not mount.is_network


@pytest.mark.parametrize("fstype", ["squashfs", "unknown", "proc", "fuseblk"])
def test_other_filesystems_are_neither(fstype: str) -> None:
    """Types on neither list are neither local nor network (auto mode polls them)."""
    mount = Mount("/srv", fstype)
    assert not mount.is_local
    assert not mount.is_network


def test_real_mountinfo_knows_the_root() -> None:
    """The real /proc/self/mountinfo has a line for "/"."""
    if not Path("/proc/self/mountinfo").exists():
        pytest.skip("no /proc/self/mountinfo")
    assert any(m.point == "/" for m in mounts())
