"""pyHanko's ``SimpleSigner``, signing with a key parsed once.

pyHanko's stock ``SimpleSigner`` parses the private key again from DER on every
signature, and for RSA that parse includes a key consistency check costing tens of
milliseconds; :class:`HeldKeySigner` signs with the parsed key object of a
:class:`~folderseal.signing.credentials.Credentials` instead, and caches the certificate-only parts
of the CMS structure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from asn1crypto import algos, cms, keys
from asn1crypto import x509 as asn1_x509
from asn1crypto.core import UTCTime
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from pyhanko.sign import attributes, general
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import pdf_cms
from pyhanko.sign.signers.pdf_cms import SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.util import get_pyca_cryptography_hash, process_pss_params

from folderseal.signing.credentials import SigningKey

__all__ = ["HeldKeySigner"]


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
        # As pyHanko's SignedData holds them: the chain (its roots too, as pyHanko's
        # ``embed_roots`` has it by default) and the signing certificate.
        held = [cert for cert in chain if cert != signing_cert and
                (self.embed_roots or cert.self_signed == "no")]
        certificates_der = cms.CertificateSet(
            [cms.CertificateChoices(name="certificate", value=cert)
             for cert in [*held, signing_cert]]).dump()
        self._sid_der: bytes = cms.SignerIdentifier(
            {
                "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                    {"issuer": signing_cert.issuer, "serial_number": signing_cert.serial_number}
                )
            }
        ).dump()
        # What every detached signature of this seal holds around its attributes and
        # signature value (detached_signed_data): encoded once.
        version = cms.CMSVersion("v1").dump()
        digest = algos.DigestAlgorithm({"algorithm": "sha256"}).dump()
        self._signed_data_head = b"".join((
            version, _tlv(0x31, digest),
            cms.EncapsulatedContentInfo({"content_type": "data"}).dump(),
            b"\xa0" + certificates_der[1:]))  # [0] IMPLICIT CertificateSet
        self._signer_info_head = version + self._sid_der + digest
        # signed_attributes_der's templates, without and with a signing time.
        self._attr_templates: dict[bool, tuple[bytes, int, int] | None] = {}

    def __repr__(self) -> str:
        return f"HeldKeySigner(subject={self.subject_name!r})"

    # -- detached CAdES without pyHanko's general machinery ------------------------
    # pyHanko builds each signature through attribute providers and an event loop,
    # about 3 ms in all, where the RSA signature itself takes 1 ms; these build exactly
    # what it builds for a detached CAdES signature, straight from asn1crypto types.

    def check_sha256(self) -> None:
        """Refuse, as pyHanko does (SigningError), a key whose signature mechanism fixes
        another digest (Ed25519: SHA-512, Ed448: SHAKE256)."""
        self._check_digest_algorithm("sha256")

    def signed_attributes_der(self, digest: bytes,
                              signing_time: datetime | None = None) -> bytes:
        """``signed_attributes(digest, signing_time).dump()``, put together from a template
        of this seal's attributes: the SHA-256 digest and the time are all that change,
        in places of fixed size, and asn1crypto's building of them costs about as much as
        the RSA signature. A time UTCTime cannot hold is built the long way."""
        stamp = _utc_time(signing_time) if signing_time is not None else b""
        timed = bool(stamp)
        found = None
        if len(digest) == 32 and stamp is not None:
            if timed not in self._attr_templates:
                self._attr_templates[timed] = self._attr_template(timed)
            found = self._attr_templates[timed]
        if found is None:
            return bytes(self.signed_attributes(digest, signing_time).dump())
        template, digest_at, time_at = found
        out = bytearray(template)
        out[digest_at:digest_at + 32] = digest
        if stamp:
            out[time_at:time_at + len(stamp)] = stamp
        return bytes(out)

    def _attr_template(self, timed: bool) -> tuple[bytes, int, int] | None:
        """The attributes for a digest and a time found nowhere else in them, and where
        the two are (None if no such pair turned up: built the long way then)."""
        for second in range(8):
            marker = os.urandom(32)
            when = _TEMPLATE_TIME.replace(second=second) if timed else None
            der = self.signed_attributes(marker, when).dump()
            stamp = b"\x17\x0d" + (_utc_time(when) or b"") if when else b""
            if der.count(marker) == 1 and (not stamp or der.count(stamp) == 1):
                return der, der.index(marker), der.index(stamp) + 2 if stamp else -1
        return None

    def signed_attributes(self, digest: bytes,
                          signing_time: datetime | None = None) -> cms.CMSAttributes:
        """The signed attributes pyHanko makes for content whose SHA-256 is ``digest``:
        content-type, signing-time (given for a detached CAdES-BES signature; a PAdES
        one has the signature dictionary's), message-digest, ESS signing-certificate-v2."""
        when = [] if signing_time is None else [cms.CMSAttribute(
            {"type": "signing_time", "values": [cms.Time({"utc_time": UTCTime(signing_time)})]})]
        return cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            *when,
            cms.CMSAttribute({"type": "message_digest", "values": [digest]}),
            cms.CMSAttribute.load(self._v2_der),
        ])

    async def async_sign(self, data_digest: bytes, digest_algorithm: str, dry_run: bool = False,
                         use_pades: bool = False, timestamper: Any = None,
                         signed_attr_settings: Any = None, is_pdf_sig: bool = True,
                         encap_content_info: Any = None) -> cms.ContentInfo:
        """pyHanko's entry for the CMS of a PDF signature. The plain PAdES baseline B-B
        case (what folderseal signs without a time-stamp server) is built here, as
        :meth:`detached_signed_data` builds it; any other case goes to pyHanko."""
        self._check_digest_algorithm(digest_algorithm)  # as pyHanko's own first step
        plain = signed_attr_settings is None or (
            signed_attr_settings.cades_signed_attrs is None
            and getattr(signed_attr_settings, "adobe_revinfo_attr", None) is None)
        if not (use_pades and is_pdf_sig and plain and not dry_run and timestamper is None
                and encap_content_info is None and digest_algorithm == "sha256"
                and self.signed_attr_prov_spec is None
                and self.unsigned_attr_prov_spec is None):
            return await super().async_sign(
                data_digest, digest_algorithm, dry_run=dry_run, use_pades=use_pades,
                timestamper=timestamper, signed_attr_settings=signed_attr_settings,
                is_pdf_sig=is_pdf_sig, encap_content_info=encap_content_info)
        attrs = self.signed_attributes_der(data_digest)
        signature = self.sign_raw(attrs, "sha256")
        return cms.ContentInfo.load(self.detached_signed_data(attrs, signature))

    def detached_signed_data(self, signed_attrs: bytes, signature: bytes,
                             unsigned_attrs: cms.CMSAttributes | None = None) -> bytes:
        """The DER ContentInfo of a SignedData without content (``signature`` made over
        the DER ``signed_attrs`` with SHA-256), holding the certificates pyHanko would
        put there.

        Everything but the attributes and the signature is the same for every signature
        of this seal, so it is encoded once and the DER put together around them:
        asn1crypto's building and encoding of the whole tree cost more than the RSA
        signature."""
        # Not kept: the mechanism follows the signer's settings (``prefer_pss``).
        mechanism = self.get_signature_mechanism_for_digest("sha256").dump()
        signer_info = _tlv(0x30, b"".join((
            self._signer_info_head,
            b"\xa0" + signed_attrs[1:],  # [0] IMPLICIT: the SET retagged
            mechanism, _tlv(0x04, signature),
            b"\xa1" + unsigned_attrs.dump()[1:] if unsigned_attrs is not None else b"")))
        signed_data = _tlv(0x30, self._signed_data_head + _tlv(0x31, signer_info))
        return _tlv(0x30, _SIGNED_DATA_OID + _tlv(0xA0, signed_data))

    def _signed_attr_provider_spec(
        self,
        attr_settings: Any,
        timestamper: Any = None,
        use_cades: bool = False,
        is_pdf_sig: bool = True,
    ) -> Any:
        # pyHanko's (private) hook choosing the signed attributes. Should a pyHanko
        # upgrade rename it, this override is simply not called: signatures stay
        # correct, only slower (tests/unit/test_signing_seal.py pins the name).
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


_SIGNED_DATA_OID = cms.ContentType("signed_data").dump()
_TEMPLATE_TIME = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)


def _utc_time(when: datetime) -> bytes | None:
    """``when`` as the content of a DER UTCTime (as asn1crypto writes it), or None if
    UTCTime cannot hold it (RFC 5652: from 1950 to 2049 only)."""
    when = when.astimezone(UTC)
    return when.strftime("%y%m%d%H%M%SZ").encode() if 1950 <= when.year < 2050 else None


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER element: its tag, its length (definite), its content."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def _key_info(key: SigningKey) -> keys.PrivateKeyInfo:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return keys.PrivateKeyInfo.load(der)
