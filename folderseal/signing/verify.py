"""Checks of signed outputs, for ``folderseal verify``.

Only cryptographic integrity is checked, never trust: a trial seal is self-signed and
its outputs must still verify. Nothing is fetched from the network.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESIndeterminate
from pyhanko.sign.general import (
    NonexistentAttributeError,
    check_ess_certid,
    find_unique_cms_attribute,
)
from pyhanko.sign.validation import (
    SignatureCoverageLevel,
    async_validate_detached_cms,
    validate_pdf_signature,
)
from pyhanko.sign.validation.status import StandardCMSSignatureStatus
from pyhanko_certvalidator import ValidationContext

__all__ = ["Verdict", "verify_detached", "verify_pdf"]

_CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a check: ``ok``, one line saying why, and (when ok) the SHA-256
    fingerprint of the certificate that made the (last) signature."""

    ok: bool
    detail: str
    fingerprint: str = ""


# pyHanko logs a warning with a full traceback whenever a signer is not trusted, which
# for verify (trust is out of scope) is always. Dropped only inside verify's own calls.
_quiet_trust_warnings: ContextVar[bool] = ContextVar("folderseal_quiet_trust", default=False)


class _TrustNoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        noise = isinstance(record.msg, str) and record.msg.startswith("Validation error")
        return not (noise and _quiet_trust_warnings.get())


logging.getLogger("pyhanko.sign.validation.generic_cms").addFilter(_TrustNoiseFilter())


@contextmanager
def _quiet() -> Iterator[None]:
    token = _quiet_trust_warnings.set(True)
    try:
        yield
    finally:
        _quiet_trust_warnings.reset(token)


def _context() -> ValidationContext:
    # No trust roots and no fetching: trust is out of scope, and verify must work offline.
    return ValidationContext(trust_roots=[], allow_fetching=False, revocation_mode="soft-fail")


def verify_pdf(path: Path) -> Verdict:
    """Every signature in the PDF is intact and valid, and the last one covers the whole file."""
    with _quiet():
        return _verify_pdf(path)


def verify_detached(content: Path, signature: Path) -> Verdict:
    """The detached CMS signature is valid over ``content`` and carries signing-certificate-v2."""
    with _quiet():
        return _verify_detached(content, signature)


def _verify_pdf(path: Path) -> Verdict:
    try:
        with path.open("rb") as stream:
            reader = PdfFileReader(stream, strict=False)
            signatures = reader.embedded_regular_signatures
            if not signatures:
                return Verdict(False, f"{path.name}: no signature in this PDF")
            for number, embedded in enumerate(signatures, start=1):
                status = validate_pdf_signature(embedded, _context(), skip_diff=True)
                if not status.intact:
                    why = "the signed bytes changed after signing"
                elif not status.valid:
                    why = "the signature value is not valid"
                else:
                    why = _timestamp_problem(status)
                if why:
                    return Verdict(False, f"signature {number} of {len(signatures)} fails: {why}")
            last, last_status = signatures[-1], status
            if last_status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
                return Verdict(
                    False, "the last signature does not cover the whole file (bytes were added)"
                )
            subfilter = str(last.sig_object.get("/SubFilter", "?")).lstrip("/")
    except OSError as exc:
        return Verdict(False, f"cannot read {path}: {exc.strerror or exc}")
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        return Verdict(False, f"{path.name} cannot be checked as a signed PDF: {_first_line(exc)}")
    kind = "PAdES" if subfilter == "ETSI.CAdES.detached" else "PDF"
    return Verdict(
        True,
        f"{kind} signature valid ({subfilter}, {len(signatures)} signature(s)), "
        f"covers the whole file, {_describe(last_status)}",
        _fingerprint(last_status),
    )


def _verify_detached(content: Path, signature: Path) -> Verdict:
    try:
        der = signature.read_bytes()
        info = cms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            return Verdict(False, f"{signature.name} is not a CMS SignedData signature")
        signed_data: cms.SignedData = info["content"]
        if signed_data["encap_content_info"]["content"].native is not None:
            return Verdict(False, f"{signature.name} embeds its content; it is not detached")
        with content.open("rb") as stream:
            status = asyncio.run(
                async_validate_detached_cms(stream, signed_data, _context(), chunk_size=_CHUNK_SIZE)
            )
    except OSError as exc:
        return Verdict(False, f"cannot read {exc.filename or content}: {exc.strerror or exc}")
    except (ValueError, KeyError, TypeError) as exc:
        return Verdict(
            False, f"{signature.name} is not a readable CMS signature: {_first_line(exc)}"
        )
    if not status.intact:
        return Verdict(False, f"{content.name} does not match the signature (content changed)")
    if not status.valid:
        return Verdict(False, f"{signature.name}: the signature value is not valid")
    if problem := _timestamp_problem(status):
        return Verdict(False, f"{signature.name}: {problem}")
    if not _has_signing_certificate_v2(signed_data, status):
        return Verdict(
            False, "valid CMS signature, but not CAdES: no ESS signing-certificate-v2 attribute"
        )
    return Verdict(True, f"CAdES detached signature valid, {_describe(status)}",
                   _fingerprint(status))


def _fingerprint(status: StandardCMSSignatureStatus) -> str:
    return hashlib.sha256(status.signing_cert.dump()).hexdigest()


def _has_signing_certificate_v2(
    signed_data: cms.SignedData, status: StandardCMSSignatureStatus
) -> bool:
    signed_attrs = signed_data["signer_infos"][0]["signed_attrs"]
    try:
        value = find_unique_cms_attribute(signed_attrs, "signing_certificate_v2")
    except NonexistentAttributeError:
        return False
    certs = value["certs"]
    # The first ESSCertIDv2 must name the certificate that actually signed.
    return len(certs) > 0 and bool(check_ess_certid(status.signing_cert, certs[0]))


def _describe(status: StandardCMSSignatureStatus) -> str:
    der = status.signing_cert.dump()
    subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    timestamp = status.timestamp_validity
    if timestamp is None:
        return f"signer {subject}"
    return f"signer {subject}, time-stamped {timestamp.timestamp.isoformat()}"


def _timestamp_problem(status: StandardCMSSignatureStatus) -> str:
    """Why the signature's algorithms or its time-stamp fail, or "" if they are good.

    pyHanko marks an algorithm a verifier must refuse (Ed25519 over SHA-256, a weak
    digest) as a trust problem and still calls the signature valid; trust itself
    (a chain to a root the verifier knows) is not what ``verify`` judges."""
    if status.trust_problem_indic == AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE:
        return ("its algorithms are not allowed (a digest or signature mechanism "
                "verifiers refuse): have it signed again with a seal of an RSA or EC key")
    timestamp = status.timestamp_validity
    if timestamp is None or (timestamp.intact and timestamp.valid):
        return ""
    return "its signature time-stamp is not valid"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
