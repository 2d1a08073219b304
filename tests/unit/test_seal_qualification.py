"""The local provider's check warns about a self-signed seal, and only about that; the
status page and `status` show that warning as a banner.

Certificates are made here with `cryptography`: the trial seal, a seal issued by a
small CA, and a seal that only names itself as its issuer.
"""

from __future__ import annotations

import datetime
from html import escape
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from folderseal.providers.local.config import LocalProviderConfig
from folderseal.providers.local.provider import LocalProvider
from folderseal.service import page
from folderseal.signing import make_trial_seal

PASSWORD = b"qualification-test"
NOT_QUALIFIED = "sealing with a self-signed trial certificate: NOT QUALIFIED"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(subject: str, key: rsa.RSAPrivateKey, issuer: str,
                 issuer_key: rsa.RSAPrivateKey, ca: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def _provider(tmp_path: Path, key: rsa.RSAPrivateKey, cert: x509.Certificate,
              chain: list[x509.Certificate]) -> LocalProvider:
    p12 = tmp_path / "seal.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        name=b"seal", key=key, cert=cert, cas=chain or None,
        encryption_algorithm=serialization.BestAvailableEncryption(PASSWORD)))
    cfg = LocalProviderConfig(kind="local", certificate=p12, password=PASSWORD.decode())
    return LocalProvider("company_seal", cfg, tmp_path)


def test_the_trial_seal_is_warned_about_as_not_qualified(tmp_path: Path) -> None:
    """check() on the trial seal warns "sealing with a self-signed trial certificate:
    NOT QUALIFIED" and says what to do (the caller names the provider)."""
    seal = make_trial_seal(tmp_path / "seal")
    cfg = LocalProviderConfig(kind="local", certificate=seal.pkcs12_path,
                              password_file=seal.password_path)
    warnings = LocalProvider("local", cfg, tmp_path).check().warnings
    loud = [w for w in warnings if NOT_QUALIFIED in w]
    assert len(loud) == 1, warnings
    assert "qualified trust service" in loud[0]


def test_any_self_signed_seal_is_warned_about(tmp_path: Path) -> None:
    """A self-signed certificate that is not the trial seal gets the same warning."""
    key = _key()
    cert = _certificate("Example Records Office", key, "Example Records Office", key)
    warnings = _provider(tmp_path, key, cert, []).check().warnings
    assert any(NOT_QUALIFIED in w for w in warnings), warnings


def test_a_seal_issued_by_a_ca_gets_no_such_warning(tmp_path: Path) -> None:
    """A seal a CA issued (the chain in the PKCS#12) passes check() without the warning."""
    ca_key, key = _key(), _key()
    ca = _certificate("Example Trust CA", ca_key, "Example Trust CA", ca_key, ca=True)
    cert = _certificate("Example Records Office", key, "Example Trust CA", ca_key)
    warnings = _provider(tmp_path, key, cert, [ca]).check().warnings
    assert not any(NOT_QUALIFIED in w for w in warnings), warnings


def test_a_seal_that_only_names_itself_as_issuer_is_not_self_signed(tmp_path: Path) -> None:
    """Issuer equal to subject is not enough: a CA of the same name signed it, so its own
    key does not verify the signature, and there is no warning."""
    ca_key, key = _key(), _key()
    cert = _certificate("Example Records Office", key, "Example Records Office", ca_key)
    warnings = _provider(tmp_path, key, cert, []).check().warnings
    assert not any(NOT_QUALIFIED in w for w in warnings), warnings


def _report(warnings: list[str]) -> dict[str, Any]:
    return {"node": "n1", "generated": "2026-01-01T00:00:00Z",
            "daemon": {"running": True, "pid": 1}, "alarms": [], "warnings": warnings,
            "folders": {}}


def test_the_status_page_shows_the_not_qualified_warning_as_a_banner() -> None:
    """The NOT QUALIFIED warning is a banner at the top of the page, before everything
    else; other warnings stay ordinary warning lines."""
    loud = f"provider local: {NOT_QUALIFIED}. Set certificate to your organisation's seal"
    html = page.render(_report(["provider x: expires soon", loud]))
    banner = f'<div class="banner not-qualified" role="alert">{escape(loud)}</div>'
    assert banner in html
    assert html.index(banner) < html.index("<p>Daemon running")
    assert '<p class="warn">Warning: provider x: expires soon</p>' in html
    assert html.count(escape(loud)) == 1
    assert ".banner {" in html
