"""The flat ZIP folderseal uploads to SEAL: made by the provider's ``prepare`` step.

Entry names are the batch's flat entry names. The ZIP is stored (not deflated: PDFs and
images hardly compress) and streamed, so memory does not grow with file size; it is
written beside its place and renamed in, and its hash recorded with the batch, so one
a crash or a disk tore is made again before it is uploaded.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from folderseal.core import files


def build_package(path: Path, members: Iterable[tuple[str, Callable[[], int]]]) -> tuple[str, int]:
    """Write a flat, stored ZIP of ``(entry name, opener of a file descriptor)`` pairs.

    Streams each file in 1 MiB chunks; returns the package's sha256 and size.
    """
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as package:
        for name, opener in members:
            fd = opener()
            try:
                size = os.fstat(fd).st_size
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_STORED
                info.file_size = size
                with package.open(info, "w", force_zip64=size > 0x7FFF0000) as out:
                    offset = 0
                    while chunk := os.pread(fd, files.CHUNK, offset):
                        out.write(chunk)
                        offset += len(chunk)
            finally:
                os.close(fd)
    fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
        digest, size = files.hash_fd(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    files.fsync_dir(path.parent)
    return digest, size


def package_matches(path: Path, sha256: str | None) -> bool:
    """True if the package on disk is the one recorded (a crash may have torn it)."""
    if sha256 is None or not path.exists():
        return False
    return files.hash_path(path)[0] == sha256

