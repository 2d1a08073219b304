"""The lines of a batch file read in chunks, as both the local check
(:mod:`.validate`) and the emulator's report read them: split at ``\\n`` (a ``\\n``
byte is never part of a UTF-8 sequence, so bytes are split before they are decoded),
and a line longer than ``MAX_LINE`` dropped as it is read, never held whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

MAX_LINE = 1 << 20          # a longer line is no record: refused, never read into memory
BOM = b"\xef\xbb\xbf"       # a byte order mark at the file's start is no part of line 0


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes | None]:
    """Each line's bytes without its ``\\n`` (a ``\\r`` before it kept; the file's BOM
    kept too, for the reader to drop), or None for a line longer than MAX_LINE. A last
    line without ``\\n`` counts; nothing follows a file's final ``\\n``. Never holds more
    than a chunk and MAX_LINE bytes."""
    pending = b""
    skipping = False      # inside a line longer than MAX_LINE: dropped as it is read
    for chunk in chunks:
        if skipping:
            end = chunk.find(b"\n")
            if end < 0:
                continue
            yield None
            skipping = False
            chunk = chunk[end + 1:]
        parts = (pending + chunk if pending else chunk).split(b"\n")
        pending = parts.pop()
        for part in parts:
            yield None if len(part) > MAX_LINE else part
        if len(pending) > MAX_LINE:
            pending, skipping = b"", True
    if skipping:
        yield None
    elif pending:
        yield pending
