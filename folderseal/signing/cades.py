"""Detached CAdES signatures (CAdES-BES / baseline B-B, or B-T with a time-stamp server).

The content is hashed in fixed-size chunks, so memory stays flat whatever the file
size; only the 32-byte digest reaches pyHanko, which builds the CMS SignedData with
the signed attributes CAdES requires (content-type, message-digest, signing-time and
ESS signing-certificate-v2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from asn1crypto import cms
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes

from .credentials import Credentials
from .tsa import run_with_tsa, timestamper_for

__all__ = ["CHUNK_SIZE", "DetachedSignature", "sign_detached"]

# Large enough that a 2 GiB file takes ~2000 reads, small enough to stay in cache.
CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DetachedSignature:
    """A DER-encoded CMS SignedData without content, and the SHA-256 of what it signs."""

    der: bytes
    content_sha256: str

    def __repr__(self) -> str:
        return f"DetachedSignature({len(self.der)} bytes, content_sha256={self.content_sha256})"


def sign_detached(credentials: Credentials, src: BinaryIO, *,
                  timestamp_url: str = "") -> DetachedSignature:
    """Sign everything ``src`` yields from its current position; return the DER signature."""
    digest = _sha256_stream(src)
    coro = credentials.signer.async_sign(
        digest,
        "sha256",
        use_pades=True,  # pyHanko's name for "CAdES attributes"; with is_pdf_sig=False
        is_pdf_sig=False,  # it also adds signing-time, which CAdES (unlike PAdES) wants
        timestamper=timestamper_for(timestamp_url),
        # No "content" key: the SignedData carries no encapsulated content (detached).
        encap_content_info={"content_type": "data"},
        # Explicit UTC rather than pyHanko's default of the host's local zone.
        signed_attr_settings=PdfCMSSignedAttributes(signing_time=datetime.now(UTC)),
    )
    content_info: cms.ContentInfo = run_with_tsa(coro, timestamp_url)
    return DetachedSignature(der=content_info.dump(), content_sha256=digest.hex())


def _sha256_stream(src: BinaryIO) -> bytes:
    h = hashlib.sha256()
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    readinto = getattr(src, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(buf)
            if not n:
                break
            h.update(view[:n])
        else:  # a stream without readinto still works, one bytes object per chunk
            chunk = src.read(CHUNK_SIZE)
            if not chunk:
                break
            h.update(chunk)
    return h.digest()
