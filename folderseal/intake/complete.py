"""Is a file that stopped changing whole? Checks by content, one function per format.

A file unchanged for ``settle_seconds`` may still be a part: a writer that paused, a
copy cut short. Many formats say in their own bytes whether they are whole, and each
check below reads only those bytes through a file descriptor (``os.pread``), so memory
stays flat however big the file is. Each returns "" when the file is complete, else
the reason in an operator's words; none raises on bytes it does not understand (a
damaged file is the signer's business, not this module's). The format is told by its
magic bytes, not by its name; a format not listed here counts as complete.

The bytes may be anyone's, so every offset they name is checked against the file's size
before it is read (an offset past 2**63 cannot even be asked for), and one check reads
at most ``READ_BUDGET`` bytes, each read counted as at least ``READ_COST``: a crafted file
of 10,000 directories of 65,535 fields each costs what a few directories do. Past the
budget the check cannot tell, and a file it cannot tell about counts as complete: the
signer decides. A file that holds fewer bytes than the size it was checked at is
changing under the check: not ready, looked at again.

=====  =======================  ===================================================
PDF    ``%PDF-``                ``%%EOF`` within the last KiB
TIFF   ``II*\\0``, ``MM\\0*``,    every directory (IFD) of the page chain, every
       BigTIFF ``II+\\0``…       value and every strip or tile it points to lies
                                within the file
JPEG   ``FF D8 FF``             an end marker (``FF D9``) after the start of the first
                                scan, within the last 64 KiB: bytes after it (camera
                                trailers, a second image) are allowed up to that window
PNG    ``89 PNG``               an ``IEND`` chunk within the last 64 KiB
ZIP    ``PK\\3\\4``, ``PK\\5\\6``   (DOCX, XLSX, ODT, EPUB…) an end-of-central-directory
                                record in the last 64 KiB + 22 bytes (Zip64 too),
                                whose central directory lies in the file just before it
=====  =======================  ===================================================

Only the JPEG window can misjudge a whole file: one with more than 64 KiB after its end
marker that does not itself end with one (a phone's "motion photo" video) waits until
``stuck_after_seconds``. Scanners and office programs write no such files.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

WINDOW = 64 * 1024
ASK = ": was it copied completely? If not, copy the whole file into the inbox again"
MAX_PAGES = 10_000          # directories followed in one TIFF; more: it cannot be told
MAX_SEGMENTS = 1_000        # JPEG header segments walked before the first scan
CHUNK = 8_192               # TIFF strip offsets read per pread
READ_BUDGET = 2 << 20       # bytes one check may read; past them it cannot tell
READ_COST = 64              # a read of fewer bytes counts as this many (a system call)
MAX_SIZE = (1 << 63) - 1    # the largest offset os.pread takes
SHRANK = ("it holds fewer bytes than its size said: it is being written or replaced; "
          "folderseal looks again")


class _CannotTell(Exception):
    """The check's read budget is spent: the file counts as complete."""


class _Shrank(Exception):
    """The file ended before the size it is checked at: it changed during the check."""


class _File:
    """An open file of a given size, read within that size and within the budget."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = min(max(size, 0), MAX_SIZE)
        self.budget = READ_BUDGET

    def read(self, offset: int, length: int) -> bytes:
        """The bytes at ``offset``, up to ``length`` of them and never past the size."""
        length = min(length, self.size - offset)
        if offset < 0 or length <= 0:
            return b""
        self.budget -= max(length, READ_COST)
        if self.budget < 0:
            raise _CannotTell
        raw = os.pread(self.fd, length, offset)
        if len(raw) < length:
            raise _Shrank
        return raw


def why_incomplete(fd: int, size: int, name: str = "") -> str:
    """"" if the open file of ``size`` bytes is complete (or cannot be told), else why it
    is not."""
    file = _File(fd, size)
    try:
        head = file.read(0, 1024)
        for magic, check in MAGIC:
            if head.startswith(magic):
                return check(file)
        if name.lower().endswith(".pdf") and b"%PDF-" in head:  # readers allow junk first
            return pdf(file)
        return ""
    except _CannotTell:
        return ""
    except _Shrank:
        return SHRANK


# -- PDF ------------------------------------------------------------------------------

def pdf(file: _File) -> str:
    if b"%%EOF" in file.read(max(0, file.size - 1024), 1024):
        return ""
    return "the PDF is not complete yet (no %%EOF at its end)" + ASK


# -- TIFF -----------------------------------------------------------------------------

# bytes per value of each TIFF field type (unknown types are skipped, as readers do)
TIFF_TYPES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
              13: 4, 16: 8, 17: 8, 18: 8}
TIFF_INTS = {3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}
TIFF_DATA = ((273, 279, "strip"), (324, 325, "tile"))  # (offsets tag, byte counts tag)


def tiff(file: _File) -> str:
    head = file.read(0, 16)
    order = "<" if head[:2] == b"II" else ">"
    if len(head) < 8:
        return "the TIFF ends inside its header" + ASK
    version = struct.unpack(order + "H", head[2:4])[0]
    if version == 43:  # BigTIFF: 8-byte counts and offsets
        if len(head) < 16:
            return "the TIFF ends inside its header" + ASK
        if struct.unpack(order + "H", head[4:6])[0] != 8:
            return ""
        big, offset = True, struct.unpack(order + "Q", head[8:16])[0]
    else:
        big, offset = False, struct.unpack(order + "I", head[4:8])[0]
    if offset == 0:  # written last, by libtiff among others
        return "the TIFF has no page directory yet" + ASK
    seen: set[int] = set()
    page = 0
    while offset and offset not in seen and page < MAX_PAGES:
        seen.add(offset)
        page += 1
        offset, problem = _tiff_page(file, order, big, offset, page)
        if problem:
            return problem
    return ""


def _tiff_page(file: _File, order: str, big: bool, at: int, page: int) -> tuple[int, str]:
    """Check one directory; (the next directory's offset, why the file is cut short)."""

    def cut(what: str) -> tuple[int, str]:
        return 0, f"the TIFF is cut short: page {page}'s {what} lies past its end" + ASK

    count_fmt, entry_size, ptr_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    count_size, ptr_size = struct.calcsize(count_fmt), struct.calcsize(ptr_fmt)
    raw = file.read(at, count_size)
    if len(raw) < count_size:
        return cut("directory")
    count = struct.unpack(order + count_fmt, raw)[0]
    if count > 0xFFFF:  # more fields than there are tags: damaged, not cut short
        return 0, ""
    if at + count_size + count * entry_size + ptr_size > file.size:
        return cut("directory")
    table = file.read(at + count_size, count * entry_size + ptr_size)  # all in the file
    fields: dict[int, tuple[int, int, bytes]] = {}
    for i in range(count):
        entry = table[i * entry_size:(i + 1) * entry_size]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        n = struct.unpack(order + ptr_fmt, entry[4:4 + ptr_size])[0]
        value = entry[4 + ptr_size:]
        width = TIFF_TYPES.get(kind)
        if width is None:
            continue
        elsewhere = n * width > ptr_size  # then those values must lie in the file too
        if elsewhere and struct.unpack(order + ptr_fmt, value)[0] + n * width > file.size:
            return cut("data")
        fields[tag] = (kind, n, value)
    for offsets_tag, counts_tag, what in TIFF_DATA:
        if offsets_tag in fields and counts_tag in fields:
            offsets = _tiff_ints(file, order, ptr_fmt, *fields[offsets_tag])
            counts = _tiff_ints(file, order, ptr_fmt, *fields[counts_tag])
            if any(o + c > file.size for o, c in zip(offsets, counts, strict=False)):
                return cut(f"image data ({what}s)")
    return struct.unpack(order + ptr_fmt, table[-ptr_size:])[0], ""


def _tiff_ints(file: _File, order: str, ptr_fmt: str, kind: int, n: int,
               value: bytes) -> Iterator[int]:
    """The integer values of one field, read CHUNK at a time (there may be many; the
    caller made sure they lie in the file)."""
    code = TIFF_INTS.get(kind)
    if code is None:
        return
    width = struct.calcsize(code)
    if n * width <= len(value):
        yield from struct.unpack(f"{order}{n}{code}", value[:n * width])
        return
    where = struct.unpack(order + ptr_fmt, value)[0]
    for first in range(0, n, CHUNK):
        raw = file.read(where + first * width, min(CHUNK, n - first) * width)
        many = len(raw) // width
        if not many:
            return
        yield from struct.unpack(f"{order}{many}{code}", raw[:many * width])


# -- JPEG -----------------------------------------------------------------------------

def jpeg(file: _File) -> str:
    # The end marker is looked for after the first scan begins, so the end marker of a
    # thumbnail in the EXIF header does not pass for the image's own.
    pos = 2
    for _ in range(MAX_SEGMENTS):
        head = file.read(pos, 4)
        if len(head) < 2:
            return "the JPEG ends inside its header" + ASK
        if head[0] != 0xFF:
            break  # not a marker where one belongs: damaged; look for the end anyway
        marker = head[1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xD9:  # an end before any scan: tables only
            return ""
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        elif len(head) < 4:
            return "the JPEG ends inside its header" + ASK
        else:
            pos += 2 + struct.unpack(">H", head[2:4])[0]
            if marker == 0xDA:  # start of scan: the image data follows
                break
    start = max(pos, file.size - WINDOW)
    if b"\xff\xd9" in file.read(start, file.size - start):
        return ""
    return "the JPEG has no end marker" + ASK


# -- PNG ------------------------------------------------------------------------------

def png(file: _File) -> str:
    start = max(8, file.size - WINDOW)
    tail = file.read(start, file.size - start)
    at = tail.rfind(b"\x00\x00\x00\x00IEND")
    if at >= 0 and at + 12 <= len(tail):  # length, type and CRC
        return ""
    return "the PNG has no end chunk (IEND)" + ASK


# -- ZIP (DOCX, XLSX, ODT, EPUB, ZIP…) -----------------------------------------------

EOCD = struct.Struct("<4s4H2IH")             # end of central directory, 22 bytes
ZIP64_LOCATOR = struct.Struct("<4sIQI")      # 20 bytes, just before the EOCD
ZIP64_EOCD = struct.Struct("<4sQ2H2I4Q")     # 56 bytes


def zip_(file: _File) -> str:
    start = max(0, file.size - (0xFFFF + EOCD.size))
    tail = file.read(start, file.size - start)
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0:  # the last record that holds together (a comment may hold the bytes)
        if _zip_end_fits(file, start + at, tail[at:at + EOCD.size]):
            return ""
        at = tail.rfind(b"PK\x05\x06", 0, at)
    return "the ZIP file (DOCX, XLSX, ODT…) has no complete end record" + ASK


def _zip_end_fits(file: _File, end_at: int, record: bytes) -> bool:
    """The end record at ``end_at`` is whole, and its central directory lies right before
    it (a file that starts with a ZIP header has nothing before its first entry)."""
    if len(record) < EOCD.size:
        return False
    *_, entries, cd_size, cd_offset, comment = EOCD.unpack(record)
    if end_at + EOCD.size + comment > file.size:
        return False
    directory_end = end_at
    if 0xFFFFFFFF in (cd_size, cd_offset) or entries == 0xFFFF:
        locator = file.read(end_at - ZIP64_LOCATOR.size, ZIP64_LOCATOR.size)
        if len(locator) == ZIP64_LOCATOR.size and locator[:4] == b"PK\x06\x07":
            directory_end = ZIP64_LOCATOR.unpack(locator)[2]
            big = file.read(directory_end, ZIP64_EOCD.size)
            if len(big) < ZIP64_EOCD.size or big[:4] != b"PK\x06\x06" \
                    or directory_end + ZIP64_EOCD.size > end_at:
                return False
            *_, entries, cd_size, cd_offset = ZIP64_EOCD.unpack(big)
    if cd_offset + cd_size != directory_end:
        return False
    return entries == 0 or file.read(cd_offset, 4) == b"PK\x01\x02"


MAGIC: tuple[tuple[bytes, Callable[[_File], str]], ...] = (
    (b"%PDF-", pdf),
    (b"II*\x00", tiff), (b"MM\x00*", tiff), (b"II+\x00", tiff), (b"MM\x00+", tiff),
    (b"\xff\xd8\xff", jpeg),
    (b"\x89PNG\r\n\x1a\n", png),
    (b"PK\x03\x04", zip_), (b"PK\x05\x06", zip_),
)
