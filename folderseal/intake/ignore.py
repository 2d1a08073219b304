"""Which names in an inbox are documents, and which are someone's temp files.

The built-in list covers what scanners, sync tools, browsers and operating systems
leave behind while they work (rsync ``.name.XXXXXX``, Syncthing ``~syncthing~…``,
``*.part``, Office ``~$name``, ``Thumbs.db``). User patterns add to it and never
replace it. Matching ignores case: scanners write ``.PDF`` as often as ``.pdf``.
A pattern without ``/`` matches the file name; with ``/`` it matches the path
relative to the inbox.

Ignored files sit in the inbox for ever, so a scan counts them as it lists the inbox
(:class:`IgnoredTally`) and ``status`` shows how many there are and the oldest: a
half-copied ``x.part`` is minutes old, a forgotten one days. What operating systems
leave in every folder they show (``Thumbs.db``, ``.DS_Store``…) is not counted: nobody
renames those to have them sealed, and they would be a warning for ever.
"""

from __future__ import annotations

import math
import os
from fnmatch import fnmatchcase
from typing import Any

BUILTIN_FILE_PATTERNS = ("*.tmp", "*.temp", "*.part", "*.partial", "*.crdownload",
                         "*.download", "*.swp", "thumbs.db", "desktop.ini")
BUILTIN_DIR_NAMES = frozenset({"@eadir", "__macosx"})
# Thumbnail caches, folder settings and macOS's resource forks: ignored (by the list
# above or as hidden names), and left out of the tally.
OS_METADATA = ("thumbs.db", "desktop.ini", ".ds_store", "._*", ".localized", ".directory",
               ".apdisk", ".volumeicon.icns")


class NameFilter:
    """Decides which files and folders of an inbox are looked at."""

    def __init__(self, include: list[str] | None = None, exclude: list[str] | None = None):
        self.include = tuple(p.lower() for p in (include or ["*"]))
        self.exclude = tuple(p.lower() for p in (exclude or [])) + BUILTIN_FILE_PATTERNS

    def wants_dir(self, name: str) -> bool:
        """False for folders never descended into (``.folderseal``, ``@eaDir``, …)."""
        return not name.startswith(".") and name.lower() not in BUILTIN_DIR_NAMES

    def wants_file(self, relative: str) -> bool:
        """True if the file at ``relative`` (inside the inbox) is a document to seal."""
        parts = relative.split("/")
        if not all(self.wants_dir(part) for part in parts[:-1]):
            return False
        name = parts[-1]
        if name.startswith((".", "~")):
            return False
        lowered, name_lowered = relative.lower(), name.lower()

        def matches(pattern: str) -> bool:
            return fnmatchcase(lowered if "/" in pattern else name_lowered, pattern)

        return any(map(matches, self.include)) and not any(map(matches, self.exclude))


class IgnoredTally:
    """The files one scan passed over by name, operating-system files aside: how many,
    and the oldest by mtime (only these are stat'ed, so a scan of a folder of documents
    costs no more)."""

    def __init__(self) -> None:
        self.count = 0
        self.oldest = ""
        self.oldest_mtime = math.inf

    def add(self, source: str, entry: os.DirEntry[str]) -> None:
        name = entry.name.lower()
        if any(fnmatchcase(name, pattern) for pattern in OS_METADATA):
            return
        self.count += 1
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:  # gone since the listing
            return
        if mtime < self.oldest_mtime:
            self.oldest, self.oldest_mtime = source, mtime

    def report(self) -> dict[str, Any]:
        return {"count": self.count, "oldest": self.oldest,
                "oldest_mtime": self.oldest_mtime if self.oldest else None}
