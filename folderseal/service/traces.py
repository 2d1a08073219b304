"""What a daemon that stopped left in a folder's outbox and errors folders, as
``folderseal recover`` reads it: the records naming each delivered or failed file, the
outputs placed before their sidecar was, and temp files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from folderseal.core import files
from folderseal.core.config import FolderConfig
from folderseal.publish.folders import split


def sweep_temp_files(cfg: FolderConfig) -> int:
    """Remove the temp files a crash left in the outbox and errors folders (no daemon
    runs, so none is being written); how many."""
    count = 0
    for root in (cfg.outbox, cfg.errors):
        if root.is_dir():
            for path in root.rglob(f"{files.TEMP_PREFIX}*"):
                path.unlink(missing_ok=True)
                count += 1
    return count


def records(root: Path | None, suffix: str) -> dict[tuple[str, str], str]:
    """(batch id, input sha256) → source, from every sidecar or error record below root."""
    found: dict[tuple[str, str], str] = {}
    if root is None or not root.is_dir():
        return found
    for path in root.rglob(f"*{suffix}"):
        try:
            data = json.loads(path.read_bytes())
            found[(data["batch"]["id"], data["input"]["sha256"])] = data["source"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def safe_source(source: object) -> str:
    """A source path from a record, if it stays inside its folder ("" if not)."""
    if not isinstance(source, str) or not source or source.startswith("/") or \
            ".." in source.split("/"):
        return ""
    return source


def unnamed_outputs(outbox: Path, source: str, sha256: str, size: int,
                    suffixes: list[str]) -> list[Path]:
    """The outputs in ``outbox`` of the file ``source`` (``sha256``, ``size``) that no
    sidecar names: under its name or a numbered one (as the sink chose), a signed PDF
    that begins with the original's bytes, or a copy of the original with its detached
    signature (``suffixes``) beside it."""
    head, name = split(source)
    folder = outbox / head
    for n in range(files.MAX_NUMBERED):
        primary = folder / files.numbered(name, n)
        if not os.path.lexists(primary):
            return []  # the sink takes the first free number: none further
        if os.path.lexists(f"{primary}.json") or not primary.is_file() or \
                primary.is_symlink():
            continue
        fd = os.open(primary, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            whole, prefix, found = files.hash_with_prefix(fd, size)
        finally:
            os.close(fd)
        if whole == sha256:
            return [primary, *(p for s in suffixes
                               if (p := Path(f"{primary}{s}")).is_file())]
        if found > size and prefix == sha256:
            return [primary]
    return []
