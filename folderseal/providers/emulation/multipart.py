"""Reading a ``multipart/form-data`` body part by part, in pieces.

Files of 1 GiB arrive this way, so no part is ever held whole: ``next_part`` reads a
part's headers, ``read`` hands out its content in pieces until the boundary, holding
back only as many bytes as the boundary is long (it may straddle two reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value

from folderseal.providers.emulation.body import Body

__all__ = ["BadMultipart", "Multipart", "Part"]

CHUNK = 1024 * 1024
MAX_HEADERS = 16 * 1024  # one part's headers, at most


class BadMultipart(ValueError):
    """The body is not the multipart form its Content-Type announces."""


@dataclass(frozen=True, slots=True)
class Part:
    """One part's headers: its form field name and, for a file, its file name."""

    name: str | None
    filename: str | None
    content_type: str | None


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; BadMultipart otherwise."""
    parsed = HeaderParser().parsestr(f"Content-Type: {content_type or ''}\r\n\r\n")
    if parsed.get_content_type() != "multipart/form-data":
        raise BadMultipart(
            f"the body is {content_type or 'not typed'}; send multipart/form-data"
        )
    boundary = parsed.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 200:
        raise BadMultipart("the multipart Content-Type has no usable boundary")
    return boundary.encode("latin-1", errors="replace")


class Multipart:
    """The parts of one request body, in order."""

    def __init__(self, body: Body, content_type: str | None) -> None:
        self._body = body
        self._delimiter = b"\r\n--" + boundary_of(content_type)
        # A leading CRLF lets the first boundary (which has none) match like the others.
        self._buffer = bytearray(b"\r\n")
        self._eof = False
        self._in_part = False
        self._done = False

    def next_part(self) -> Part | None:
        """The next part's headers (the rest of the current part is skipped); None at
        the end of the form."""
        if self._done:
            return None
        while self._in_part and self.read(CHUNK):
            pass
        self._skip_to_delimiter()
        del self._buffer[: len(self._delimiter)]
        self._fill(2)
        if self._buffer.startswith(b"--"):
            self._done = True  # the closing boundary; the epilogue is drained by the server
            return None
        while bytes(self._buffer[:1]) in (b" ", b"\t"):  # transport padding after the boundary
            del self._buffer[:1]
            self._fill(2)
        end = self._find(b"\r\n\r\n", MAX_HEADERS)
        if not self._buffer.startswith(b"\r\n"):
            raise BadMultipart("a multipart boundary is not followed by a line break")
        text = bytes(self._buffer[2:end]).decode("utf-8", errors="replace")
        del self._buffer[: end + 4]
        headers = HeaderParser().parsestr(text + "\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        self._in_part = True
        return Part(
            name=collapse_rfc2231_value(name) if name is not None else None,
            filename=headers.get_filename(),
            content_type=headers.get("Content-Type"),
        )

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the current part; b"" at its end."""
        if not self._in_part:
            return b""
        self._fill(size + len(self._delimiter))
        at = self._buffer.find(self._delimiter)
        if at == -1:
            if self._eof:
                raise BadMultipart("the body ends inside a part, before its boundary")
            # Hold back what could be the start of a boundary cut by the read.
            count = min(size, len(self._buffer) - len(self._delimiter) + 1)
        else:
            count = min(size, at)
        if count == 0:
            self._in_part = False
            return b""
        piece = bytes(self._buffer[:count])
        del self._buffer[:count]
        return piece

    def _fill(self, wanted: int) -> None:
        while len(self._buffer) < wanted and not self._eof:
            chunk = self._body.read(CHUNK)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True

    def _find(self, needle: bytes, limit: int) -> int:
        while (at := self._buffer.find(needle)) == -1:
            if len(self._buffer) > limit or self._eof:
                raise BadMultipart("a part's headers are cut or longer than 16 KiB")
            self._fill(len(self._buffer) + CHUNK)
        return at

    def _skip_to_delimiter(self) -> None:
        # Before the first part: the preamble, thrown away without holding it.
        while (at := self._buffer.find(self._delimiter)) == -1:
            if self._eof:
                raise BadMultipart("the body holds no multipart boundary")
            keep = len(self._delimiter) - 1
            if len(self._buffer) > keep:
                del self._buffer[: len(self._buffer) - keep]
            self._fill(len(self._buffer) + CHUNK)
        del self._buffer[:at]
