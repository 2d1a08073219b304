"""The returned package: validated entry by entry before anything is written."""

from __future__ import annotations

import hashlib
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from folderseal.core.errors import ProviderError
from folderseal.providers import Document
from folderseal.providers.seal.package import Limits, extract, unsafe
from folderseal.providers.seal.parse import RemoteDocument

LIMITS = Limits((".p7s", ".p7m", ".asice", ".xml"), 10_000_000, 5_000_000)


def _doc(entry: str, data: bytes) -> Document:
    return Document(entry=entry, file_id=f"id-{entry}", sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data), dev=1, ino=1, attempts=0)


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as package:
        for name, data in entries.items():
            package.writestr(name, data)
    return path


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


def _run(tmp_path: Path, entries: dict[str, bytes], documents: list[Document],
         remote: dict[str, RemoteDocument] | None = None, limits: Limits = LIMITS,
         ) -> tuple[list, Log, Path]:
    staging = tmp_path / "staging"
    staging.mkdir()
    log = Log()
    results = extract(_zip(tmp_path / "package.zip", entries), staging, tuple(documents),
                      remote or {}, limits, "2123", log)
    return results, log, staging


def test_signed_documents_and_detached_signatures_are_taken(tmp_path: Path) -> None:
    """A signed PDF is taken as signed; an unchanged file with NAME.p7s as original plus
    signature; hashes are those of the bytes extracted."""
    pdf, txt = b"%PDF-original", b"plain text"
    documents = [_doc("0001_a.pdf", pdf), _doc("0002_b.txt", txt)]
    results, log, staging = _run(tmp_path, {"0001_a.pdf": b"%PDF-signed",
                                            "0002_b.txt": txt, "0002_b.txt.p7s": b"CMS"},
                                 documents)
    signed, detached = results
    assert [o.role for o in signed.outputs] == ["signed"]
    assert signed.outputs[0].sha256 == hashlib.sha256(b"%PDF-signed").hexdigest()
    assert (staging / "0001_a.pdf").read_bytes() == b"%PDF-signed"
    assert [(o.role, o.suffix) for o in detached.outputs] == [("original", ""),
                                                              ("signature", ".p7s")]
    assert detached.outputs[0].sha256 == documents[1].sha256 and log.events == []


def test_only_a_signature_returned_delivers_the_original_beside_it(tmp_path: Path) -> None:
    """A process that returns just NAME.p7m: our original goes out with it."""
    results, _, _ = _run(tmp_path, {"0001_x.xml.p7m": b"CMS"}, [_doc("0001_x.xml", b"<x/>")])
    assert [(o.role, o.suffix) for o in results[0].outputs] == [("original", ""),
                                                                ("signature", ".p7m")]


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "sub/dir.txt",
                                  "bell\x07.txt", "dir/", "..", "back\\slash.txt"])
def test_unsafe_entries_are_never_written(tmp_path: Path, name: str) -> None:
    """An unsafe entry name is logged and skipped; nothing lands outside or beside."""
    results, log, staging = _run(tmp_path, {"0001_a.pdf": b"%PDF-signed", name: b"evil"},
                                 [_doc("0001_a.pdf", b"%PDF")])
    assert results[0].ok
    assert [e for e, _ in log.events] == ["package.unsafe_entry"]
    assert sorted(p.name for p in staging.iterdir()) == ["0001_a.pdf"]
    assert not (tmp_path / "evil.txt").exists()


def test_duplicate_entries_are_never_used(tmp_path: Path) -> None:
    """Two entries of one name: neither is written (which is genuine cannot be told), and
    that document fails as ambiguous."""
    package = tmp_path / "package.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("0001_a.pdf", b"first")
        with pytest.warns(UserWarning):
            archive.writestr("0001_a.pdf", b"second")
    staging = tmp_path / "staging"
    staging.mkdir()
    log = Log()
    results = extract(package, staging, (_doc("0001_a.pdf", b"x"),), {}, LIMITS, "1", log)
    assert not (staging / "0001_a.pdf").exists()
    assert results[0].error_code == "ambiguous"
    assert [e for e, _ in log.events] == ["package.unsafe_entry", "package.unsafe_entry"]


def test_extra_entries_are_named_in_the_log_and_skipped(tmp_path: Path) -> None:
    """An entry that matches no uploaded name is not written."""
    results, log, staging = _run(tmp_path, {"0001_a.pdf": b"s", "report.html": b"<html>"},
                                 [_doc("0001_a.pdf", b"x")])
    assert log.events == [("package.extra_entry", {"batch": "2123", "entry": "report.html"})]
    assert not (staging / "report.html").exists()


def test_not_signed_and_missing_documents_fail_alone(tmp_path: Path) -> None:
    """signingResult_Success false, or no entry at all: that document fails, others pass."""
    documents = [_doc("0001_a.pdf", b"a"), _doc("0002_b.pdf", b"b"), _doc("0003_c.pdf", b"c"),
                 _doc("0004_d.pdf", b"d")]
    remote = {"0002_b.pdf": RemoteDocument("2", "0002_b.pdf", False, False),
              "0004_d.pdf": RemoteDocument("4", "0004_d.pdf", False, False)}
    results, _, _ = _run(tmp_path, {"0001_a.pdf": b"signed a", "0004_d.pdf": b"but here"},
                         documents, remote)
    assert results[0].ok
    assert results[1].error_code == "not_signed" and results[1].provider_document == "2"
    assert results[2].error_code == "missing"
    # Reported as not signed, yet returned: never taken, never retried blindly.
    assert results[3].error_code == "contradictory"


def test_not_signed_passes_on_seals_reason_and_says_what_to_do(tmp_path: Path) -> None:
    """A document SEAL did not sign carries SEAL's own reason when it gave one, else says it
    gave none and whom to ask; either way it says a retry cannot sign it twice."""
    documents = [_doc("0001_a.pdf", b"a"), _doc("0002_b.pdf", b"b")]
    remote = {"0001_a.pdf": RemoteDocument("1", "0001_a.pdf", False, False,
                                           reason="signingResult_Message: PDF is encrypted"),
              "0002_b.pdf": RemoteDocument("2", "0002_b.pdf", False, False)}
    results, _, _ = _run(tmp_path, {}, documents, remote)
    given, silent = (r.error_message for r in results)
    assert "SEAL did not sign it (signingResult_Message: PDF is encrypted)" in given
    assert "gave no reason" in silent and "document 2 of batch 2123" in silent
    for message in (given, silent):
        assert "`folderseal retry`" in message and "cannot be signed twice" in message


def test_a_zip_bomb_fails_the_batch(tmp_path: Path) -> None:
    """An entry that unpacks beyond max_entry_bytes fails the whole batch with a reason."""
    limits = Limits(LIMITS.suffixes, 10_000_000, 1_000_000)
    with pytest.raises(ProviderError) as caught:
        _run(tmp_path, {"0001_a.pdf": b"\0" * 5_000_000}, [_doc("0001_a.pdf", b"x")],
             limits=limits)
    assert caught.value.code == "package_too_big"


def test_a_bomb_that_lies_about_its_size_is_caught_while_extracting(tmp_path: Path) -> None:
    """A ZIP whose header understates an entry's size is stopped by counting real bytes."""
    package = _zip(tmp_path / "lying.zip", {"0001_a.pdf": b"\0" * 3_000_000})
    data = bytearray(package.read_bytes())
    # Rewrite the declared uncompressed size (central directory) to a small number.
    at = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, at + 24, 10)
    package.write_bytes(bytes(data))
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(ProviderError):
        extract(package, staging, (_doc("0001_a.pdf", b"x"),), {},
                Limits(LIMITS.suffixes, 1_000_000, 1_000_000), "1", Log())
    assert not (staging / "0001_a.pdf").exists()


def test_not_a_zip_fails_the_batch(tmp_path: Path) -> None:
    """A package that is not a readable ZIP fails the batch."""
    (tmp_path / "package.zip").write_bytes(b"<html>gateway error</html>")
    (tmp_path / "staging").mkdir()
    with pytest.raises(ProviderError) as caught:
        extract(tmp_path / "package.zip", tmp_path / "staging", (_doc("a.pdf", b"x"),), {},
                LIMITS, "1", Log())
    assert caught.value.code == "bad_package"


@pytest.mark.parametrize(("name", "reason"), [("", "empty"), ("a/b", "path"),
                                               ("..x", "parent"), ("tab\t.pdf", "control")])
def test_unsafe_reasons(name: str, reason: str) -> None:
    """unsafe() names why a name is refused."""
    assert reason in unsafe(name, set())
