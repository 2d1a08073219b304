"""Test PDFs made on the spot: small, valid, with a classic xref table and ``%%EOF``."""

from __future__ import annotations

import io
from pathlib import Path

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.crypt.permissions import StandardPermissions
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter

__all__ = ["make_big_pdf", "make_encrypted_pdf", "make_pdf"]


def _escape(text: str) -> bytes:
    raw = text.encode("latin-1", errors="replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def make_pdf(path: Path | None = None, pages: int = 1, text: str = "folderseal test page") -> bytes:
    """Build a PDF with ``pages`` pages of Helvetica text; write it to ``path`` if given."""
    if pages < 1:
        raise ValueError("a PDF needs at least one page")
    # Object numbers: 1 catalog, 2 page tree, 3 font, then (page, content) pairs.
    page_ids = [4 + 2 * i for i in range(pages)]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % pid for pid in page_ids)
        + b"] /Count %d >>" % pages,
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for number, pid in enumerate(page_ids, start=1):
        line = _escape(f"{text} ({number}/{pages})")
        content = b"BT /F1 18 Tf 72 720 Td (" + line + b") Tj ET"
        objects[pid] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (pid + 1)
        )
        objects[pid + 1] = b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"

    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n"
    size = max(objects) + 1
    xref_at = len(out)
    out += b"xref\n0 %d\n" % size
    out += b"0000000000 65535 f \n"  # each entry is exactly 20 bytes, EOL included
    for num in range(1, size):
        out += b"%010d 00000 n \n" % offsets[num]
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref_at)
    data = bytes(out)
    if path is not None:
        path.write_bytes(data)
    return data


def make_encrypted_pdf(path: Path | None = None, user_password: str = "secret",
                       permissions: StandardPermissions | None = None) -> bytes:
    """Build a password-protected (AES-256) copy of a one-page test PDF. An empty
    ``user_password`` makes one that opens without a password (an owner password only);
    ``permissions`` restricts what may be done with it."""
    source = PdfFileReader(io.BytesIO(make_pdf(None, text="encrypted test page")))
    writer = PdfFileWriter()
    restricted = {} if permissions is None else {"perms": permissions}
    writer.encrypt("owner-" + user_password, user_password, **restricted)
    page = source.root["/Pages"]["/Kids"][0].get_object()
    content = page["/Contents"].get_object()
    font = generic.DictionaryObject(
        {
            generic.pdf_name("/Type"): generic.pdf_name("/Font"),
            generic.pdf_name("/Subtype"): generic.pdf_name("/Type1"),
            generic.pdf_name("/BaseFont"): generic.pdf_name("/Helvetica"),
        }
    )
    resources = generic.DictionaryObject(
        {
            generic.pdf_name("/Font"): generic.DictionaryObject(
                {generic.pdf_name("/F1"): writer.add_object(font)}
            )
        }
    )
    stream = generic.StreamObject(stream_data=content.data)
    writer.insert_page(
        generic.DictionaryObject(
            {
                generic.pdf_name("/Type"): generic.pdf_name("/Page"),
                generic.pdf_name("/MediaBox"): generic.ArrayObject(
                    [generic.NumberObject(v) for v in (0, 0, 612, 792)]
                ),
                generic.pdf_name("/Resources"): resources,
                generic.pdf_name("/Contents"): writer.add_object(stream),
            }
        )
    )
    buf = io.BytesIO()
    writer.write(buf)
    data = buf.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def make_big_pdf(path: Path, payload_mib: int) -> None:
    """Write a one-page PDF carrying an unused ``payload_mib`` MiB stream of zeros.

    The payload is a hole in a sparse file: it takes no disk space and no time to write.
    """
    content = b"BT /F1 18 Tf 72 720 Td (big test document) Tj ET"
    payload = payload_mib * 1024 * 1024
    offsets: dict[int, int] = {}
    with path.open("wb") as out:

        def put(num: int, body: bytes) -> None:
            offsets[num] = out.tell()
            out.write(b"%d 0 obj\n" % num + body + b"\nendobj\n")

        out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        put(1, b"<< /Type /Catalog /Pages 2 0 R >>")
        put(2, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
        put(
            3,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        )
        put(4, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
        put(5, b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        offsets[6] = out.tell()
        out.write(b"6 0 obj\n<< /Length %d >>\nstream\n" % payload)
        out.seek(payload, 1)  # leave a hole: reads as zeros
        out.write(b"\nendstream\nendobj\n")
        xref_at = out.tell()
        out.write(b"xref\n0 7\n0000000000 65535 f \n")
        out.write(b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, 7)))
        out.write(b"trailer\n<< /Size 7 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref_at)
