"""Path safety: what folderseal refuses, and how it opens files it did not write.

Threat model. The inbox is writable by people and programs folderseal does not
control, and on a share by other hosts. Anything there may be a symlink, a FIFO, a
file still being written, or something swapped in after it was checked. folderseal
therefore

* refuses a layout that would loop or lose files: an outbox, errors, archive or
  state folder inside an inbox; an inbox inside another; a work folder on another
  filesystem than its inbox (the claim must be one atomic rename) or inside the
  inbox where the scan would see it; the state folder on a network filesystem;
* claims by renaming, which moves a symlink itself and never what it points to;
* opens every file it reads later through a directory descriptor with
  ``O_NOFOLLOW`` and compares (device, inode) — or, when those changed because a
  share was mounted again, the content hash — with the claim record, so a file
  planted in the work folder (a symlink to ``/etc/shadow``, a different file under
  a claimed name) is never sealed or published.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import unicodedata
from pathlib import Path

from folderseal.core import files, mounts
from folderseal.core.config import FolderConfig, Settings
from folderseal.core.errors import ConfigError, PlantedFile

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _device(path: Path) -> int | None:
    """Device of ``path``, or of its nearest existing ancestor; None if nothing exists."""
    for candidate in (path, *path.parents):
        try:
            return candidate.stat().st_dev
        except FileNotFoundError:
            continue
        except OSError:
            return None
    return None


def layout_problems(settings: Settings) -> list[str]:
    """Every reason the configured folders cannot be used as laid out."""
    problems: list[str] = []
    inboxes = {name: _real(folder.inbox) for name, folder in settings.folders.items()}
    state = _real(settings.state_dir)
    for name, inbox in inboxes.items():
        if _inside(state, inbox):
            problems.append(f"state_dir {state} lies inside folders.{name}.inbox {inbox}")
        for other, other_inbox in inboxes.items():
            if other != name and _inside(inbox, other_inbox):
                problems.append(
                    f"folders.{name}.inbox {inbox} lies inside folders.{other}.inbox "
                    f"{other_inbox}: a file there would belong to both"
                )
    for name, folder in settings.folders.items():
        problems.extend(_folder_problems(name, folder, inboxes))
    mount = mounts.mount_of(state)
    if mount.is_network:
        problems.append(
            f"state_dir {state} is on a network filesystem ({mount.fstype}); SQLite's "
            "write-ahead log needs a local filesystem: choose a local folder"
        )
    return problems


def _folder_problems(name: str, folder: FolderConfig, inboxes: dict[str, Path]) -> list[str]:
    problems = []
    outputs = {"outbox": folder.outbox, "errors": folder.errors, "archive": folder.archive}
    for key, path in outputs.items():
        if path is None:
            continue
        real = _real(path)
        for other, inbox in inboxes.items():
            if _inside(real, inbox):
                problems.append(
                    f"folders.{name}.{key} {real} lies inside folders.{other}.inbox {inbox}: "
                    "its files would be taken again; move it out of the inbox"
                )
    inbox = inboxes[name]
    work = _real(folder.work_folder)
    for other, other_inbox in inboxes.items():
        if _inside(work, other_inbox) and not any(
                part.startswith(".") for part in work.relative_to(other_inbox).parts):
            problems.append(
                f"folders.{name}.work_dir {work} lies inside folders.{other}.inbox where it "
                "would be scanned; leave work_dir empty or put it in a folder whose name "
                "starts with '.'"
            )
    inbox_dev, work_dev = _device(inbox), _device(work)
    if inbox.exists() and inbox_dev is not None and work_dev is not None and inbox_dev != work_dev:
        problems.append(
            f"folders.{name}.work_dir {work} is on another filesystem than the inbox {inbox}; "
            "claiming is a rename and must stay on one filesystem: leave work_dir empty or "
            "pick a folder on the inbox's filesystem"
        )
    return problems


def check_layout(settings: Settings) -> None:
    problems = layout_problems(settings)
    if problems:
        raise ConfigError("the folders cannot be used as configured:\n  " + "\n  ".join(problems))


def open_dir(path: Path | str, *, dir_fd: int | None = None) -> int:
    """Open a folder without following a symlink in its last component."""
    return os.open(path, DIR_FLAGS, dir_fd=dir_fd)


def open_relative_dir(root_fd: int, parts: tuple[str, ...]) -> int:
    """Open ``root/parts…`` one component at a time, never following a symlink."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise PlantedFile(f"unsafe path component {part!r} in the work folder")
            try:
                next_fd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                raise PlantedFile(f"{part!r} in the work folder is not a plain folder (a "
                                  "symbolic link?); nothing below it was sealed") from None
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_claimed(dir_fd: int, name: str, dev: int, ino: int, sha256: str | None = None) -> int:
    """Open a claimed file for reading, refusing anything but the claimed regular file.

    The claimed file is the regular file with the claim's (device, inode). A share
    mounted again after an outage gives its files a new device number (FUSE, NFS and
    SMB mounts all do; SMB without ``serverino`` even new inode numbers), so when the
    claim's content hash is known a regular file whose identity differs but whose
    bytes hash to it is the claimed file too: what is sealed is what was claimed.
    """
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink was put where the claimed file was
            raise PlantedFile(f"{name!r} in the work folder was replaced by a symbolic link; "
                              "it was not sealed") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PlantedFile(f"{name!r} in the work folder is not a regular file; it was "
                              "not sealed. Something else writes into the work folder")
        os.set_blocking(fd, True)
        if (st.st_dev, st.st_ino) != (dev, ino) and (
                sha256 is None or files.hash_fd(fd)[0] != sha256):
            raise PlantedFile(
                f"{name!r} in the work folder is not the file that was claimed (device/inode "
                "and content changed); it was not sealed. Something else writes into the "
                "work folder")
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- names ----------------------------------------------------------------------------

MAX_ENTRY_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, limit: int = MAX_ENTRY_NAME) -> str:
    """An ASCII name close to ``name``: ``Rechnung für März.pdf`` → ``Rechnung_fur_Marz.pdf``."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    stem, dot, ext = text.rpartition(".")
    if not dot or not stem.strip(".") or len(ext) > 10:
        stem, ext = text, ""
    stem, ext = _ascii(stem), _ascii(ext).strip("._-")
    if not stem.strip("_"):
        stem = "file"
    ext = f".{ext}" if ext else ""
    return stem[: max(1, limit - len(ext))] + ext


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _UNSAFE.sub("_", text).lstrip("._-")
