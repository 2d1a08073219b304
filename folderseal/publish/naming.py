"""Giving an output its name in the outbox or errors, never replacing one, and telling
what is already at a name: nothing, this very output (a run before a crash published
it), or something else, which is :class:`NameTaken` (the group moves to another name).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from folderseal.core import files
from folderseal.core.errors import FileRejected
from folderseal.core.model import FileRecord


class NameTaken(Exception):
    """A name of the output group turned out to be taken: move the group on."""


def publish(give_name: Callable[[], object], dest: Path) -> None:
    """Give a file its final name ``dest``, never replacing one."""
    try:
        give_name()
    except FileExistsError:
        raise NameTaken() from None
    except OSError as exc:
        if exc.errno in files.NAME_ERRNOS:
            raise FileRejected(
                "name_refused",
                f"the outbox's filesystem refused the name {dest.name!r} "
                f"({exc.strerror}); rename the file and drop it again") from None
        raise


def is_ours(dest: Path, sha256: str) -> bool:
    """True if ``dest`` holds exactly this output; NameTaken if something else."""
    if not os.path.lexists(dest):
        return False
    try:
        digest, _ = files.hash_path(dest)
    except OSError:
        raise NameTaken() from None
    if digest != sha256:
        raise NameTaken()
    return True


def free_or_same(dest: Path, sha256: str, size: int) -> bool:
    """True if nothing is at ``dest``, or a regular file with exactly these bytes."""
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in files.NAME_ERRNOS:
            return True  # a name nothing can hold: publishing it says so clearly
        raise
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        return False
    try:
        return files.hash_path(dest)[0] == sha256
    except OSError:
        return False


def sidecar_free_or_ours(dest: Path, record: FileRecord) -> bool:
    """True if no sidecar is at ``dest``, or this file's own from this batch (a run
    whose record of the names was lost wrote it): the group is not published again."""
    try:
        return not os.path.lexists(dest) or is_our_sidecar(dest, record)
    except NameTaken:
        return False


def is_our_sidecar(dest: Path, record: FileRecord) -> bool:
    if not os.path.lexists(dest):
        return False
    try:
        data = json.loads(dest.read_bytes())
        ours = (data["input"]["sha256"] == record.sha256
                and data["batch"]["id"] == record.batch_id)
    except (OSError, ValueError, KeyError, TypeError):
        ours = False
    if not ours:
        raise NameTaken()
    return True
