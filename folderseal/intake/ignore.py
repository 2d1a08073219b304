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

import fnmatch
import math
import os
import re
from collections.abc import Iterable
from typing import Any

BUILTIN_FILE_PATTERNS = ("*.tmp", "*.temp", "*.part", "*.partial", "*.crdownload",
                         "*.download", "*.swp", "thumbs.db", "desktop.ini")
BUILTIN_DIR_NAMES = frozenset({"@eadir", "__macosx"})
# Thumbnail caches, folder settings and macOS's resource forks: ignored (by the list
# above or as hidden names), and left out of the tally.
OS_METADATA = ("thumbs.db", "desktop.ini", ".ds_store", "._*", ".localized", ".directory",
               ".apdisk", ".volumeicon.icns")


class Patterns:
    """Shell patterns (lower case) compiled into one regular expression for names and one
    for paths: a share polled every second may hold tens of thousands of other files,
    and each is matched at every scan."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.everything = "*" in patterns  # matches any name: nothing to match
        names, paths = [p for p in patterns if "/" not in p], [p for p in patterns if "/" in p]
        self._name = _one_expression(names) if names else None
        self._path = _one_expression(paths) if paths else None

    def match(self, name: str, path: str) -> bool:
        """Whether a pattern without ``/`` matches ``name``, or one with ``/`` ``path``
        (both lower case)."""
        return self.everything or bool(
            self._name is not None and self._name.match(name) or
            self._path is not None and self._path.match(path))


def _one_expression(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regular expression matching what any of the shell ``patterns`` matches."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


_OS_METADATA = _one_expression(OS_METADATA)


class NameFilter:
    """Decides which files and folders of an inbox are looked at."""

    def __init__(self, include: list[str] | None = None, exclude: list[str] | None = None):
        self.include = Patterns(tuple(p.lower() for p in (include or ["*"])))
        self.exclude = Patterns(tuple(p.lower() for p in (exclude or [])) +
                                BUILTIN_FILE_PATTERNS)

    def wants_dir(self, name: str) -> bool:
        """False for folders never descended into (``.folderseal``, ``@eaDir``, …)."""
        return not name.startswith(".") and name.lower() not in BUILTIN_DIR_NAMES

    def wants_file(self, relative: str) -> bool:
        """True if the file at ``relative`` (inside the inbox) is a document to seal."""
        folder, _, name = relative.rpartition("/")
        if folder and not all(self.wants_dir(part) for part in folder.split("/")):
            return False
        if name.startswith((".", "~")):
            return False
        name_lowered = name.lower()
        lowered = relative.lower() if folder else name_lowered
        return self.include.match(name_lowered, lowered) and \
            not self.exclude.match(name_lowered, lowered)


class IgnoredTally:
    """The files one scan passed over by name, operating-system files aside: how many,
    and the oldest by mtime.

    Only ignored files are stat'ed, so a scan of a folder of documents costs no more;
    and only at a scan that ``refresh``es the oldest (the scanner's choice: a share
    polled every second may hold tens of thousands of other programs' files). A scan
    that does not carries the ``previous`` tally's oldest on while that file is still
    there."""

    def __init__(self, refresh: bool = True, previous: IgnoredTally | None = None) -> None:
        self.count = 0
        self.refresh = refresh
        carried = previous if previous is not None and not refresh else None
        self.oldest: str = carried.oldest if carried else ""
        self.oldest_mtime: float = carried.oldest_mtime if carried else math.inf
        self._oldest_seen = False

    def add(self, source: str, entry: os.DirEntry[str]) -> None:
        if _OS_METADATA.match(entry.name.lower()):
            return
        self.count += 1
        if not self.refresh:
            self._oldest_seen = self._oldest_seen or source == self.oldest
            return
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:  # gone since the listing
            return
        if mtime < self.oldest_mtime:
            self.oldest, self.oldest_mtime = source, mtime

    def done(self) -> None:
        """After the scan: an oldest carried on but no longer there is forgotten (the next
        refresh finds the oldest of those left)."""
        if not self.refresh and not self._oldest_seen:
            self.oldest, self.oldest_mtime = "", math.inf

    def report(self) -> dict[str, Any]:
        return {"count": self.count, "oldest": self.oldest,
                "oldest_mtime": self.oldest_mtime if self.oldest else None}
