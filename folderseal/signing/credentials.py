"""Signing material held in memory: the private key, its certificate and the chain.

The private key is parsed once, when the seal is loaded; :attr:`Credentials.signer` (a
:class:`~folderseal.signing.heldkey.HeldKeySigner`) signs with that parsed key. Loading a
seal needs only ``cryptography``: the signer, and pyHanko with it (about half a second
to import), is built on first use, so commands that only look at the seal stay quick.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from folderseal.core.errors import ConfigError

if TYPE_CHECKING:
    from folderseal.signing.heldkey import HeldKeySigner

__all__ = ["Credentials", "CredentialsError", "SigningKey"]

SigningKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)
_SIGNING_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)


class CredentialsError(ConfigError):
    """The seal's key or certificate file cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True, eq=False)  # identity: two loads are two seals
class Credentials:
    """A signing key with its certificate and chain, loaded once and reused for every file."""

    private_key: SigningKey = field(repr=False)
    certificate: asn1_x509.Certificate = field(repr=False)
    chain: tuple[asn1_x509.Certificate, ...] = field(repr=False)
    subject: str
    not_after: datetime
    sha256_fingerprint: str
    source: Path
    _signer: HeldKeySigner | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def signer(self) -> HeldKeySigner:
        """The pyHanko signer for this seal, built once: it keeps no state between
        signatures."""
        if self._signer is None:
            from folderseal.signing.heldkey import HeldKeySigner  # pyHanko: only to sign

            object.__setattr__(
                self, "_signer", HeldKeySigner(self.private_key, self.certificate, self.chain))
        assert self._signer is not None
        return self._signer

    @classmethod
    def from_pkcs12(cls, path: Path, password: bytes | None) -> Credentials:
        """Load a seal from a PKCS#12 (.p12/.pfx) file."""
        data = _read(path, "PKCS#12 file")
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
        except ValueError as exc:
            # cryptography reports unparseable input as "Could not deserialize";
            # anything else is a MAC or decryption failure, i.e. the password.
            if "deserialize" in str(exc):
                raise CredentialsError(
                    f"{path} is not a PKCS#12 file; give a .p12/.pfx file with the seal's "
                    "key and certificate, or use a PEM key and certificate instead"
                ) from None
            hint = "it needs one: set the password" if password is None else "wrong password?"
            raise CredentialsError(f"cannot open PKCS#12 file {path}: {hint}") from None
        if key is None:
            raise CredentialsError(f"PKCS#12 file {path} holds no private key")
        if cert is None:
            raise CredentialsError(f"PKCS#12 file {path} holds no certificate for its key")
        return cls._build(key, [cert, *extra], path)

    @classmethod
    def from_pem(cls, key_path: Path, cert_path: Path, password: bytes | None) -> Credentials:
        """Load a seal from a PEM private key and a PEM certificate file (signer first)."""
        key_data = _read(key_path, "private key file")
        cert_data = _read(cert_path, "certificate file")
        try:
            key = serialization.load_pem_private_key(key_data, password)
        except TypeError:
            # cryptography raises TypeError exactly for "password given or missing".
            hint = (
                "it is encrypted: set the password"
                if password is None
                else "it is not encrypted: leave the password empty"
            )
            raise CredentialsError(f"cannot open private key file {key_path}: {hint}") from None
        except ValueError as exc:
            # A wrong password usually fails the decryption, but now and then (about one
            # time in 256) it decrypts to garbage that fails to parse instead.
            encrypted = b"ENCRYPTED" in key_data and password is not None
            if encrypted or "password" in str(exc).lower() or "decrypt" in str(exc).lower():
                raise CredentialsError(
                    f"cannot open private key file {key_path}: wrong password?"
                ) from None
            raise CredentialsError(
                f"{key_path} is not a PEM private key; give a file starting with "
                "'-----BEGIN PRIVATE KEY-----' (or an RSA/EC/ENCRYPTED variant)"
            ) from None
        try:
            certs = x509.load_pem_x509_certificates(cert_data)
        except ValueError:
            raise CredentialsError(
                f"{cert_path} is not a PEM certificate file; give a file starting with "
                "'-----BEGIN CERTIFICATE-----', the seal's certificate first"
            ) from None
        return cls._build(key, certs, key_path)

    @classmethod
    def _build(cls, key: object, certs: Sequence[x509.Certificate], source: Path) -> Credentials:
        if not isinstance(key, _SIGNING_KEY_TYPES):
            raise CredentialsError(
                f"the key in {source} is a {type(key).__name__}, which cannot sign; "
                "use an RSA, EC, Ed25519, Ed448 or DSA key"
            )
        cert = certs[0]
        if cert.public_key() != key.public_key():
            raise CredentialsError(
                f"the certificate for {source} does not belong to its private key; "
                "put the seal's own certificate first"
            )
        der = serialization.Encoding.DER
        as_asn1 = [asn1_x509.Certificate.load(c.public_bytes(der)) for c in certs]
        signing_cert, chain = as_asn1[0], tuple(as_asn1[1:])
        return cls(
            private_key=key,
            certificate=signing_cert,
            chain=chain,
            subject=cert.subject.rfc4514_string(),
            not_after=cert.not_valid_after_utc.astimezone(UTC),
            sha256_fingerprint=hashlib.sha256(signing_cert.dump()).hexdigest(),
            source=source,
        )

    def certificates(self) -> tuple[asn1_x509.Certificate, ...]:
        """The signing certificate followed by the chain, as embedded in signatures."""
        return (self.certificate, *self.chain)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CredentialsError(f"{what} {path} not found; check the path") from None
    except IsADirectoryError:
        raise CredentialsError(f"{what} {path} is a directory, not a file") from None
    except PermissionError:
        raise CredentialsError(
            f"{what} {path} cannot be read: permission denied for this user"
        ) from None
    except OSError as exc:
        raise CredentialsError(f"{what} {path} cannot be read: {exc.strerror}") from None
