"""Tests for folderseal.intake.complete: whole files pass, every cut-short prefix is caught, the
format is told by content, reads stay small, and no bytes make a check raise."""

from __future__ import annotations

import functools
import os
import random
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from folderseal.intake import complete
from tests.images import make_docx, make_jpeg, make_png, make_tiff, tiff_directory
from tests.pdfs import make_pdf

# name → (the whole file, how many bytes at its end may go without it becoming incomplete)
SAMPLES: dict[str, Callable[[], tuple[bytes, int]]] = {
    "pdf": lambda: (make_pdf(pages=2), 1),  # "%%EOF\n": the newline is not needed
    "tiff-ii-directory-last": lambda: (make_tiff("<"), 0),
    "tiff-mm-directory-last": lambda: (make_tiff(">"), 0),
    "tiff-ii-directory-first": lambda: (make_tiff("<", directory_first=True), 0),
    "tiff-mm-directory-first": lambda: (make_tiff(">", directory_first=True, pages=3), 0),
    "tiff-tiles": lambda: (make_tiff("<", tiles=True), 0),
    "bigtiff-ii": lambda: (make_tiff("<", big=True), 0),
    "bigtiff-mm-tiles-first": lambda: (make_tiff(">", big=True, tiles=True,
                                                 directory_first=True), 0),
    "jpeg-with-exif-thumbnail": lambda: (make_jpeg(), 0),
    "png": lambda: (make_png(), 0),
    "docx": lambda: (make_docx(), 0),
    "docx-with-comment": lambda: (make_docx(comment=b"made by a test PK\x05\x06"), 0),
    "zip-holding-a-zip": lambda: (make_docx(extra={"inner.docx": make_docx(seed=3)}), 0),
}
MAGIC_LENGTH = {"pdf": 5, "tiff": 4, "bigtiff": 4, "jpeg": 3, "png": 8, "docx": 4, "zip": 4}


@contextmanager
def opened(data: bytes) -> Iterator[int]:
    fd = os.memfd_create("complete-test")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        yield fd
    finally:
        os.close(fd)


def check(data: bytes, name: str = "") -> str:
    return check_at(data, len(data), name)


def check_at(data: bytes, size: int, name: str = "") -> str:
    """The verdict on ``data`` checked as a file of ``size`` bytes (its stat said so)."""
    with opened(data) as fd:
        return complete.why_incomplete(fd, size, name)


@functools.cache
def sample(name: str) -> tuple[bytes, int]:
    return SAMPLES[name]()


@pytest.mark.parametrize("name", SAMPLES)
def test_a_whole_file_is_complete(name: str) -> None:
    """Each whole sample file is complete."""
    data, _ = sample(name)
    assert check(data) == ""


@pytest.mark.parametrize("name", SAMPLES)
def test_every_cut_short_copy_is_incomplete_with_a_reason(name: str) -> None:
    """Every prefix of a sample that still shows its format but lacks its end is reported
    incomplete, in words that ask whether the copy is complete."""
    data, optional_tail = sample(name)
    start = MAGIC_LENGTH[name.split("-")[0]]
    for size in range(start, len(data) - optional_tail):
        reason = check(data[:size])
        assert reason, f"{name} cut to {size} of {len(data)} bytes passed as complete"
        assert "was it copied completely?" in reason


def test_zip64_whole_is_complete_and_cut_is_not() -> None:
    """A Zip64 file (more than 65,535 members) is complete whole and incomplete when cut
    anywhere in its central directory or end records."""
    data = make_docx(entries=65_536)
    assert b"PK\x06\x06" in data[-200:], "the sample is no Zip64 file"
    assert check(data) == ""
    rng = random.Random(1)
    for size in [len(data) - n for n in range(1, 200)] + rng.sample(range(4, len(data)), 40):
        assert check(data[:size]), f"cut to {size} passed"


@pytest.mark.parametrize(("name", "reason"), [
    ("tiff-ii-directory-last", "the TIFF is cut short: page 2's data lies past its end"),
    ("tiff-mm-directory-first", "the TIFF is cut short: page 3's image data (strips) lies "
                                "past its end"),
    ("jpeg-with-exif-thumbnail", "the JPEG has no end marker"),
    ("png", "the PNG has no end chunk (IEND)"),
    ("docx", "the ZIP file (DOCX, XLSX, ODT…) has no complete end record"),
    ("pdf", "the PDF is not complete yet (no %%EOF at its end)"),
])
def test_the_reason_names_the_format_and_what_is_missing(name: str, reason: str) -> None:
    """A file cut near its end is reported with its format and what is missing, then the
    question and the next step for the operator."""
    data, _ = sample(name)
    assert check(data[:-20]) == reason + complete.ASK


def test_bytes_after_the_jpeg_end_marker_are_allowed_within_the_window() -> None:
    """A JPEG with a trailer after its end marker is complete while the marker lies in
    the last 64 KiB, and incomplete beyond that (the documented window)."""
    data = make_jpeg()
    rng = random.Random(2)
    short_tail = rng.randbytes(10_000).replace(b"\xff", b"\x00")
    long_tail = rng.randbytes(complete.WINDOW).replace(b"\xff", b"\x00")
    assert check(data + short_tail) == ""
    assert check(data + long_tail).startswith("the JPEG has no end marker")


def test_the_thumbnail_end_marker_does_not_pass_for_the_image() -> None:
    """A JPEG cut inside its scan is incomplete though its EXIF thumbnail ends with an end
    marker within the last 64 KiB."""
    data = make_jpeg()
    assert data.count(b"\xff\xd9") == 2
    assert check(data[:data.index(b"\xff\xda") + 100])


def test_the_format_is_told_by_content_not_by_name() -> None:
    """A cut JPEG named .txt is caught; text named .jpg or .tif is complete; a PDF with
    bytes before its header is recognised when it is named .pdf."""
    jpeg = make_jpeg()
    assert check(jpeg[:1000], "scan.txt")
    assert check(b"just some text\n" * 100, "photo.jpg") == ""
    assert check(b"II but not a TIFF", "scan.tif") == ""
    prefixed = b"\n\n" + make_pdf()
    assert check(prefixed[:-30], "letter.pdf").startswith("the PDF is not complete yet")
    assert check(b"notes on %PDF-1.7 files\n" * 10, "notes.txt") == ""


def test_a_tiff_whose_directory_is_not_written_yet_is_incomplete() -> None:
    """A TIFF header whose first directory offset is still 0 (libtiff writes it last) is
    incomplete."""
    data = bytearray(make_tiff("<"))
    data[4:8] = b"\0\0\0\0"
    assert check(bytes(data)).startswith("the TIFF has no page directory yet")


def test_a_tiff_directory_loop_ends_the_check() -> None:
    """A TIFF whose last directory points back at the first is not followed for ever."""
    data = bytearray(make_tiff("<", directory_first=True, pages=1))
    first = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[first:first + 2])[0]
    data[first + 2 + 12 * count:first + 6 + 12 * count] = struct.pack("<I", first)
    assert check(bytes(data)) == ""


# -- crafted bytes --------------------------------------------------------------------

def test_a_bigtiff_directory_offset_past_2_to_the_63_is_cut_short_not_a_crash() -> None:
    """A BigTIFF whose first directory lies at 2**63 + 5 (further than a read can even be
    asked for) is reported cut short instead of raising."""
    data = b"II+\0\x08\0\0\0" + struct.pack("<Q", 2**63 + 5) + bytes(100)
    assert check(data).startswith("the TIFF is cut short: page 1's directory lies past")


def test_a_bigtiff_directory_with_more_fields_than_tags_is_left_to_the_signer() -> None:
    """A BigTIFF whose directory claims 2**40 fields (more than there are tags: damaged,
    not cut short) is not reported cut short, which would hold it until
    stuck_after_seconds: the check cannot tell, and the signer decides."""
    data = b"II+\0\x08\0\0\0" + struct.pack("<Q", 16) + struct.pack("<Q", 2**40) + bytes(100)
    assert check(data) == ""


def test_a_zip64_locator_past_2_to_the_63_is_no_end_record_not_a_crash() -> None:
    """A ZIP whose Zip64 locator points at 2**63 + 1 has no complete end record: it is
    reported, not raised on."""
    end = complete.EOCD.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    locator = complete.ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, 2**63 + 1, 1)
    data = b"PK\x03\x04" + bytes(100) + locator + end
    assert check(data).startswith("the ZIP file (DOCX, XLSX, ODT…) has no complete end")


def test_a_file_with_fewer_bytes_than_its_size_is_changing_not_a_crash() -> None:
    """A TIFF checked at the 200 bytes its stat said that holds only 20 (it shrank since)
    is not ready, with the reason that it is being written: it is looked at again."""
    data = make_tiff("<", directory_first=True)[:20]
    assert check_at(data, 200) == complete.SHRANK


# -- reading little -------------------------------------------------------------------

def _sparse(path: Path, size: int, parts: dict[int, bytes]) -> Path:
    with path.open("wb") as out:
        out.truncate(size)
        for at, blob in parts.items():
            out.seek(at if at >= 0 else size + at)
            out.write(blob)
    return path


def _big_tiff_with_many_strips(path: Path, size: int, strips: int) -> Path:
    """A classic TIFF of ``size`` bytes whose one directory (at its end) lists ``strips``
    strips spread over the file."""
    chunk = (size - 8 - 16 * strips) // strips
    entries = [(256, 3, [64]), (257, 4, [strips]), (273, 4, [8 + i * chunk for i in range(strips)]),
               (278, 3, [1]), (279, 4, [chunk] * strips)]
    at = size - 6 - 12 * len(entries) - 8 * strips
    directory = tiff_directory("<", False, entries, at, 0)  # type: ignore[arg-type]
    assert at + len(directory) == size
    return _sparse(path, size, {0: b"II*\0" + struct.pack("<I", at), at: directory})


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every os.pread a check makes from now on."""
    lengths: list[int] = []
    real_pread = os.pread

    def counting(fd: int, length: int, offset: int) -> bytes:
        lengths.append(length)
        return real_pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", counting)
    return lengths


def check_path(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return complete.why_incomplete(fd, path.stat().st_size, path.name)
    finally:
        os.close(fd)


def test_memory_stays_flat_on_big_files(tmp_path: Path, reads: list[int]) -> None:
    """On 3 GiB files (sparse) every check reads at most 64 KiB + 22 bytes at a time and
    about a megabyte in all, however big the file."""
    gib = 1 << 30
    size = 3 * gib
    files = {
        "jpeg": _sparse(tmp_path / "a.jpg", size, {0: make_jpeg(scan_bytes=100), -2: b"\xff\xd9"}),
        "jpeg-cut": _sparse(tmp_path / "b.jpg", size, {0: make_jpeg(scan_bytes=100)[:-2]}),
        "png": _sparse(tmp_path / "c.png", size, {0: make_png()[:-12], -12: make_png()[-12:]}),
        "zip": _sparse(tmp_path / "d.zip", size, {0: make_docx()[:-22]}),
        "pdf": _sparse(tmp_path / "e.pdf", size, {0: b"%PDF-1.7\n", -6: b"%%EOF\n"}),
        "tiff": _big_tiff_with_many_strips(tmp_path / "f.tif", 2 * gib, 100_000),
    }
    verdicts = {}
    for name, path in files.items():
        reads.clear()
        verdicts[name] = check_path(path)
        assert max(reads) <= complete.WINDOW + 22, name
        assert sum(reads) <= 1_100_000, name
    assert {k for k, v in verdicts.items() if v} == {"jpeg-cut", "zip"}


def _sparse_bigtiff(path: Path, directories: int, fields: int) -> Path:
    """A BigTIFF of ``directories`` chained directories of ``fields`` (zeroed) fields each,
    sparse: only the counts and the links between directories are written."""
    size = 8 + 20 * fields + 8  # the count, the fields, the next directory's offset
    with path.open("wb") as out:
        out.write(b"II+\0\x08\0\0\0" + struct.pack("<Q", 16))
        for i in range(directories):
            at = 16 + i * size
            out.seek(at)
            out.write(struct.pack("<Q", fields))
            out.seek(at + size - 8)
            out.write(struct.pack("<Q", 0 if i == directories - 1 else at + size))
    return path


@pytest.mark.timeout(60)
def test_ten_thousand_directories_of_many_fields_are_checked_in_bounded_time(
        tmp_path: Path, reads: list[int]) -> None:
    """A crafted TIFF of 10,000 directories of 65,535 fields each (13 GB, sparse) is
    checked reading no more than the budget: past it the check cannot tell, and the file
    counts as complete (the signer decides)."""
    path = _sparse_bigtiff(tmp_path / "crafted.tif", 10_000, 0xFFFF)
    assert check_path(path) == ""
    assert sum(reads) <= complete.READ_BUDGET


# -- fuzz -----------------------------------------------------------------------------

MAGICS = [m for m, _ in complete.MAGIC] + [b""]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(MAGICS), st.binary(max_size=600), st.sampled_from(["", "x.pdf"]))
def test_random_bytes_never_raise(magic: bytes, body: bytes, name: str) -> None:
    """Random bytes, with or without a known format's magic in front, never make a check
    raise: the answer is "" or a reason."""
    assert isinstance(check(magic + body, name), str)


# Numbers a crafted file puts where an offset, a length or a count belongs.
HUGE = {2: [0xFFFF, 0x8000], 4: [0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF],
        8: [2**63 - 1, 2**63, 2**63 + 5, 2**64 - 1]}


@functools.cache
def _number_places(name: str) -> list[tuple[int, int, str]]:
    """(position, width, byte order) of each number in a sample that could be an offset,
    a length or a count in it (between 1 and its length): where to put a huge one."""
    data = sample(name)[0]
    found = [(at, width, order)
             for width, code in ((2, "H"), (4, "I"), (8, "Q")) for order in "<>"
             for at in range(len(data) - width + 1)
             if 0 < struct.unpack_from(order + code, data, at)[0] < len(data)]
    return found or [(0, 4, "<")]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_huge_numbers_and_a_wrong_size_never_raise(name: str, data: st.DataObject) -> None:
    """A sample with huge numbers (up to 2**64 - 1) written where it holds offsets,
    lengths or counts, checked at a size anywhere from none to far more than the bytes
    it holds (a file that shrank or grew since its stat), never makes a check raise."""
    crafted = bytearray(sample(name)[0])
    for _ in range(data.draw(st.integers(0, 4))):
        at, width, order = data.draw(st.sampled_from(_number_places(name)))
        value = data.draw(st.sampled_from(HUGE[width]))
        crafted[at:at + width] = value.to_bytes(width, "little" if order == "<" else "big")
    size = data.draw(st.one_of(st.just(len(crafted)), st.integers(0, 2 * len(crafted)),
                               st.sampled_from([2**63 - 1, 2**63 + 7, 2**64])))
    assert isinstance(check_at(bytes(crafted), size), str)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_damaged_files_never_raise(name: str, data: st.DataObject) -> None:
    """A sample with bytes overwritten at random places never makes a check raise."""
    damaged = bytearray(sample(name)[0])
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    assert isinstance(check(bytes(damaged[:cut])), str)
