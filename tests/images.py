"""Test images and office files made on the spot, by hand: TIFF, JPEG, PNG and DOCX.

Small, laid out as their writers lay them out (a TIFF's directory before or after its
strips, a JPEG with an EXIF thumbnail that has an end marker of its own), and each
ending with its last needed byte, so that any shorter prefix is a cut-short file.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

__all__ = ["make_docx", "make_jpeg", "make_png", "make_tiff", "tiff_directory"]

# -- TIFF -----------------------------------------------------------------------------

_TYPES = {3: ("H", 2), 4: ("I", 4), 5: ("II", 8), 16: ("Q", 8)}
Entry = tuple[int, int, list[int | tuple[int, int]]]


def _layout(big: bool) -> tuple[str, str, int, int]:
    """(count format, pointer format, entry size, pointer size)"""
    return ("Q", "Q", 20, 8) if big else ("H", "I", 12, 4)


def _ifd_size(big: bool, entries: list[Entry]) -> int:
    count_fmt, _, entry_size, ptr = _layout(big)
    extra = sum(len(v) * _TYPES[k][1] + len(v) * _TYPES[k][1] % 2
                for _, k, v in entries if len(v) * _TYPES[k][1] > ptr)
    return struct.calcsize(count_fmt) + len(entries) * entry_size + ptr + extra


def tiff_directory(order: str, big: bool, entries: list[Entry], at: int,
                   next_at: int) -> bytes:
    """One TIFF directory (IFD) placed at ``at``, its out-of-line values right after it."""
    count_fmt, ptr_fmt, entry_size, ptr = _layout(big)
    table = bytearray(struct.pack(order + count_fmt, len(entries)))
    extra = bytearray()
    extra_at = at + len(table) + len(entries) * entry_size + ptr
    for tag, kind, values in entries:
        code = _TYPES[kind][0]
        raw = b"".join(struct.pack(order + code, *(v if isinstance(v, tuple) else (v,)))
                       for v in values)
        if len(raw) <= ptr:
            field = raw.ljust(ptr, b"\0")
        else:
            field = struct.pack(order + ptr_fmt, extra_at + len(extra))
            extra += raw + b"\0" * (len(raw) % 2)
        table += struct.pack(order + "HH" + ptr_fmt, tag, kind, len(values)) + field
    table += struct.pack(order + ptr_fmt, next_at)
    return bytes(table + extra)


def _page_entries(big: bool, tiles: bool, data_at: int) -> tuple[list[Entry], int]:
    """The fields of one 8-bit grey page and the size of its image data."""
    offset_kind = 16 if big else 4
    if tiles:  # 32 x 32 in four 16 x 16 tiles
        side, chunk, layout = 32, 256, [(322, 3, [16]), (323, 3, [16])]
        data_tags = (324, 325)
    else:  # 16 x 16 in four strips of 4 rows
        side, chunk, layout = 16, 64, [(278, 3, [4])]
        data_tags = (273, 279)
    offsets: list[int | tuple[int, int]] = [data_at + i * chunk for i in range(4)]
    counts: list[int | tuple[int, int]] = [chunk] * 4
    entries: list[Entry] = [
        (256, 3, [side]), (257, 3, [side]), (258, 3, [8]), (259, 3, [1]), (262, 3, [1]),
        (data_tags[0], offset_kind, offsets), (data_tags[1], 4, counts),
        (282, 5, [(300, 1)]), (283, 5, [(300, 1)]), (296, 3, [2]), *layout]
    return sorted(entries), 4 * chunk


def make_tiff(order: str = "<", pages: int = 2, directory_first: bool = False,
              tiles: bool = False, big: bool = False, seed: int = 0) -> bytes:
    """A TIFF (``order`` "<" for II, ">" for MM) of ``pages`` grey pages; its directories
    before their image data (``directory_first``, as streaming writers do) or after it
    (as libtiff does)."""
    rng = random.Random(seed)
    mark = b"II" if order == "<" else b"MM"
    header_size = 16 if big else 8
    # Pass 1: the size of every part; pass 2: place them and render.
    sizes = []
    for _ in range(pages):
        entries, data_size = _page_entries(big, tiles, 0)
        sizes.append((_ifd_size(big, entries), data_size))
    places: list[tuple[int, int]] = []  # (directory at, data at)
    at = header_size
    if directory_first:
        for ifd_size, data_size in sizes:
            places.append((at, at + ifd_size))
            at += ifd_size + data_size
    else:
        data_at = at
        at += sum(d for _, d in sizes)
        for ifd_size, data_size in sizes:
            places.append((at, data_at))
            data_at += data_size
            at += ifd_size
    parts: list[tuple[int, bytes]] = []
    for i, (ifd_at, data_at) in enumerate(places):
        entries, data_size = _page_entries(big, tiles, data_at)
        next_at = places[i + 1][0] if i + 1 < pages else 0
        parts.append((ifd_at, tiff_directory(order, big, entries, ifd_at, next_at)))
        parts.append((data_at, rng.randbytes(data_size)))
    if big:
        header = mark + struct.pack(order + "HHHQ", 43, 8, 0, places[0][0])
    else:
        header = mark + struct.pack(order + "HI", 42, places[0][0])
    out = bytearray(header)
    for where, blob in sorted(parts):
        assert where == len(out), "the layout has a gap"
        out += blob
    return bytes(out)


# -- JPEG -----------------------------------------------------------------------------

def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def make_jpeg(seed: int = 0, scan_bytes: int = 4000, thumbnail: bool = True) -> bytes:
    """A baseline JPEG's structure: JFIF and EXIF headers (the EXIF one holding a
    thumbnail with an end marker of its own), tables, one scan of entropy-coded bytes
    (0xFF stuffed, restart markers between intervals), and the end marker."""
    rng = random.Random(seed)
    out = bytearray(b"\xff\xd8")
    out += _segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
    if thumbnail:
        out += _segment(0xE1, b"Exif\0\0" + make_jpeg(seed + 1, 300, thumbnail=False))
    out += _segment(0xDB, b"\0" + bytes(range(1, 65)))
    out += _segment(0xC0, b"\x08\x00\x10\x00\x10\x01\x01\x11\x00")
    out += _segment(0xC4, b"\x00" + bytes([0, 1, 5, 1, 1, 1, 1, 1, 1] + [0] * 7)
                    + bytes(range(12)))
    out += _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    for interval in range(0, scan_bytes, 1000):
        if interval:
            out += bytes([0xFF, 0xD0 + interval // 1000 % 8])
        out += rng.randbytes(min(1000, scan_bytes - interval)).replace(b"\xff", b"\xff\x00")
    out += b"\xff\xd9"
    return bytes(out)


# -- PNG ------------------------------------------------------------------------------

def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body))


def make_png(seed: int = 0, side: int = 32) -> bytes:
    """A valid 8-bit grey PNG of random pixels, its image data in two IDAT chunks."""
    rng = random.Random(seed)
    pixels = zlib.compress(b"".join(b"\0" + rng.randbytes(side) for _ in range(side)))
    half = len(pixels) // 2
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + _chunk(b"tEXt", b"Software\0folderseal tests")
            + _chunk(b"IDAT", pixels[:half]) + _chunk(b"IDAT", pixels[half:])
            + _chunk(b"IEND", b""))


# -- DOCX (ZIP) -----------------------------------------------------------------------

def make_docx(seed: int = 0, comment: bytes = b"", extra: dict[str, bytes] | None = None,
              entries: int = 0) -> bytes:
    """A DOCX-shaped ZIP as Python's zipfile writes it: the parts Word needs, a stored
    picture of random bytes, ``extra`` stored members and ``entries`` empty ones (more than
    65,535 make it a Zip64 file)."""
    rng = random.Random(seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as docx:
        docx.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        docx.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships/>')
        docx.writestr("word/document.xml", "<w:document>" + "text " * 200 + "</w:document>")
        docx.writestr("word/media/image1.png", rng.randbytes(1500), zipfile.ZIP_STORED)
        for name, data in (extra or {}).items():
            docx.writestr(name, data, zipfile.ZIP_STORED)
        for i in range(entries):
            docx.writestr(f"e/{i}", b"", zipfile.ZIP_STORED)
        docx.comment = comment
    return buffer.getvalue()
