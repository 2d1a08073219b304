"""A self-signed trial seal, so folderseal signs something before a real seal is bought.

The certificate says plainly that it is not qualified: it proves integrity, not identity.
"""

from __future__ import annotations

import datetime
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

__all__ = ["TRIAL_COMMON_NAME", "TrialSeal", "make_trial_seal"]

TRIAL_COMMON_NAME = "folderseal trial seal - NOT QUALIFIED"
TRIAL_ORGANIZATION = "folderseal trial"
PKCS12_NAME = "seal.p12"
PASSWORD_NAME = "seal.pass"


@dataclass(frozen=True, slots=True)
class TrialSeal:
    """Where a trial seal was written: the PKCS#12 file and the file holding its password."""

    pkcs12_path: Path
    password_path: Path

    def password(self) -> bytes:
        """The PKCS#12 password, as stored (no trailing newline)."""
        return self.password_path.read_bytes().strip()


def make_trial_seal(directory: Path, *, days: int = 365) -> TrialSeal:
    """Write ``seal.p12`` (RSA-2048, self-signed) and ``seal.pass`` (0600) into ``directory``."""
    if days < 1:
        raise ValueError(f"a trial seal must be valid for at least one day, not {days}")
    p12_path = directory / PKCS12_NAME
    pass_path = directory / PASSWORD_NAME
    for path in (p12_path, pass_path):
        if path.exists():
            raise FileExistsError(
                f"{path} already exists; a trial seal is never overwritten. "
                "Move it away first if you really want a new one."
            )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _self_signed(key, days)
    # URL-safe text so the password survives being pasted into a config file or shell.
    password = secrets.token_urlsafe(24).encode("ascii")
    p12 = pkcs12.serialize_key_and_certificates(
        name=b"folderseal trial seal",
        key=key,
        cert=cert,
        cas=None,
        encryption_algorithm=serialization.BestAvailableEncryption(password),
    )
    # The password goes first: if the second write fails, no unusable .p12 is left behind.
    _write_private(pass_path, password)
    try:
        _write_private(p12_path, p12)
    except BaseException:
        pass_path.unlink(missing_ok=True)
        raise
    return TrialSeal(pkcs12_path=p12_path, password_path=pass_path)


def _self_signed(key: rsa.RSAPrivateKey, days: int) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, TRIAL_COMMON_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, TRIAL_ORGANIZATION),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated a little so a verifier with a slightly slow clock accepts it.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL: never overwrite, even if the file appeared after the check above.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # independent of the umask
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)  # no half-written key material left behind
        raise
