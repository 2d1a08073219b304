"""Reading an inbox: listing its files, and looking at one of them.

Both touch the inbox's share from the intake's thread. An error that means the share is
out of reach (:data:`folderseal.intake.claim.OUTAGE`) raises
:class:`folderseal.intake.claim.Outage`:
the folder detaches and backs off. A subfolder removed while it is listed is no outage.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from folderseal.intake.claim import OUTAGE, Outage
from folderseal.intake.ignore import IgnoredTally, NameFilter
from folderseal.intake.settle import Look

# Refused by the open() that refreshes attributes, yet a file to stat: a symbolic link,
# a file folderseal may not read, a FIFO or socket, a file a Windows program holds open
# (CIFS reports that sharing violation as EBUSY: "still in use", not an outage).
STAT_INSTEAD = frozenset({errno.ELOOP, errno.EACCES, errno.ENXIO, errno.EBUSY})
MAX_DEPTH = 64  # folder levels below the inbox that are listed; deeper ones are skipped


def list_files(inbox: Path, names: NameFilter, recursive: bool, ignored: IgnoredTally,
               too_deep: list[str]) -> list[str]:
    """The files of ``inbox`` to look at, relative to it; those whose names are ignored
    are counted in ``ignored``, and folders past MAX_DEPTH levels, which are not listed,
    are added to ``too_deep``."""
    found: list[str] = []
    pending = [""]  # folders to list, relative to the inbox ("" is the inbox)
    while pending:
        relative = pending.pop()
        folder = inbox / relative if relative else inbox
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    source = f"{relative}/{entry.name}" if relative else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        if not (recursive and names.wants_dir(entry.name)):
                            continue
                        if source.count("/") < MAX_DEPTH:
                            pending.append(source)
                        else:
                            too_deep.append(source)
                    elif names.wants_file(source):
                        found.append(source)
                    else:
                        ignored.add(source, entry)
        except OSError as exc:
            if not relative or exc.errno in OUTAGE - {errno.ENOENT}:
                raise Outage(f"cannot list {folder}: {exc.strerror}") from None
    return found


def look_at(path: Path, network: bool) -> Look | None:
    """What a stat of ``path`` shows (None: nothing there). On a network filesystem the
    file is opened first: that refreshes the client's attribute cache (NFS, SMB)."""
    try:
        if network:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                if exc.errno not in STAT_INSTEAD:
                    raise
                st = os.lstat(path)
        else:
            st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in OUTAGE:
            raise Outage(f"cannot look at {path}: {exc.strerror}") from None
        raise
    return Look(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, stat.S_ISREG(st.st_mode))
