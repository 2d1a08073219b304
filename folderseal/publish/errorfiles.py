"""Which file in an errors folder is the very one that failed there.

When a failure's original goes into the errors folder, the store records its place:
the ``path`` relative to the errors folder, its sha256, its device, inode, size and
mtime, and the id of the errors folder. That id is in ``.folderseal-errors`` at the
errors folder's root, written when the first failure goes there (as ``store-id``
marks a work folder).

A file is told by its content. Device numbers of NFS, CIFS and btrfs change at a
remount or a reboot, and some filesystems (CIFS with ``noserverino``, FUSE) have no
stable inode numbers at all, so the recorded (size, mtime) is only a hint that spares
reading the file (the device and inode numbers only tell a file changed in place from
another one put there):

* the file at the recorded path with the recorded size and mtime is the file (nothing
  read; new device or inode numbers are recorded);
* any other file there with the recorded sha256 is the same content: it is the file,
  and the hint is brought up to date;
* one with other content is the file changed in place (same device and inode) or
  another file put there; its size and mtime are recorded (``other``), so it is not
  read again while it stays as it is.

The daemon's reconcile reads at most :data:`READ_BUDGET_BYTES` a pass
(:class:`ReadBudget`); what is left waits for the next pass.

Whether a failure is *gone* is decided only in the errors folder it went to: one whose
marker names the id recorded with it. An empty mount point, a share not mounted, or an
``errors =`` pointed at another folder has no marker, or another one, so nothing
missing there proves anything gone. A folder that took over another's files says so
by a line with that folder's id in its marker (one id a line; the first is its own):
the operator adds it, or the daemon does when it finds one of that folder's failures
there by its content (a deleted marker is so made again). The marker is read without
following a link and only its first :data:`MARKER_MAX_BYTES`: the errors folder is
writable by the people who drop files, and a link to ``/dev/zero`` must not hang it.

An original that could not be moved into the errors folder stayed in the work folder;
its place records where (``kept``), and there the claim's own hint and sha256 tell it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from folderseal.core import files
from folderseal.core.model import FileRecord
from folderseal.core.safety import READ_FLAGS

ERROR_SUFFIX = ".error.json"
MARKER = ".folderseal-errors"
HINT = ("dev", "ino", "size", "mtime_ns")
SAME = ("size", "mtime_ns")  # equal: the file is taken for the failure's without reading it
MARKER_MAX_BYTES = 16 * 1024
READ_BUDGET_BYTES = 1 << 30  # read per reconcile pass, at most (at least one file)


@dataclass(frozen=True, slots=True)
class Found:
    """Where the original of a failure lies, or why it is not there."""

    path: Path | None
    problem: str = ""                 # what is wrong (when path is None)
    advice: str = ""                  # and what to do, to have it sealed
    gone: bool = False                # certainly not there any more
    sha256: str | None = None         # as found now (when it was read)
    hint: dict[str, Any] | None = None  # to record in its place (a newer hint, ``other``)
    by_content: bool = False          # read now, and its content is the failure's

    @property
    def why(self) -> str:
        return f"{self.problem}: {self.advice}"


def place_of(record: FileRecord) -> dict[str, Any] | None:
    """The place the failure recorded for its original in the errors folder."""
    return next((o for o in record.outputs if o.get("role") == "error"), None)


def record_file(errors: Path, place: dict[str, Any]) -> Path:
    """The failure's ``.error.json``: beside the place its original was meant to go."""
    path = errors / str(place["path"])
    return path.parent / (path.name + ERROR_SUFFIX)


class ReadBudget:
    """The bytes a reconcile pass may still read to tell files by content: a slow share
    with many failures is read a part a pass, never all at once. The first file of a
    pass is always read, however big."""

    def __init__(self, limit: int | None = None) -> None:
        self.left = READ_BUDGET_BYTES if limit is None else limit
        self.spent = 0

    def take(self, size: int) -> bool:
        if self.spent and size > self.left:
            return False
        self.left -= size
        self.spent += size
        return True


def folder_ids(errors: Path) -> list[str]:
    """The ids in the errors folder's marker (its own first); [] without a marker. An
    OSError means the folder cannot be looked at (or its marker is not a plain file)."""
    path = errors / MARKER
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise _not_plain(path) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _not_plain(path)
        data = b""
        while len(data) < MARKER_MAX_BYTES:
            chunk = os.read(fd, MARKER_MAX_BYTES - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    text = data.decode("ascii", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _not_plain(path: Path) -> OSError:
    return OSError(errno.EINVAL, f"{path.name} is not a plain file (a link or a pipe was put "
                   "in its place?): delete it; folderseal makes it again from the failures "
                   "it finds there", str(path))


def mark(errors: Path, mode: int) -> str:
    """The errors folder's own id, written into a new marker if it has none ("" if its
    marker holds none: then nothing recorded there is ever taken as gone)."""
    ids = folder_ids(errors)
    if not ids:
        with contextlib.suppress(FileExistsError):  # another process marked it meanwhile
            files.write_new(errors, MARKER, f"{uuid.uuid4().hex}\n".encode(), mode)
        ids = folder_ids(errors)
    return ids[0] if ids else ""


def adopt(errors: Path, folder_id: str, mode: int) -> None:
    """Add ``folder_id`` to the errors folder's marker (a new marker starts with it): a
    failure of that errors folder was found here by its content."""
    if folder_id in folder_ids(errors):
        return
    try:
        files.write_new(errors, MARKER, f"{folder_id}\n".encode(), mode)
        return
    except FileExistsError:
        pass
    fd = os.open(errors / MARKER, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
                 | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _not_plain(errors / MARKER)
        files.write_all(fd, f"{folder_id}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def identity(path: Path, hashed: bool = True) -> dict[str, Any]:
    """The hint (device, inode, size, mtime) of the file at ``path`` and, if asked and
    it is a regular file folderseal may read, its sha256 (else None); {} if no file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {}
    found: dict[str, Any] = {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
                             "mtime_ns": st.st_mtime_ns, "sha256": None}
    if hashed and stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(path, READ_FLAGS)
        except OSError:
            return found  # unreadable (perhaps why it failed): known by its hint only
        try:
            if (os.fstat(fd).st_dev, os.fstat(fd).st_ino) == (st.st_dev, st.st_ino):
                found["sha256"] = files.hash_fd(fd)[0]
        finally:
            os.close(fd)
    return found


def unseen(errors: Path, ids: list[str], what: str = "it",
           missing: list[str] | None = None) -> tuple[str, str]:
    """Why failures cannot be seen in ``errors`` (whose marker holds ``ids``), and what
    to do; ``what`` names them, ``missing`` the ids of the folders they went to."""
    marker = errors / MARKER
    which = f"it has no {MARKER} marker" if not ids else f"its {MARKER} does not name it"
    lines = f"cat OLD/{MARKER} >> {marker}" if not missing else \
        "; ".join(f"echo {i} >> {marker}" for i in missing[:3])
    return (f"{errors} is not the errors folder {what} went to ({which}: a share not "
            "mounted, or `errors =` changed?)",
            "mount that folder, or set errors back to it; if you moved its files here, add "
            f"the line of its marker to {marker} ({lines})")


def failures_unseen(errors: Path, went: list[str]) -> str:
    """Why failures that went to the errors folders whose ids are ``went`` cannot be seen
    in ``errors`` ("" if they all can). It reads the errors folder's marker: call it off
    the folder's intake thread (:mod:`folderseal.publish.probe`), or where a hung share
    may wait (``folderseal status`` without a daemon)."""
    if not went:
        return ""
    try:
        ids = folder_ids(errors)
    except OSError as exc:
        return (f"the errors folder {errors} cannot be read ({exc.strerror}), so its "
                f"{len(went)} failed file(s) cannot be seen: mount its share, or fix its "
                "permissions")
    elsewhere = sum(1 for i in went if i not in ids)
    if not elsewhere:
        return ""
    problem, advice = unseen(errors, ids, "they", sorted(set(went) - set(ids)))
    return f"{elsewhere} failed file(s) cannot be seen: {problem}: {advice}"


def find_original(errors: Path, record: FileRecord, hashed: bool = False,
                  ids: list[str] | None = None, budget: ReadBudget | None = None) -> Found:
    """The very file that failed, or why it is not there. ``hashed`` reads it (to move
    it, it must be the very content); else it is read only if its hint changed, and
    only while ``budget`` allows (else it is not looked at this time: no path, not gone).
    ``ids``: the errors folder's marker, if already read."""
    place = place_of(record)
    if place is None:
        return Found(None, "no place in the errors folder was recorded for it",
                     "find it there by its name and drop it into the inbox")
    kept = place.get("kept")
    path = Path(kept) if kept else errors / str(place["path"])
    try:
        if kept:  # in the work folder; sure while the folder it lay in is there
            sure = os.path.isdir(path.parent)
            hint, expected = {k: getattr(record, k) for k in HINT}, record.sha256
        else:
            ids = folder_ids(errors) if ids is None else ids
            sure = bool(place.get("folder_id")) and place.get("folder_id") in ids
            hint = {k: place.get(k) for k in HINT}
            expected = place.get("sha256") or record.sha256
        now = identity(path, hashed=False)
    except OSError as exc:
        return Found(None, f"{path.parent} cannot be read ({exc.strerror})",
                     "mount its share, or fix its permissions, then run this again")
    if not now:
        if kept:
            return Found(None, f"it stayed in the work folder at {path} (it could not be moved "
                               "to the errors folder) and is no longer there",
                         "if you have it, drop it into the inbox", gone=sure)
        if not sure and place.get("folder_id"):
            return Found(None, *unseen(errors, ids or [], missing=[str(place["folder_id"])]))
        return Found(None, f"it is gone from the errors folder ({path} was removed or moved "
                           "away by hand)", "to seal it, drop it into the inbox", gone=sure)
    if hint["ino"] is None and not expected:
        return Found(path)  # recorded before hints were kept: known by its name
    in_place = (now["dev"], now["ino"]) == (hint["dev"], hint["ino"])
    renumbered = None if kept or in_place else {"dev": now["dev"], "ino": now["ino"]}
    # Read before and not the failure's: not read again while its size and mtime stay.
    other = not kept and place.get("other") == [now["size"], now["mtime_ns"]]
    same = not other and all(now[k] == hint[k] for k in SAME)
    if same and not hashed:
        return Found(path, hint=renumbered)
    differs = other or (hint["size"] is not None and now["size"] != hint["size"])
    if differs:
        content = None
    elif budget is not None and not budget.take(now["size"]):
        return Found(None, f"{path} was not looked at yet", "wait for the next rescan")
    else:
        content = identity(path).get("sha256")
    if not differs and (content is None or expected is None):
        # Unreadable now, or its content was never known: its hint must do.
        if same or (in_place and expected is None):
            return Found(path, sha256=content, hint=renumbered)
        return Found(None, f"{path} cannot be read to tell whether it is the file that failed "
                           "there", "let folderseal's user read it, then run this again")
    if content is not None and content == expected:
        newer = None if kept or (same and in_place) else \
            {**{k: now[k] for k in HINT}, "other": None}
        return Found(path, sha256=content, hint=newer, by_content=True)
    memo = None if kept or differs else {"other": [now["size"], now["mtime_ns"]]}
    if in_place:
        return Found(None, f"{path} was changed since it failed",
                     "retry puts back only the file that failed; to seal the changed one, "
                     f"move it into the inbox and delete {path.name}{ERROR_SUFFIX}", hint=memo)
    return Found(None, f"the file now at {path} is not the one that failed there (another "
                       "failure of the same name took the name, or the file was replaced)",
                 "drop the file you want sealed into the inbox", gone=sure, hint=memo)
