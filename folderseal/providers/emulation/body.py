"""Reading an HTTP request body in pieces: ``Content-Length`` or chunked.

``http.server`` leaves the body to the handler. Uploads can be 1 GiB, so the body is
never read whole: callers pull chunks and write them to disk. Chunked transfer
encoding is supported because HTTP clients use it for streamed bodies of unknown
length, and a real server accepts it.
"""

from __future__ import annotations

from email.message import Message
from typing import Protocol

__all__ = ["BadFraming", "Body", "ClientGone"]

MAX_LINE = 64 * 1024


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...
    def readline(self, size: int = ..., /) -> bytes: ...


class BadFraming(ValueError):
    """The request's body framing is unusable (bad Content-Length or chunk header)."""


class ClientGone(ConnectionError):
    """The client closed the connection before sending the whole body."""


class Body:
    """The body of one request, read at most ``size`` bytes at a time."""

    def __init__(self, rfile: _Readable, headers: Message) -> None:
        self._rfile = rfile
        encoding = (headers.get("Transfer-Encoding") or "").lower()
        self._chunked = "chunked" in encoding
        self._done = False
        self._left = 0  # bytes left in the body (plain) or in the current chunk (chunked)
        if not self._chunked:
            raw = headers.get("Content-Length")
            if raw is None:
                self._done = True  # HTTP/1.1: no length and not chunked = no body
                return
            if not raw.strip().isdigit():
                raise BadFraming(f"Content-Length {raw!r} is not a number")
            self._left = int(raw)
            self._done = self._left == 0

    @property
    def finished(self) -> bool:
        """True once the whole body has been read."""
        return self._done

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body; b"" at its end. Raises ClientGone, BadFraming."""
        if self._done:
            return b""
        if self._chunked and self._left == 0:
            self._left = self._chunk_header()
            if self._left == 0:
                self._read_trailer()
                self._done = True
                return b""
        data = self._rfile.read(min(size, self._left))
        if not data:
            raise ClientGone("the client closed the connection in the middle of the body")
        self._left -= len(data)
        if self._left == 0:
            if self._chunked:
                if self._rfile.readline(MAX_LINE).strip():
                    raise BadFraming("a chunk is not followed by CRLF")
            else:
                self._done = True
        return data

    def read_all(self, limit: int) -> bytes:
        """The whole (small) body; BadFraming if it is longer than ``limit``."""
        parts: list[bytes] = []
        total = 0
        while chunk := self.read(64 * 1024):
            total += len(chunk)
            if total > limit:
                raise BadFraming(f"the body is longer than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def drain(self) -> None:
        """Read and discard the rest, so the connection can carry the next request."""
        while self.read(1024 * 1024):
            pass

    def _chunk_header(self) -> int:
        line = self._rfile.readline(MAX_LINE)
        if not line:
            raise ClientGone("the client closed the connection before the next chunk")
        size = line.split(b";", 1)[0].strip()
        if not size or size.strip(b"0123456789abcdefABCDEF"):
            raise BadFraming(f"chunk size {size[:20]!r} is not hexadecimal")
        return int(size, 16)

    def _read_trailer(self) -> None:
        while True:
            line = self._rfile.readline(MAX_LINE)
            if not line:
                raise ClientGone("the client closed the connection in the chunked trailer")
            if not line.strip():
                return
