"""Which filesystem a path lives on, read from ``/proc/self/mountinfo``.

inotify sees only changes made through the local kernel, so on a share (cifs, nfs,
9p, fuse…) events never arrive for files other hosts write; and SQLite's WAL needs
shared memory that network filesystems do not provide. Both decisions start here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Filesystems where inotify sees every change: events are trustworthy.
LOCAL = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "tmpfs", "overlay", "ramfs",
    "jfs", "reiserfs", "bcachefs", "nilfs2", "vfat", "exfat", "hfsplus", "ntfs3",
})
# Filesystems shared over a network (or through a userspace daemon).
NETWORK = frozenset({
    "cifs", "smb3", "smbfs", "nfs", "nfs4", "9p", "fuse", "ceph", "glusterfs", "afs",
    "lustre", "gpfs", "davfs", "ncpfs", "virtiofs",
})
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of mountinfo that matters here."""

    point: str
    fstype: str

    @property
    def is_local(self) -> bool:
        return self.fstype in LOCAL

    @property
    def is_network(self) -> bool:
        return self.fstype in NETWORK or self.fstype.startswith("fuse.")


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def mounts(mountinfo: Path | None = None) -> list[Mount]:
    found = []
    text = (mountinfo or MOUNTINFO).read_text(encoding="utf-8", errors="surrogateescape")
    for line in text.splitlines():
        before, _, after = line.partition(" - ")
        fields = before.split()
        if len(fields) < 5 or not after:
            continue
        found.append(Mount(point=_unescape(fields[4]), fstype=after.split()[0]))
    return found


def mount_of(path: Path, mountinfo: Path | None = None) -> Mount:
    """The mount holding ``path`` (its nearest existing ancestor if it does not exist)."""
    target = Path(os.path.realpath(path))
    best = Mount(point="/", fstype="unknown")
    for mount in mounts(mountinfo):
        point = Path(mount.point)
        # Later lines win: a mount stacked over another shows up after it.
        if (target == point or point in target.parents) and len(point.parts) >= len(
            Path(best.point).parts
        ):
            best = mount
    return best
