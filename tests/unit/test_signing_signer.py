"""Tests for folderseal.signing.signer: certificates described for sidecars, read back."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from folderseal.signing import describe_certificate, signer_of
from tests.pdfs import make_pdf

NOW = datetime.datetime.now(datetime.UTC)


def _certificate(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey,
                 signing_key: ec.EllipticCurvePrivateKey, serial: int) -> bytes:
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=1))
            .sign(signing_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_a_certificate_issued_by_a_ca_is_not_self_signed() -> None:
    """A seal issued by a CA: its subject and issuer differ, and it is not self-signed; the
    serial is upper-case hex of even length, as openssl prints it."""
    ca_key, seal_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    signer = describe_certificate(_certificate("Seal", "Some CA", seal_key, ca_key, 0xABC))
    assert (signer.subject, signer.issuer) == ("CN=Seal", "CN=Some CA")
    assert signer.serial_number == "0ABC" and not signer.self_signed
    assert len(signer.fingerprint_sha256) == 64


def test_a_certificate_that_only_names_itself_as_issuer_is_not_self_signed() -> None:
    """Issuer equal to subject is not enough: its own key must verify it."""
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    assert describe_certificate(_certificate("Seal", "Seal", key, key, 1)).self_signed
    assert not describe_certificate(_certificate("Seal", "Seal", key, other, 1)).self_signed


def test_nothing_is_read_from_an_unsigned_or_unreadable_output(tmp_path: Path) -> None:
    """An unsigned PDF, a file that is no PDF and a .p7s that is no CMS give no signer."""
    make_pdf(tmp_path / "plain.pdf")
    (tmp_path / "fake.pdf").write_bytes(b"SIGNED:not a pdf")
    (tmp_path / "x.p7s").write_bytes(b"\x30\x03\x02\x01\x00")
    for name in ("plain.pdf", "fake.pdf", "x.p7s", "missing.pdf", "note.txt"):
        assert signer_of(tmp_path / name) is None, name
