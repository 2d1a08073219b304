"""What every emulator writes down: its log lines and its journal.

The log is one JSON line per event on stderr (or a stream a test chooses). The journal
is a JSON-lines file in the emulator's data folder, each line fsynced before the
request that caused it is answered: the evidence a test reads to prove that the client
had each document processed exactly once, even when the answer was lost.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = ["Journal", "log_event", "log_to"]

_LOG_LOCK = threading.Lock()
_log_stream: TextIO | None = None  # None: stderr


def log_to(stream: TextIO | None) -> None:
    """Send the emulators' log lines to ``stream`` (None: stderr), e.g. a test's file."""
    global _log_stream
    with _LOG_LOCK:
        _log_stream = stream


def log_event(event: str, **fields: object) -> None:
    """One JSON line on stderr. Callers never pass the API key or request bodies."""
    line = json.dumps({"event": event, **fields}, default=str)
    with _LOG_LOCK:  # one write per line, so lines from request threads never interleave
        stream = _log_stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()


class Journal:
    """A JSON-lines file: one object per line, appended and fsynced under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        """Append one line and make it durable before returning."""
        # ensure_ascii: names may hold control characters; keep one line per entry.
        line = json.dumps(entry, ensure_ascii=True, default=str)
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())

    def entries(self) -> Iterator[dict[str, Any]]:
        """The entries so far, in order; a torn last line (after a crash) is skipped."""
        try:
            with self.path.open(encoding="utf-8") as lines:
                for line in lines:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(entry, dict):
                        yield entry
        except FileNotFoundError:
            return
