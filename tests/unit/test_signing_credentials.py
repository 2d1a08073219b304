"""Loading signing material into a Seal, the signer built from it, and trial seals."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import stat
from pathlib import Path

import pytest
from asn1crypto import keys
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes, Signer, SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore

from folderseal.core.errors import ConfigError
from folderseal.signing import Credentials, CredentialsError, TrialSeal, make_trial_seal
from folderseal.signing.heldkey import HeldKeySigner
from tests.signing_fixtures import credentials, trial_seal  # noqa: F401 - pytest fixtures

PASSWORD = b"correct horse battery staple"
NOW = datetime.datetime.now(datetime.UTC)


def _cert(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    cn: str,
    issuer_key: rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | None = None,
    issuer_cn: str | None = None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn or cn)])
    signing_key = issuer_key or key
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .sign(signing_key, algorithm)
    )


def _write_pem(
    tmp_path: Path,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    cert: x509.Certificate,
) -> tuple[Path, Path]:
    key_path, cert_path = tmp_path / "seal.key", tmp_path / "seal.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _p12(tmp_path: Path, password: bytes | None) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path = tmp_path / "seal.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(b"t", key, _cert(key, "p12 seal"), None, encryption)
    )
    return path


def test_pkcs12_with_right_password_loads(tmp_path: Path) -> None:
    """A PKCS#12 file opens with its password and exposes subject, expiry and fingerprint."""
    path = _p12(tmp_path, PASSWORD)
    loaded = Credentials.from_pkcs12(path, PASSWORD)
    assert loaded.subject == "CN=p12 seal"
    assert loaded.not_after.tzinfo is not None
    assert loaded.not_after.utcoffset() == datetime.timedelta(0)
    assert abs(loaded.not_after - (NOW + datetime.timedelta(days=30))) < datetime.timedelta(
        seconds=2
    )
    assert loaded.sha256_fingerprint == hashlib.sha256(loaded.certificate.dump()).hexdigest()
    assert isinstance(loaded.private_key, rsa.RSAPrivateKey)
    assert loaded.chain == ()


def test_pkcs12_without_password_loads_with_none(tmp_path: Path) -> None:
    """A PKCS#12 file that has no password opens with password=None."""
    loaded = Credentials.from_pkcs12(_p12(tmp_path, None), None)
    assert loaded.subject == "CN=p12 seal"


def test_pkcs12_wrong_password_is_named_but_not_echoed(tmp_path: Path) -> None:
    """A wrong password gives a CredentialsError naming the file, never the password."""
    path = _p12(tmp_path, PASSWORD)
    wrong = b"hunter2-not-the-password"
    with pytest.raises(CredentialsError) as caught:
        Credentials.from_pkcs12(path, wrong)
    message = str(caught.value)
    assert str(path) in message
    assert "wrong password?" in message
    assert "hunter2" not in message and "hunter2" not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert isinstance(caught.value, ConfigError)


def test_pkcs12_missing_password_says_one_is_needed(tmp_path: Path) -> None:
    """A password-protected PKCS#12 file opened without a password asks for one."""
    with pytest.raises(CredentialsError, match="set the password"):
        Credentials.from_pkcs12(_p12(tmp_path, PASSWORD), None)


def test_missing_file_says_not_found(tmp_path: Path) -> None:
    """A seal path that does not exist is reported as not found, with the path."""
    path = tmp_path / "nowhere.p12"
    with pytest.raises(CredentialsError, match="not found") as caught:
        Credentials.from_pkcs12(path, PASSWORD)
    assert str(path) in str(caught.value)


def test_non_pkcs12_file_is_reported_as_such(tmp_path: Path) -> None:
    """A file that is not PKCS#12 at all says so instead of blaming the password."""
    path = tmp_path / "notes.p12"
    path.write_text("this is a text file, not a key store\n")
    with pytest.raises(CredentialsError, match="not a PKCS#12 file") as caught:
        Credentials.from_pkcs12(path, PASSWORD)
    assert "password" not in str(caught.value).split(";")[0]


def test_pem_key_and_cert_with_chain(tmp_path: Path) -> None:
    """An encrypted PEM key with a PEM file of leaf + CA loads, the CA going into the chain."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _cert(ca_key, "test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(key, "pem seal", issuer_key=ca_key, issuer_cn="test CA")
    key_path, cert_path = tmp_path / "seal.key", tmp_path / "seal.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD),
        )
    )
    cert_path.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    loaded = Credentials.from_pem(key_path, cert_path, PASSWORD)
    assert loaded.subject == "CN=pem seal"
    assert isinstance(loaded.private_key, ec.EllipticCurvePrivateKey)
    assert [c.subject.native["common_name"] for c in loaded.chain] == ["test CA"]
    assert [c.subject.native["common_name"] for c in loaded.certificates()] == [
        "pem seal",
        "test CA",
    ]

    with pytest.raises(CredentialsError, match="wrong password") as caught:
        Credentials.from_pem(key_path, cert_path, b"nope-nope")
    assert "nope-nope" not in str(caught.value)
    with pytest.raises(CredentialsError, match="set the password"):
        Credentials.from_pem(key_path, cert_path, None)


def test_pem_cert_of_another_key_is_refused(tmp_path: Path) -> None:
    """A certificate that does not belong to the private key is refused at load time."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path, cert_path = _write_pem(tmp_path, key, _cert(other, "other"))
    with pytest.raises(CredentialsError, match="does not belong"):
        Credentials.from_pem(key_path, cert_path, None)


def test_pem_garbage_is_reported(tmp_path: Path) -> None:
    """Non-PEM key or certificate files are reported with what was expected."""
    key_path, cert_path = tmp_path / "k.pem", tmp_path / "c.pem"
    key_path.write_text("garbage")
    cert_path.write_text("garbage")
    with pytest.raises(CredentialsError, match="not a PEM private key"):
        Credentials.from_pem(key_path, cert_path, None)


def test_repr_shows_no_key_material(credentials: Credentials) -> None:  # noqa: F811
    """Neither the Seal's nor its signer's repr contains key material."""
    key = credentials.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    secret = str(key.private_numbers().p)[:20]
    for text in (repr(credentials), str(credentials), repr(credentials.signer)):
        assert secret not in text
        assert "private" not in text.lower()
    assert "NOT QUALIFIED" in repr(credentials)


@pytest.mark.parametrize(
    ("kind", "prefer_pss"),
    [("rsa", False), ("rsa", True), ("ec", False), ("ed25519", False)],
)
def test_signer_signs_with_held_key(tmp_path: Path, kind: str, prefer_pss: bool) -> None:
    """HeldKeySigner.sign_raw produces signatures the certificate's public key verifies."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    cert = _cert(key, f"{kind} seal")
    loaded = Credentials.from_pem(*_write_pem(tmp_path, key, cert), None)
    loaded.signer.prefer_pss = prefer_pss
    data = b"signed attributes stand-in"
    signature = loaded.signer.sign_raw(data, "sha256")
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            if prefer_pss
            else padding.PKCS1v15()
        )
        public.verify(signature, data, pad, hashes.SHA256())
        with pytest.raises(InvalidSignature):
            public.verify(signature, data + b"x", pad, hashes.SHA256())
    elif isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(signature, data)


@pytest.mark.parametrize("is_pdf_sig", [True, False], ids=["pades", "cades"])
def test_signer_output_is_byte_identical_to_stock_pyhanko(
    credentials: Credentials,  # noqa: F811
    is_pdf_sig: bool,
) -> None:
    """The cached SignerIdentifier and signing-certificate-v2 give exactly pyHanko's CMS bytes."""
    key_der = credentials.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    stock = SimpleSigner(
        signing_cert=credentials.certificate,
        signing_key=keys.PrivateKeyInfo.load(key_der),
        cert_registry=SimpleCertificateStore(),
    )
    digest = hashlib.sha256(b"document").digest()
    settings = PdfCMSSignedAttributes(signing_time=NOW)

    def cms_of(signer: SimpleSigner) -> bytes:
        coro = signer.async_sign(
            digest,
            "sha256",
            use_pades=True,
            is_pdf_sig=is_pdf_sig,
            signed_attr_settings=settings,
        )
        return bytes(asyncio.run(coro).dump())

    ours = cms_of(credentials.signer)
    assert ours == cms_of(stock)  # RSA PKCS#1 v1.5 is deterministic
    assert b"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x02\x2f" in ours  # signingCertV2 OID


def test_pyhanko_still_calls_the_cached_attribute_hook(credentials: Credentials) -> None:  # noqa: F811
    """pyHanko still has the private hook HeldKeySigner overrides, so the cache is used."""
    assert "_signed_attr_provider_spec" in vars(Signer)
    spec = credentials.signer._signed_attr_provider_spec(
        PdfCMSSignedAttributes(), timestamper=None, use_cades=True, is_pdf_sig=True
    )
    assert type(spec).__name__ == "_CachedCAdESSpec"
    assert isinstance(credentials.signer, HeldKeySigner)


def test_trial_seal_files_and_certificate(tmp_path: Path) -> None:
    """make_trial_seal writes a 0600 seal.p12 and seal.pass holding a self-signed RSA-2048 seal."""
    made = make_trial_seal(tmp_path / "trial", days=10)
    assert made == TrialSeal(tmp_path / "trial" / "seal.p12", tmp_path / "trial" / "seal.pass")
    for path in (made.pkcs12_path, made.password_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = made.password()
    assert len(password) >= 24
    key, cert, _ = pkcs12.load_key_and_certificates(made.pkcs12_path.read_bytes(), password)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert cert is not None
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "folderseal trial seal - NOT QUALIFIED"
    )
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "folderseal trial"
    )
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment
    assert not usage.key_cert_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=9) < lifetime <= datetime.timedelta(days=10)
    assert Credentials.from_pkcs12(made.pkcs12_path, password).subject.endswith(
        "CN=folderseal trial seal - NOT QUALIFIED"
    )


def test_trial_seal_never_overwrites(trial_seal: TrialSeal) -> None:  # noqa: F811
    """A second make_trial_seal in the same folder raises FileExistsError and changes nothing."""
    before = trial_seal.pkcs12_path.read_bytes(), trial_seal.password_path.read_bytes()
    with pytest.raises(FileExistsError, match="never overwritten"):
        make_trial_seal(trial_seal.pkcs12_path.parent)
    after = trial_seal.pkcs12_path.read_bytes(), trial_seal.password_path.read_bytes()
    assert before == after


def test_trial_seal_refuses_when_only_the_password_file_exists(tmp_path: Path) -> None:
    """An existing seal.pass alone also blocks a new trial seal, and no seal.p12 is written."""
    (tmp_path / "seal.pass").write_text("someone's password")
    with pytest.raises(FileExistsError):
        make_trial_seal(tmp_path)
    assert not (tmp_path / "seal.p12").exists()
    assert (tmp_path / "seal.pass").read_text() == "someone's password"
