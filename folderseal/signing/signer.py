"""Who sealed: a signing certificate described for the sidecar, and read back from outputs.

:func:`describe_certificate` turns a certificate into the sidecar's ``signer`` (subject, issuer,
serial number, SHA-256 fingerprint, self-signed or not). :func:`signer_of` reads the
certificate a signed output was made with, without judging trust: the last signature
of a PDF (the seal is appended last), or the signer of a CMS signature file (``.p7s``,
``.p7m``). It is used where a provider reports nothing about its certificate (SEAL).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from folderseal.core.model import Signer

__all__ = ["describe_certificate", "signer_of"]

CMS_SUFFIXES = (".p7s", ".p7m")


def describe_certificate(der: bytes) -> Signer:
    """The sidecar's description of the certificate whose DER encoding is ``der``."""
    cert = x509.load_der_x509_certificate(der)
    serial = f"{cert.serial_number:X}"
    return Signer(subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
                  serial_number=serial.zfill(len(serial) + len(serial) % 2),
                  fingerprint_sha256=hashlib.sha256(der).hexdigest(),
                  self_signed=_self_signed(cert))


def _self_signed(cert: x509.Certificate) -> bool:
    """Issued by itself: its issuer is its subject and its own key verifies it."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def signer_of(path: Path) -> Signer | None:
    """The signer of a signed PDF or a CMS signature file; None if none can be read."""
    # pyHanko takes half a second to import: only reading outputs back needs it.
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.general import extract_certificate_info

    try:
        if path.name.lower().endswith(".pdf"):
            with path.open("rb") as stream:
                signatures = PdfFileReader(stream, strict=False).embedded_regular_signatures
                if not signatures:
                    return None
                return describe_certificate(signatures[-1].signer_cert.dump())
        if path.name.lower().endswith(CMS_SUFFIXES):
            info = cms.ContentInfo.load(path.read_bytes())
            signer = extract_certificate_info(info["content"]).signer_cert
            return describe_certificate(signer.dump())
    except (OSError, PdfError, ValueError, KeyError, TypeError, IndexError):
        return None
    return None
