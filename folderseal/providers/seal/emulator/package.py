"""ZIP in, ZIP out: checking and unpacking an uploaded package, writing the signed one.

Both directions stream between files in 1 MiB chunks, so a 1 GiB package never sits
in memory; ``zipfile`` reads only the central directory up front.

Uploads are checked more strictly than the documentation requires ("ZIP without
directories"): entries with a path separator, ``..``, a control character or a name
already used in the same package are refused too. The real server's behaviour with
such names is unknown; refusing them makes a client bug visible instead of letting the
emulator guess.

The outgoing package is written with ``ZipInfo`` objects, never ``ZipFile.write``,
because ``write`` "repairs" names (strips leading slashes and ``..``) and the
``unsafe-entry`` fault needs them exactly as chosen. Large entries are stored rather
than deflated: deflating 1 GiB of incompressible data costs tens of seconds, and a
client has to read both methods anyway.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

__all__ = ["CHUNK_SIZE", "UploadRejected", "unpack_upload", "write_package"]

CHUNK_SIZE = 1024 * 1024
# Entries above this size are stored, not deflated (see the module docstring).
DEFLATE_LIMIT = 64 * 1024 * 1024
# What the duplicate entry of the unsafe-entry fault holds: not what was uploaded.
IMPOSTOR_CONTENT = b"this entry duplicates another name; it is not what you uploaded\n"


class UploadRejected(ValueError):
    """The uploaded body is not a flat ZIP the emulator accepts; the message says why."""


def _name_problem(name: str) -> str | None:
    if not name:
        return "an entry has an empty name"
    if name.endswith("/") or name.endswith("\\"):
        return f"entry {name!r} is a directory; the package must be a ZIP without directories"
    if "/" in name or "\\" in name:
        return f"entry {name!r} is inside a directory; the package must be flat"
    if name in (".", ".."):
        return f"entry {name!r} is not a file name"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"entry {name!r} has a control character in its name"
    return None


def unpack_upload(zip_path: Path, into: Path, prefix: str) -> list[tuple[str, Path, str]]:
    """Check the ZIP at ``zip_path`` and unpack it into ``into``.

    Returns (entry name, unpacked file, sha256) per entry, in ZIP order; the files are
    named ``<prefix>-<n>``. Raises UploadRejected, having removed what it unpacked.
    """
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise UploadRejected(f"the body is not a readable ZIP file ({exc})") from None
    unpacked: list[tuple[str, Path, str]] = []
    try:
        with archive:
            infos = archive.infolist()
            if not infos:
                raise UploadRejected("the ZIP holds no files")
            seen: set[str] = set()
            for info in infos:
                problem = _name_problem(info.filename)
                if problem is None and info.filename in seen:
                    problem = f"entry {info.filename!r} appears twice in the ZIP"
                if problem is not None:
                    raise UploadRejected(problem)
                seen.add(info.filename)
            for n, info in enumerate(infos):
                target = into / f"{prefix}-{n}"
                digest = _extract(archive, info, target)
                unpacked.append((info.filename, target, digest))
    except UploadRejected:
        _remove([path for _, path, _ in unpacked])
        raise
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, ValueError) as exc:
        # Bad CRC, truncated data, encryption, an unsupported compression method...
        _remove([path for _, path, _ in unpacked])
        _remove([into / f"{prefix}-{len(unpacked)}"])
        raise UploadRejected(f"the ZIP cannot be unpacked ({exc})") from None
    except BaseException:
        _remove([path for _, path, _ in unpacked])
        _remove([into / f"{prefix}-{len(unpacked)}"])
        raise
    return unpacked


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> str:
    digest = hashlib.sha256()
    with archive.open(info) as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK_SIZE):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


def _remove(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def write_package(
    target: Path, entries: Sequence[tuple[str, Path]], unsafe_entry: str | None = ""
) -> None:
    """Write the package ZIP at ``target`` from (entry name, file) pairs, in order.

    ``unsafe_entry`` adds one extra entry (the unsafe-entry fault): "" adds nothing,
    None duplicates the first entry's name, anything else is used as the name.
    """
    temp = target.with_name(target.name + ".part")
    with zipfile.ZipFile(temp, "w", allowZip64=True) as archive:
        for name, path in entries:
            with path.open("rb") as src:
                _add(archive, name, src, path.stat().st_size)
        if unsafe_entry != "":
            extra_name = unsafe_entry
            if extra_name is None:
                extra_name = entries[0][0] if entries else "evil.txt"
                if not entries:  # nothing to duplicate: make the name appear twice anyway
                    _add_bytes(archive, extra_name, IMPOSTOR_CONTENT)
            _add_bytes(archive, extra_name, IMPOSTOR_CONTENT)
    temp.replace(target)  # a half-written package is never served


def _add_bytes(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    _add(archive, name, io.BytesIO(data), len(data))


def _add(archive: zipfile.ZipFile, name: str, src: BinaryIO, size: int) -> None:
    now = datetime.now(UTC)
    info = zipfile.ZipInfo(
        name, date_time=(now.year, now.month, now.day, now.hour, now.minute, now.second)
    )
    info.compress_type = zipfile.ZIP_STORED if size > DEFLATE_LIMIT else zipfile.ZIP_DEFLATED
    info.file_size = size  # lets zipfile choose ZIP64 headers for entries over 2 GiB
    info.external_attr = 0o644 << 16
    # zipfile warns on a repeated name; repeated names are what the duplicate-upload
    # quirk and the unsafe-entry fault are about, so forget the earlier entry's name
    # (both stay in the central directory, which is what a reader sees).
    archive.NameToInfo.pop(name, None)
    with archive.open(info, "w") as dst:
        shutil.copyfileobj(src, dst, CHUNK_SIZE)
