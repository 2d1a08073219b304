"""The signed package SEAL returns: checked entry by entry before anything is written.

The package is untrusted input. It must be a readable ZIP; an entry is written only
if its name is flat and safe (no folders, no ``..``, not absolute, no control
characters, not a duplicate) and is one of the names uploaded, or an uploaded name
plus a signature suffix (``.p7s``…), which is delivered beside that document as its
signature. Anything else is named in the log and never written. Sizes are bounded
per entry and in total, counting the bytes actually extracted (a ZIP's own size
fields may lie): a zip bomb fails the batch with a reason.

A document the provider reports as not signed (``signingResult_Success`` false), or
that is missing from the package, fails alone; the rest of the batch is delivered.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from folderseal.core import files
from folderseal.core.errors import ProviderError
from folderseal.core.model import DocumentResult, Output
from folderseal.providers import Document
from folderseal.providers.seal.parse import RemoteDocument

MAX_ENTRIES_PER_DOCUMENT = 10


@dataclass(frozen=True, slots=True)
class Limits:
    suffixes: tuple[str, ...]
    max_total: int
    max_entry: int


def unsafe(name: str, seen: set[str]) -> str:
    """Why an entry name must not be written ("" if it may)."""
    if not name:
        return "an empty name"
    if name.endswith("/") or "/" in name or "\\" in name:
        return "a folder or a path"
    if name in (".", "..") or name.startswith(".."):
        return "a parent reference"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "control characters"
    if name in seen:
        return "a duplicate"
    return ""


def extract(package: Path, staging: Path, documents: tuple[Document, ...],
            remote: dict[str, RemoteDocument], limits: Limits, batch: str,
            warn: Callable[..., None]) -> list[DocumentResult]:
    """Validate the package, extract what belongs to ``documents``, and say per document."""
    try:
        archive = zipfile.ZipFile(package)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ProviderError("bad_package", f"the package of batch {batch} is not a readable "
                            f"ZIP ({exc})", operation="download", batch=batch) from None
    with archive:
        if len(archive.infolist()) > MAX_ENTRIES_PER_DOCUMENT * len(documents) + 100:
            raise ProviderError("package_too_big", f"the package of batch {batch} holds "
                                f"{len(archive.infolist())} entries for {len(documents)} "
                                "documents", operation="download", batch=batch)
        chosen, ambiguous = _choose(archive, {d.entry for d in documents}, limits, batch, warn)
        total = 0
        extracted: dict[str, tuple[str, int]] = {}
        for name, info in chosen.items():
            digest, size = _extract_one(archive, info, staging / name, limits,
                                        limits.max_total - total, batch)
            extracted[name] = (digest, size)
            total += size
    files.fsync_dir(staging)
    return [_result(d, extracted, remote.get(d.entry), staging, limits, batch)
            if d.entry not in ambiguous else
            DocumentResult(entry=d.entry, error_code="ambiguous",
                           error_message="the provider's package holds several entries of "
                           "this name; none was used: check with the provider")
            for d in documents]


def _choose(archive: zipfile.ZipFile, expected: set[str], limits: Limits, batch: str,
            warn: Callable[..., None]) -> tuple[dict[str, zipfile.ZipInfo], set[str]]:
    """The entries to extract, and the documents made ambiguous by duplicate names."""
    chosen: dict[str, zipfile.ZipInfo] = {}
    counts = Counter(info.filename for info in archive.infolist())
    seen: set[str] = set()
    declared = 0
    for info in archive.infolist():
        name = info.filename
        # A name given twice is ambiguous: neither copy is written (the document fails).
        problem = "a duplicate" if counts[name] > 1 else unsafe(name, seen)
        seen.add(name)
        if problem:
            warn("package.unsafe_entry", batch=batch, entry=name, reason=problem)
            continue
        base = next((name[: -len(s)] for s in limits.suffixes
                     if name.lower().endswith(s.lower()) and name[: -len(s)] in expected), None)
        if name not in expected and base is None:
            warn("package.extra_entry", batch=batch, entry=name)
            continue
        declared += info.file_size
        if info.file_size > limits.max_entry or declared > limits.max_total:
            raise _bomb(batch, name)
        chosen[name] = info
    ambiguous = {name for name, n in counts.items() if n > 1}
    ambiguous |= {e for e in expected if any(a.startswith(e) for a in ambiguous)}
    return chosen, ambiguous


def _extract_one(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, limits: Limits,
                 room: int, batch: str) -> tuple[str, int]:
    """Extract one entry (streamed, hashed, counted, fsynced); its sha256 and size."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with archive.open(info) as entry:
            while chunk := entry.read(files.CHUNK):
                size += len(chunk)
                if size > min(limits.max_entry, room):
                    raise _bomb(batch, info.filename)
                digest.update(chunk)
                files.write_all(fd, chunk)
        os.fsync(fd)
    except ProviderError:
        dest.unlink(missing_ok=True)
        raise
    except OSError:
        dest.unlink(missing_ok=True)
        raise  # our disk, not the package
    except Exception as exc:  # noqa: BLE001 - bad CRC, truncated, bad deflate, encrypted…
        dest.unlink(missing_ok=True)
        raise ProviderError("bad_package", f"entry {info.filename!r} of the package of batch "
                            f"{batch} cannot be read ({exc})", operation="download",
                            batch=batch) from None
    finally:
        os.close(fd)
    return digest.hexdigest(), size


def _bomb(batch: str, name: str) -> ProviderError:
    return ProviderError("package_too_big", f"the package of batch {batch} unpacks beyond the "
                         f"limits (entry {name!r}; max_entry_bytes / max_package_bytes): a "
                         "zip bomb, or a limit to raise", operation="download", batch=batch)


def not_signed_message(remote: RemoteDocument, batch: str) -> str:
    """SEAL's own reason if it gave one, and what to do: it was not signed, so a retry
    (a new batch) cannot sign it twice."""
    said = (f"SEAL did not sign it ({remote.reason})" if remote.reason else
            f"SEAL did not sign it (signingResult_Success false) and gave no reason: ask "
            f"SEAL's administrator why document {remote.id} of batch {batch} failed (a "
            "damaged or password-protected file is a common cause)")
    return (f"{said}. Once the cause is fixed, `folderseal retry` it (the id is in "
            "`folderseal status`): it goes into a new batch, and cannot be signed twice")


def _result(document: Document, extracted: dict[str, tuple[str, int]],
            remote: RemoteDocument | None, staging: Path, limits: Limits,
            batch: str) -> DocumentResult:
    provider_document = remote.id if remote else ""
    returned = any(name == document.entry or name.startswith(document.entry)
                   for name in extracted)
    if remote is not None and remote.success is False:
        if returned or remote.signed:
            return DocumentResult(entry=document.entry, error_code="contradictory",
                                  error_message="the provider reports it was not signed "
                                  "(signingResult_Success false) yet returned a result or "
                                  "marked it signed: check with the provider",
                                  provider_document=provider_document)
        return DocumentResult(entry=document.entry, error_code="not_signed",
                              error_message=not_signed_message(remote, batch),
                              provider_document=provider_document)
    signatures = [
        Output(role="signature", staged=str(staging / (document.entry + suffix)), suffix=suffix,
               sha256=extracted[document.entry + suffix][0],
               bytes=extracted[document.entry + suffix][1], synced=True)
        for suffix in limits.suffixes if document.entry + suffix in extracted
    ]
    main = extracted.get(document.entry)
    if main is None and not signatures:
        return DocumentResult(entry=document.entry, error_code="missing",
                              error_message="the provider's package holds no result for it",
                              provider_document=provider_document)
    if main is None or (signatures and main[0] == document.sha256):
        # Unchanged (or not returned) beside a detached signature: deliver our original.
        first = Output(role="original", staged="", suffix="", sha256=document.sha256,
                       bytes=document.size)
    else:
        first = Output(role="signed", staged=str(staging / document.entry), suffix="",
                       sha256=main[0], bytes=main[1], synced=True)
    return DocumentResult(entry=document.entry, outputs=(first, *signatures),
                          provider_document=provider_document)
