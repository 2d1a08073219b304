"""Tests for folderseal.providers.seal.flatzip: the flat ZIP SEAL gets."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from folderseal.providers.seal.flatzip import build_package, package_matches


def opener(path: Path) -> Callable[[], int]:
    return lambda: os.open(path, os.O_RDONLY)


def test_build_package_makes_a_flat_stored_zip(tmp_path: Path) -> None:
    """The ZIP holds exactly the given entry names, stored, with each file's bytes."""
    contents = {"0000_a.pdf": b"%PDF-1.7 a\n%%EOF", "0001_b.txt": os.urandom(3000),
                "0002_empty.bin": b"", "0003_big.bin": os.urandom((1 << 20) + 17)}
    sources = tmp_path / "src"
    sources.mkdir()
    members = []
    for index, (name, data) in enumerate(contents.items()):
        path = sources / f"in{index}"
        path.write_bytes(data)
        members.append((name, opener(path)))
    package = tmp_path / "out" / "batch.zip"
    package.parent.mkdir()

    digest, size = build_package(package, members)

    assert digest == hashlib.sha256(package.read_bytes()).hexdigest()
    assert size == package.stat().st_size
    with zipfile.ZipFile(package) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == list(contents)
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert not info.is_dir()
            assert archive.read(info) == contents[info.filename]
    assert sorted(p.name for p in package.parent.iterdir()) == ["batch.zip"]


def test_build_package_closes_every_descriptor(tmp_path: Path) -> None:
    """Each opened descriptor is closed after its entry is written."""
    path = tmp_path / "in"
    path.write_bytes(b"data")
    opened: list[int] = []

    def open_and_remember() -> int:
        fd = os.open(path, os.O_RDONLY)
        opened.append(fd)
        return fd

    build_package(tmp_path / "p.zip", [("0000_a", open_and_remember), ("0001_b",
                                                                       open_and_remember)])
    for fd in opened:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_build_package_replaces_a_torn_package(tmp_path: Path) -> None:
    """Rebuilding over a torn ZIP gives a valid one with the same hash as a first build."""
    path = tmp_path / "in"
    path.write_bytes(b"content")
    package = tmp_path / "p.zip"
    first = build_package(package, [("0000_a", opener(path))])
    package.write_bytes(package.read_bytes()[:20])
    assert build_package(package, [("0000_a", opener(path))]) == first


def test_package_matches(tmp_path: Path) -> None:
    """package_matches is true only for the recorded hash of an existing file."""
    package = tmp_path / "p.zip"
    assert package_matches(package, "0" * 64) is False
    package.write_bytes(b"zip bytes")
    digest = hashlib.sha256(b"zip bytes").hexdigest()
    assert package_matches(package, digest) is True
    assert package_matches(package, "0" * 64) is False
    assert package_matches(package, None) is False
    package.write_bytes(b"zip byte")
    assert package_matches(package, digest) is False
