"""The signer's outputs checked by tools folderseal did not write: pdfsig, openssl, pyHanko."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from folderseal.core.errors import ConfigError, FileRejected, TransientError
from folderseal.signing import (
    Credentials,
    TrialSeal,
    pades,
    sign_detached,
    sign_pdf,
    verify_detached,
    verify_pdf,
)
from tests.pdfs import make_big_pdf, make_encrypted_pdf, make_pdf
from tests.signing_fixtures import credentials, trial_seal, tsa_url  # noqa: F401 - pytest fixtures

pytestmark = pytest.mark.skipif(
    shutil.which("pdfsig") is None or shutil.which("openssl") is None,
    reason="needs pdfsig (poppler-utils) and openssl; run `make system-deps`",
)


def _sign_pdf_file(
        credentials: Credentials, src: Path, dst: Path, **kwargs: str) -> None:  # noqa: F811
    with src.open("rb") as fin, dst.open("w+b") as fout:
        sign_pdf(credentials, fin, fout, **kwargs)


def _pdfsig(path: Path) -> str:
    done = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def _openssl_verify(content: Path, p7s: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl", "cms", "-verify", "-binary", "-inform", "DER", "-noverify",
            "-in", str(p7s), "-content", str(content), "-out", os.devnull,
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip


def _openssl_print(p7s: Path) -> str:
    done = subprocess.run(
        ["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(p7s)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _byte_range(signed: bytes) -> list[int]:
    found = re.findall(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", signed)
    return [int(x) for x in found[-1]]


def _last_status(path: Path) -> object:
    with path.open("rb") as stream:
        embedded = PdfFileReader(stream, strict=False).embedded_regular_signatures[-1]
        context = ValidationContext(trust_roots=[], allow_fetching=False)
        return validate_pdf_signature(embedded, context, skip_diff=True)


# --- PAdES ------------------------------------------------------------------------------


@pytest.mark.parametrize("pages", [1, 3])
def test_signed_pdf_is_valid_for_pdfsig(
        credentials: Credentials, tmp_path: Path, pages: int) -> None:  # noqa: F811
    """A signed PDF is a valid, whole-document PAdES signature for poppler and for verify_pdf."""
    src, dst = tmp_path / "in.pdf", tmp_path / "out.pdf"
    original = make_pdf(src, pages=pages)
    _sign_pdf_file(credentials, src, dst)
    signed = dst.read_bytes()
    assert signed.startswith(original)
    report = _pdfsig(dst)
    assert "Signature is Valid" in report, report
    assert "Total document signed" in report, report
    assert "ETSI.CAdES.detached" in report, report
    assert "Signature Field Name: Seal" in report, report
    verdict = verify_pdf(dst)
    assert verdict.ok, verdict.detail
    assert "covers the whole file" in verdict.detail
    assert "CN=folderseal trial seal - NOT QUALIFIED" in verdict.detail


_HWM_PROBE = """
from pathlib import Path

def hwm_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM in /proc/self/status")
"""


def _run_probe(body: str, *args: str) -> str:
    """Run ``body`` in a fresh interpreter (clean peak RSS) from the repository root."""
    done = subprocess.run(
        [sys.executable, "-c", _HWM_PROBE + textwrap.dedent(body), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return done.stdout


def test_large_pdf_is_streamed(trial_seal: TrialSeal, tmp_path: Path) -> None:  # noqa: F811
    """Signing a 200 MB PDF grows peak RSS by less than 60 MB and pdfsig finds it valid."""
    src, dst = tmp_path / "big.pdf", tmp_path / "big-signed.pdf"
    make_big_pdf(src, payload_mib=200)
    growth_kib = _run_probe(
        """
        import io, sys
        from folderseal.signing import Credentials, sign_pdf
        from tests.pdfs import make_pdf

        p12, password, src, dst = sys.argv[1:5]
        seal = Credentials.from_pkcs12(Path(p12), Path(password).read_bytes().strip())
        sign_pdf(seal, io.BytesIO(make_pdf(None)), io.BytesIO())  # warm-up
        before = hwm_kib()
        with open(src, "rb") as fin, open(dst, "w+b") as fout:
            sign_pdf(seal, fin, fout)
        print(hwm_kib() - before)
        """,
        str(trial_seal.pkcs12_path), str(trial_seal.password_path), str(src), str(dst),
    )  # fmt: skip
    assert int(growth_kib) < 60 * 1024, f"peak RSS grew by {int(growth_kib) // 1024} MiB"
    assert dst.stat().st_size > src.stat().st_size
    report = _pdfsig(dst)
    assert "Signature is Valid" in report and "Total document signed" in report, report


def test_reservation_fits_without_a_dry_run(
        credentials: Credentials, tmp_path: Path) -> None:  # noqa: F811
    """The computed reservation is what ends up in the PDF: pyHanko's estimate was not needed."""
    src, dst = tmp_path / "in.pdf", tmp_path / "out.pdf"
    make_pdf(src)
    _sign_pdf_file(credentials, src, dst)
    start, first_len, second_start, _ = _byte_range(dst.read_bytes())
    assert start == 0
    hex_slots = second_start - first_len - 2  # minus the < and > delimiters
    assert hex_slots == pades.reservation_for(credentials, with_timestamp=False)


def test_too_small_reservation_falls_back_to_measuring(
    credentials: Credentials,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the reservation were ever too small, sign_pdf still produces a valid PDF."""
    monkeypatch.setattr(pades, "reservation_for", lambda *_a, **_k: 64)
    src, dst = tmp_path / "in.pdf", tmp_path / "out.pdf"
    original = make_pdf(src)
    _sign_pdf_file(credentials, src, dst)
    signed = dst.read_bytes()
    assert signed.startswith(original)
    assert signed.count(b"/ByteRange") == 1  # the failed attempt left nothing behind
    assert "Signature is Valid" in _pdfsig(dst)
    assert verify_pdf(dst).ok


def test_signed_pdf_can_be_sealed_again(
        credentials: Credentials, tmp_path: Path) -> None:  # noqa: F811
    """Signing an already sealed PDF appends a second signature and keeps the first valid."""
    src, once, twice = tmp_path / "in.pdf", tmp_path / "once.pdf", tmp_path / "twice.pdf"
    make_pdf(src)
    _sign_pdf_file(credentials, src, once)
    _sign_pdf_file(credentials, once, twice)
    assert twice.read_bytes().startswith(once.read_bytes())
    report = _pdfsig(twice)
    assert report.count("Signature is Valid") == 2, report
    assert "Signature Field Name: Seal-2" in report, report
    verdict = verify_pdf(twice)
    assert verdict.ok and "2 signature(s)" in verdict.detail, verdict.detail


def test_certified_pdf_forbidding_changes_is_unsignable(
    credentials: Credentials,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A PDF whose certification signature forbids changes is rejected as unsignable_pdf."""
    certified = tmp_path / "certified.pdf"
    writer = IncrementalPdfFileWriter(io.BytesIO(make_pdf(None)), strict=False)
    meta = signers.PdfSignatureMetadata(
        field_name="Author",
        certify=True,
        docmdp_permissions=fields.MDPPerm.NO_CHANGES,
    )
    with certified.open("wb") as out:
        signers.sign_pdf(writer, meta, signer=credentials.signer, output=out)
    with pytest.raises(FileRejected) as caught:
        _sign_pdf_file(credentials, certified, tmp_path / "out.pdf")
    assert caught.value.code == "unsignable_pdf"
    assert "forbids all changes" in caught.value.message


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("encrypted", make_encrypted_pdf(None), "encrypted_pdf"),
        ("truncated", make_pdf(None, pages=2)[:300], "broken_pdf"),
        ("garbage-after-header", b"%PDF-1.7\n" + b"\x00garbage" * 50, "broken_pdf"),
        ("not-a-pdf", b"PK\x03\x04 this is a zip, not a PDF" * 10, "not_a_pdf"),
        ("empty", b"", "not_a_pdf"),
    ],
)
def test_bad_inputs_are_rejected_with_a_code(
    credentials: Credentials,  # noqa: F811
    tmp_path: Path,
    name: str,
    content: bytes,
    code: str,
) -> None:
    """Encrypted, truncated and non-PDF inputs raise FileRejected with the matching code."""
    src = tmp_path / f"{name}.pdf"
    src.write_bytes(content)
    with pytest.raises(FileRejected) as caught:
        _sign_pdf_file(credentials, src, tmp_path / "out.pdf")
    assert caught.value.code == code, caught.value.message
    if code == "encrypted_pdf":
        assert "needs a password to open" in caught.value.message


def test_verify_pdf_rejects_tampering(
        credentials: Credentials, tmp_path: Path) -> None:  # noqa: F811
    """verify_pdf says not ok when signed bytes change or bytes are appended after signing."""
    src, dst = tmp_path / "in.pdf", tmp_path / "out.pdf"
    make_pdf(src, text="pay 100 EUR")
    _sign_pdf_file(credentials, src, dst)
    signed = dst.read_bytes()

    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(signed.replace(b"pay 100 EUR", b"pay 900 EUR"))
    verdict = verify_pdf(tampered)
    assert not verdict.ok and "changed" in verdict.detail, verdict.detail
    assert "Signature Validation: Digest Mismatch." in _pdfsig(tampered)

    appended = tmp_path / "appended.pdf"
    appended.write_bytes(signed + b"\n% appended after signing\n")
    verdict = verify_pdf(appended)
    assert not verdict.ok and "whole file" in verdict.detail, verdict.detail

    assert not verify_pdf(src).ok  # unsigned


def test_pdf_with_timestamp_is_pades_b_t(
        credentials: Credentials, tmp_path: Path, tsa_url: str) -> None:  # noqa: F811
    """With a TSA URL the PDF signature carries a valid signature time-stamp, and pdfsig agrees."""
    src, dst = tmp_path / "in.pdf", tmp_path / "out.pdf"
    original = make_pdf(src)
    _sign_pdf_file(credentials, src, dst, timestamp_url=tsa_url)
    assert dst.read_bytes().startswith(original)
    status = _last_status(dst)
    timestamp = getattr(status, "timestamp_validity", None)
    assert timestamp is not None
    assert timestamp.intact and timestamp.valid
    report = _pdfsig(dst)
    assert "Signature is Valid" in report and "Total document signed" in report, report
    verdict = verify_pdf(dst)
    assert verdict.ok and "time-stamped" in verdict.detail, verdict.detail
    _, first_len, second_start, _ = _byte_range(dst.read_bytes())
    assert second_start - first_len - 2 == pades.reservation_for(credentials, with_timestamp=True)


def test_unreachable_tsa_is_transient(
        credentials: Credentials, tmp_path: Path) -> None:  # noqa: F811
    """A time-stamp server that does not answer gives TransientError, not a rejected file."""
    src = tmp_path / "in.pdf"
    make_pdf(src)
    dead = "http://127.0.0.1:9/tsa?token=s3cret"  # port 9 (discard): nothing listens
    with pytest.raises(TransientError) as caught:
        _sign_pdf_file(credentials, src, tmp_path / "out.pdf", timestamp_url=dead)
    assert "s3cret" not in str(caught.value)
    with src.open("rb") as fin, pytest.raises(TransientError):
        sign_detached(credentials, fin, timestamp_url=dead)


def test_bad_tsa_url_is_a_config_error(
        credentials: Credentials, tmp_path: Path) -> None:  # noqa: F811
    """A time-stamp URL that is not http(s) is a configuration error, not the file's fault."""
    src = tmp_path / "in.pdf"
    make_pdf(src)
    with pytest.raises(ConfigError, match="http"):
        _sign_pdf_file(credentials, src, tmp_path / "out.pdf", timestamp_url="ftp://tsa.example/")


# --- CAdES detached ---------------------------------------------------------------------


def _detached(credentials: Credentials, content: Path, **kwargs: str) -> Path:  # noqa: F811
    with content.open("rb") as stream:
        signature = sign_detached(credentials, stream, **kwargs)
    assert signature.content_sha256 == hashlib.sha256(content.read_bytes()).hexdigest()
    p7s = content.with_name(content.name + ".p7s")
    p7s.write_bytes(signature.der)
    return p7s


def test_detached_signature_verifies_with_openssl(
        credentials: Credentials, tmp_path: Path) -> None:  # noqa: F811
    """A detached signature verifies with openssl cms and carries signing-certificate-v2."""
    content = tmp_path / "invoice.xml"
    content.write_bytes(os.urandom(100 * 1024))
    p7s = _detached(credentials, content)
    done = _openssl_verify(content, p7s)
    assert done.returncode == 0, done.stderr
    printed = _openssl_print(p7s)
    assert "id-smime-aa-signingCertificateV2" in printed
    assert "signingTime" in printed
    assert "eContent: <ABSENT>" in printed  # detached: no encapsulated content
    verdict = verify_detached(content, p7s)
    assert verdict.ok, verdict.detail
    assert verdict.detail.startswith("CAdES detached signature valid")


def test_detached_signature_holds_what_pyhanko_would_put_there(
        credentials: Credentials, tmp_path: Path) -> None:  # noqa: F811
    """folderseal builds detached CAdES without pyHanko's general machinery: the same
    SignedData as pyHanko's own for the same content (signed attributes of the same types
    in the same order and with the same values but the signing time, the same
    certificates, signer id and algorithms)."""
    import asyncio

    from asn1crypto import cms

    data = os.urandom(10_000)
    ours = cms.ContentInfo.load(sign_detached(credentials, io.BytesIO(data)).der)["content"]
    theirs = asyncio.run(credentials.signer.async_sign_general_data(
        io.BytesIO(data), "sha256", detached=True, use_cades=True))["content"]

    def attrs(signed_data: cms.SignedData) -> list[tuple[str, object]]:
        found = signed_data["signer_infos"][0]["signed_attrs"]
        return [(a["type"].native, None if a["type"].native == "signing_time"
                 else a["values"].dump()) for a in found]
    assert attrs(ours) == attrs(theirs)
    assert [a["type"].native for a in ours["signer_infos"][0]["signed_attrs"]] == [
        "content_type", "signing_time", "message_digest", "signing_certificate_v2"]
    for field in ("version", "digest_algorithms", "encap_content_info", "certificates"):
        assert ours[field].dump() == theirs[field].dump(), field
    mine, pyhankos = ours["signer_infos"][0], theirs["signer_infos"][0]
    for field in ("version", "sid", "digest_algorithm", "signature_algorithm"):
        assert mine[field].dump() == pyhankos[field].dump(), field
    when = mine["signed_attrs"][1]["values"][0]
    assert when.name == "utc_time" and pyhankos["signed_attrs"][1]["values"][0].name == when.name


def test_signed_attributes_from_the_template_are_those_asn1crypto_builds(
        credentials: Credentials) -> None:  # noqa: F811
    """The signed attributes are put together from a template per seal (the digest and
    the time patched in); byte for byte what asn1crypto builds for the same digest and
    time, for any digest, at any second; a time UTCTime cannot hold goes the long way
    (where asn1crypto refuses it, as before)."""
    from datetime import UTC, datetime, timedelta, timezone

    signer = credentials.signer
    times = [datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
             datetime(2000, 1, 1, tzinfo=UTC), datetime(1999, 12, 31, 23, 0, 1, tzinfo=UTC),
             datetime(2026, 7, 4, 1, 2, 3, tzinfo=timezone(timedelta(hours=-5))),
             datetime.now(UTC)]
    for when in times + [None]:
        for _ in range(20):
            digest = os.urandom(32)
            assert signer.signed_attributes_der(digest, when) == \
                signer.signed_attributes(digest, when).dump(), when
    with pytest.raises(ValueError):  # asn1crypto's own refusal: not hidden by the template
        signer.signed_attributes_der(os.urandom(32), datetime(2051, 1, 1, tzinfo=UTC))


def _seal_with_chain(folder: Path, leaf_key: object) -> Credentials:
    """A seal of ``leaf_key`` issued by an intermediate CA under a self-signed root (the
    PEM holds all three), and the root alone in ``folder/root.pem``."""
    import datetime

    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(cn: str, key: object, issuer: str, issuer_key: object, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (x509.CertificateBuilder().subject_name(name)
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key())  # type: ignore[attr-defined]
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        edwards = isinstance(issuer_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
        return builder.sign(issuer_key, None if edwards else hashes.SHA256())  # type: ignore[arg-type]

    root_key = rsa.generate_private_key(65537, 2048)
    root = issue("Test Root", root_key, "Test Root", root_key, True)
    middle_key = rsa.generate_private_key(65537, 2048)
    middle = issue("Test Intermediate", middle_key, "Test Root", root_key, True)
    leaf = issue("Test Seal", leaf_key, "Test Intermediate", middle_key, False)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (folder / "seal.key").write_bytes(leaf_key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (folder / "seal.pem").write_bytes(b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in (leaf, middle, root)))
    return Credentials.from_pem(folder / "seal.key", folder / "seal.pem", None)


def test_a_seal_with_a_chain_and_an_ec_key_signs_as_pyhanko_would(tmp_path: Path) -> None:
    """An ECDSA seal under an intermediate CA and a root: the detached signature holds
    the same certificates as pyHanko's (the root too), verifies with openssl against
    the root alone, and with folderseal verify."""
    import asyncio

    from asn1crypto import cms
    from cryptography.hazmat.primitives.asymmetric import ec

    seal = _seal_with_chain(tmp_path / "seal", ec.generate_private_key(ec.SECP256R1()))
    content = tmp_path / "data.bin"
    content.write_bytes(os.urandom(20_000))
    p7s = _detached(seal, content)
    ours = cms.ContentInfo.load(p7s.read_bytes())["content"]
    theirs = asyncio.run(seal.signer.async_sign_general_data(
        io.BytesIO(content.read_bytes()), "sha256", detached=True, use_cades=True))["content"]

    def subjects(signed_data: cms.SignedData) -> list[str]:
        return sorted(c.chosen.subject.native["common_name"] for c in signed_data["certificates"])
    assert subjects(ours) == subjects(theirs) == ["Test Intermediate", "Test Root", "Test Seal"]
    assert ours["signer_infos"][0]["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"
    done = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                           str(p7s), "-content", str(content), "-out", os.devnull, "-CAfile",
                           str(tmp_path / "seal" / "root.pem"), "-purpose", "any"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    verdict = verify_detached(content, p7s)
    assert verdict.ok, verdict.detail


def test_an_edwards_seal_is_refused_as_pyhanko_refuses_it(tmp_path: Path) -> None:
    """Ed25519 signs with SHA-512, never SHA-256: such a seal is refused with pyHanko's
    own words, for a detached signature and a PDF alike, rather than a signature no
    verifier accepts."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from pyhanko.sign.general import SigningError

    seal = _seal_with_chain(tmp_path / "seal", ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(SigningError, match="sha512"):
        sign_detached(seal, io.BytesIO(b"content"))
    src = tmp_path / "in.pdf"
    make_pdf(src)
    with pytest.raises((SigningError, FileRejected), match="sha512"):
        _sign_pdf_file(seal, src, tmp_path / "out.pdf")
    # Such a signature made anyway (by another tool) fails folderseal verify, as openssl.
    from datetime import UTC, datetime

    content = tmp_path / "content.bin"
    content.write_bytes(b"content")
    attrs = seal.signer.signed_attributes(hashlib.sha256(b"content").digest(), datetime.now(UTC))
    p7s = tmp_path / "content.bin.p7s"
    p7s.write_bytes(seal.signer.detached_signed_data(
        attrs.dump(), seal.signer.sign_raw(attrs.dump(), "sha256")))
    assert _openssl_verify(content, p7s).returncode != 0
    verdict = verify_detached(content, p7s)
    assert not verdict.ok and "algorithms are not allowed" in verdict.detail, verdict.detail


def test_pdf_signature_cms_holds_what_pyhanko_would_put_there(
        credentials: Credentials) -> None:  # noqa: F811
    """The CMS of a PAdES signature (no time-stamp server) is built without pyHanko's
    general machinery too: the same SignedData as pyHanko's own for the same document
    digest (attributes content-type, message-digest, signing-certificate-v2)."""
    import asyncio
    import hashlib as hashes_

    from pyhanko.sign.signers.pdf_cms import SimpleSigner

    digest = hashes_.sha256(b"the byte ranges of a PDF").digest()
    ours = asyncio.run(credentials.signer.async_sign(digest, "sha256", use_pades=True))
    theirs = asyncio.run(SimpleSigner.async_sign(credentials.signer, digest, "sha256",
                                                 use_pades=True))
    mine, pyhankos = ours["content"], theirs["content"]
    for field in ("version", "digest_algorithms", "encap_content_info", "certificates"):
        assert mine[field].dump() == pyhankos[field].dump(), field
    a, b = mine["signer_infos"][0], pyhankos["signer_infos"][0]
    for field in ("version", "sid", "digest_algorithm", "signed_attrs", "signature_algorithm",
                  "signature"):  # RSA PKCS#1 v1.5 is deterministic: the very signature
        assert a[field].dump() == b[field].dump(), field
    assert [x["type"].native for x in a["signed_attrs"]] == [
        "content_type", "message_digest", "signing_certificate_v2"]


def test_tampered_content_fails_openssl_and_verify(
        credentials: Credentials, tmp_path: Path) -> None:  # noqa: F811
    """Changing one byte of the content makes both openssl and verify_detached refuse it."""
    content = tmp_path / "data.bin"
    content.write_bytes(b"A" * 5000)
    p7s = _detached(credentials, content)
    content.write_bytes(b"A" * 4999 + b"B")
    done = _openssl_verify(content, p7s)
    assert done.returncode != 0
    verdict = verify_detached(content, p7s)
    assert not verdict.ok and "content changed" in verdict.detail, verdict.detail


def test_plain_pkcs7_is_not_cades(credentials: Credentials, tmp_path: Path) -> None:  # noqa: F811
    """A valid detached PKCS#7 without signing-certificate-v2 is not accepted as CAdES."""
    content = tmp_path / "data.bin"
    content.write_bytes(b"plain pkcs7 content")
    cert = x509.load_der_x509_certificate(credentials.certificate.dump())
    key = credentials.private_key
    assert not isinstance(key, type(None))
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content.read_bytes())
        .add_signer(cert, key, hashes.SHA256())  # type: ignore[arg-type]
        .sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
        )
    )
    p7s = tmp_path / "data.bin.p7s"
    p7s.write_bytes(der)
    assert _openssl_verify(content, p7s).returncode == 0  # a valid CMS signature...
    verdict = verify_detached(content, p7s)  # ...but not a CAdES one
    assert not verdict.ok and "signing-certificate-v2" in verdict.detail, verdict.detail


def test_detached_with_timestamp_is_cades_b_t(
    credentials: Credentials,  # noqa: F811
    tmp_path: Path,
    tsa_url: str,  # noqa: F811
) -> None:
    """With a TSA URL the detached signature carries a signature time-stamp token."""
    content = tmp_path / "report.csv"
    content.write_bytes(b"a,b,c\n" * 1000)
    p7s = _detached(credentials, content, timestamp_url=tsa_url)
    printed = _openssl_print(p7s)
    assert "id-smime-aa-timeStampToken" in printed
    assert "id-smime-aa-signingCertificateV2" in printed
    done = _openssl_verify(content, p7s)
    assert done.returncode == 0, done.stderr
    verdict = verify_detached(content, p7s)
    assert verdict.ok and "time-stamped" in verdict.detail, verdict.detail


def test_detached_memory_stays_flat_for_300_mb(trial_seal: TrialSeal, tmp_path: Path) -> None:  # noqa: F811
    """Signing a 300 MB file grows peak RSS by less than 60 MB: the content is streamed."""
    big = tmp_path / "big.bin"
    with big.open("wb") as out:  # sparse: no disk space used, reads return zeros
        out.truncate(300 * 1024 * 1024)
    output = _run_probe(
        """
        import io, sys
        from folderseal.signing import Credentials, sign_detached

        p12, password, big = sys.argv[1:4]
        seal = Credentials.from_pkcs12(Path(p12), Path(password).read_bytes().strip())
        sign_detached(seal, io.BytesIO(b"warm-up"))  # imports and caches before measuring
        before = hwm_kib()
        with open(big, "rb") as stream:
            result = sign_detached(seal, stream)
        print(hwm_kib() - before, result.content_sha256)
        """,
        str(trial_seal.pkcs12_path), str(trial_seal.password_path), str(big),
    )  # fmt: skip
    growth_kib, digest = output.split()
    zeros = hashlib.sha256()
    chunk = bytes(1024 * 1024)
    for _ in range(300):
        zeros.update(chunk)
    assert digest == zeros.hexdigest()
    assert int(growth_kib) < 60 * 1024, f"peak RSS grew by {int(growth_kib) // 1024} MiB"
