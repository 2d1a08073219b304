"""Signing material held in memory: the private key, its certificate and the chain.

The private key is parsed once, when the seal is loaded. pyHanko's stock
``SimpleSigner`` parses it again from DER on every signature, and for RSA that parse
includes a key consistency check costing tens of milliseconds; ``HeldKeySigner``
signs with the parsed key object instead, and caches the certificate-only parts of
the CMS structure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asn1crypto import algos, cms, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.sign import attributes, general
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import pdf_cms
from pyhanko.sign.signers.pdf_cms import SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.util import get_pyca_cryptography_hash, process_pss_params

from folderseal.errors import ConfigError

__all__ = ["HeldKeySigner", "Seal", "SealMaterialError", "SigningKey"]

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


class SealMaterialError(ConfigError):
    """The seal's key or certificate file cannot be used; the message says which and why."""


class _CachedSigningCertificateV2(attributes.SigningCertificateV2Provider):
    """Serves the ESS signing-certificate-v2 attribute from DER computed once per seal."""

    def __init__(self, signing_cert: asn1_x509.Certificate, der: bytes) -> None:
        super().__init__(signing_cert=signing_cert)
        self._der = der

    async def get_attribute(self, dry_run: bool = False) -> cms.CMSAttribute:
        # A freshly loaded object: nothing is shared between concurrent signatures.
        return cms.CMSAttribute.load(self._der)


class _CachedCAdESSpec(pdf_cms.CAdESSignedAttributeProviderSpec):
    """pyHanko's CAdES/PAdES attribute set, with the signing-certificate-v2 value cached."""

    def __init__(self, *, v2_der: bytes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._v2_der = v2_der

    def signed_attr_providers(
        self, data_digest: bytes, digest_algorithm: str
    ) -> Iterator[attributes.CMSAttributeProvider]:
        for provider in super().signed_attr_providers(data_digest, digest_algorithm):
            if type(provider) is attributes.SigningCertificateV2Provider:
                yield _CachedSigningCertificateV2(self.signing_cert, self._v2_der)
            else:
                yield provider


class HeldKeySigner(SimpleSigner):
    """A pyHanko ``SimpleSigner`` that signs with an already parsed ``cryptography`` key.

    Besides skipping the per-signature key parse, it caches the two pieces of the CMS
    structure that depend only on the certificate (the SignerIdentifier and the ESS
    signing-certificate-v2 attribute): asn1crypto rebuilds them from a copied issuer
    Name on every signature, about 9 ms of a 12 ms signature on the development machine.
    """

    def __init__(
        self,
        private_key: SigningKey,
        signing_cert: asn1_x509.Certificate,
        chain: Sequence[asn1_x509.Certificate],
    ) -> None:
        registry = SimpleCertificateStore()  # type: ignore[no-untyped-call]  # untyped upstream
        registry.register_multiple(chain)
        # SimpleSigner insists on the asn1crypto form of the key; it is kept only so
        # pyHanko code that reads ``signing_key`` keeps working. sign_raw never uses it.
        super().__init__(
            signing_cert=signing_cert, signing_key=_key_info(private_key), cert_registry=registry
        )
        self._private_key = private_key
        v2_value = general.as_signing_certificate_v2(signing_cert)
        v2_attr = cms.CMSAttribute({"type": "signing_certificate_v2", "values": [v2_value]})
        self._v2_der: bytes = v2_attr.dump()
        self._sid_der: bytes = cms.SignerIdentifier(
            {
                "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                    {"issuer": signing_cert.issuer, "serial_number": signing_cert.serial_number}
                )
            }
        ).dump()

    def __repr__(self) -> str:
        return f"HeldKeySigner(subject={self.subject_name!r})"

    def _signed_attr_provider_spec(
        self,
        attr_settings: Any,
        timestamper: Any = None,
        use_cades: bool = False,
        is_pdf_sig: bool = True,
    ) -> Any:
        # pyHanko's (private) hook choosing the signed attributes. Should a pyHanko
        # upgrade rename it, this override is simply not called: signatures stay
        # correct, only slower (tests/unit/test_engine_seal.py pins the name).
        if self.signed_attr_prov_spec is None and use_cades:
            return _CachedCAdESSpec(
                v2_der=self._v2_der,
                attr_settings=attr_settings,
                signing_cert=self.signing_cert,
                is_pades=is_pdf_sig,
                timestamper=timestamper,
            )
        return super()._signed_attr_provider_spec(
            attr_settings, timestamper=timestamper, use_cades=use_cades, is_pdf_sig=is_pdf_sig
        )

    def signer_info(
        self, digest_algorithm: str, signed_attrs: cms.CMSAttributes, signature: bytes
    ) -> cms.SignerInfo:
        """Build the SignerInfo as pyHanko does, with the SignerIdentifier from cache."""
        if digest_algorithm == "shake256":  # has special parameter rules; leave to pyHanko
            return super().signer_info(digest_algorithm, signed_attrs, signature)
        return cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier.load(self._sid_der),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest_algorithm}),
                "signature_algorithm": self.get_signature_mechanism_for_digest(digest_algorithm),
                "signed_attrs": signed_attrs,
                "signature": signature,
            }
        )

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        """Sign ``data`` with the held key, the mechanism chosen as pyHanko would."""
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm)
        try:
            algo: str = mechanism.signature_algo
        except ValueError:
            algo = mechanism["algorithm"].native
        key = self._private_key
        if algo == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), get_pyca_cryptography_hash(digest_algorithm))
        if algo == "rsassa_pss" and isinstance(key, rsa.RSAPrivateKey):
            pss, hash_algo = process_pss_params(mechanism["parameters"])
            return key.sign(data, pss, hash_algo)
        if algo == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(get_pyca_cryptography_hash(digest_algorithm)))
        if algo == "dsa" and isinstance(key, dsa.DSAPrivateKey):
            return key.sign(data, get_pyca_cryptography_hash(digest_algorithm))
        if algo == "ed25519" and isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        if algo == "ed448" and isinstance(key, ed448.Ed448PrivateKey):
            return key.sign(data)
        raise SigningError(f"signature mechanism {algo} does not fit a {type(key).__name__}")


@dataclass(frozen=True, slots=True, eq=False)  # identity: two loads are two seals
class Seal:
    """A signing key with its certificate and chain, loaded once and reused for every file."""

    private_key: SigningKey = field(repr=False)
    certificate: asn1_x509.Certificate = field(repr=False)
    chain: tuple[asn1_x509.Certificate, ...] = field(repr=False)
    subject: str
    not_after: datetime
    sha256_fingerprint: str
    source: Path
    signer: HeldKeySigner = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once per seal: the signer is stateless between signatures.
        object.__setattr__(
            self, "signer", HeldKeySigner(self.private_key, self.certificate, self.chain)
        )

    @classmethod
    def from_pkcs12(cls, path: Path, password: bytes | None) -> Seal:
        """Load a seal from a PKCS#12 (.p12/.pfx) file."""
        data = _read(path, "PKCS#12 file")
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
        except ValueError as exc:
            # cryptography reports unparseable input as "Could not deserialize";
            # anything else is a MAC or decryption failure, i.e. the password.
            if "deserialize" in str(exc):
                raise SealMaterialError(
                    f"{path} is not a PKCS#12 file; give a .p12/.pfx file with the seal's "
                    "key and certificate, or use a PEM key and certificate instead"
                ) from None
            hint = "it needs one: set the password" if password is None else "wrong password?"
            raise SealMaterialError(f"cannot open PKCS#12 file {path}: {hint}") from None
        if key is None:
            raise SealMaterialError(f"PKCS#12 file {path} holds no private key")
        if cert is None:
            raise SealMaterialError(f"PKCS#12 file {path} holds no certificate for its key")
        return cls._build(key, [cert, *extra], path)

    @classmethod
    def from_pem(cls, key_path: Path, cert_path: Path, password: bytes | None) -> Seal:
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
            raise SealMaterialError(f"cannot open private key file {key_path}: {hint}") from None
        except ValueError as exc:
            # A wrong password usually fails the decryption, but now and then (about one
            # time in 256) it decrypts to garbage that fails to parse instead.
            encrypted = b"ENCRYPTED" in key_data and password is not None
            if encrypted or "password" in str(exc).lower() or "decrypt" in str(exc).lower():
                raise SealMaterialError(
                    f"cannot open private key file {key_path}: wrong password?"
                ) from None
            raise SealMaterialError(
                f"{key_path} is not a PEM private key; give a file starting with "
                "'-----BEGIN PRIVATE KEY-----' (or an RSA/EC/ENCRYPTED variant)"
            ) from None
        try:
            certs = x509.load_pem_x509_certificates(cert_data)
        except ValueError:
            raise SealMaterialError(
                f"{cert_path} is not a PEM certificate file; give a file starting with "
                "'-----BEGIN CERTIFICATE-----', the seal's certificate first"
            ) from None
        return cls._build(key, certs, key_path)

    @classmethod
    def _build(cls, key: object, certs: Sequence[x509.Certificate], source: Path) -> Seal:
        if not isinstance(key, _SIGNING_KEY_TYPES):
            raise SealMaterialError(
                f"the key in {source} is a {type(key).__name__}, which cannot sign; "
                "use an RSA, EC, Ed25519, Ed448 or DSA key"
            )
        cert = certs[0]
        if cert.public_key() != key.public_key():
            raise SealMaterialError(
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
        raise SealMaterialError(f"{what} {path} not found; check the path") from None
    except IsADirectoryError:
        raise SealMaterialError(f"{what} {path} is a directory, not a file") from None
    except PermissionError:
        raise SealMaterialError(
            f"{what} {path} cannot be read: permission denied for this user"
        ) from None
    except OSError as exc:
        raise SealMaterialError(f"{what} {path} cannot be read: {exc.strerror}") from None


def _key_info(key: SigningKey) -> keys.PrivateKeyInfo:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return keys.PrivateKeyInfo.load(der)
