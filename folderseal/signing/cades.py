"""Detached CAdES signatures (CAdES-BES / baseline B-B, or B-T with a time-stamp server).

The content is hashed in fixed-size chunks, so memory stays flat whatever the file
size. The CMS SignedData is built from asn1crypto types with the signed attributes
CAdES requires (content-type, message-digest, signing-time and ESS
signing-certificate-v2), exactly as pyHanko builds them but without its general
machinery (:meth:`~folderseal.signing.heldkey.HeldKeySigner.signed_attributes_der`); with a
time-stamp server, pyHanko's client fetches the signature time-stamp token (B-T).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from asn1crypto import cms

from folderseal.core import files

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
    timestamper = timestamper_for(timestamp_url)  # a bad URL fails before any work
    signer = credentials.signer
    signer.check_sha256()
    digest = _sha256_stream(src)
    # Explicit UTC rather than the host's local zone.
    signed_attrs = signer.signed_attributes_der(digest, datetime.now(UTC))
    signature = signer.sign_raw(signed_attrs, "sha256")
    unsigned_attrs = None
    if timestamper is not None:  # B-T: the time-stamp server countersigns the signature
        token = run_with_tsa(
            timestamper.async_timestamp(hashlib.sha256(signature).digest(), "sha256"),
            timestamp_url)
        unsigned_attrs = cms.CMSAttributes([cms.CMSAttribute(
            {"type": "signature_time_stamp_token", "values": [token]})])
    der = signer.detached_signed_data(signed_attrs, signature, unsigned_attrs)
    return DetachedSignature(der=der, content_sha256=digest.hex())


def _sha256_stream(src: BinaryIO) -> bytes:
    h = hashlib.sha256()
    try:  # sized to the file, when it is one
        buf = files.read_buffer(src.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
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
