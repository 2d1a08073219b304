"""Fixtures for the signing tests: a trial seal, and a local RFC 3161 time-stamp server.

Import the fixtures by name into a test module (``from tests.signing_fixtures import ...``).
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from asn1crypto import keys, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.sign.timestamps import DummyTimeStamper

from folderseal.signing import Credentials, TrialSeal, make_trial_seal

__all__ = ["credentials", "make_tsa", "trial_seal", "tsa_url"]


@pytest.fixture
def trial_seal(tmp_path: Path) -> TrialSeal:
    """A fresh trial seal (seal.p12 + seal.pass) in the test's tmp_path."""
    return make_trial_seal(tmp_path / "seal")


@pytest.fixture
def credentials(trial_seal: TrialSeal) -> Credentials:
    """The trial seal, loaded."""
    return Credentials.from_pkcs12(trial_seal.pkcs12_path, trial_seal.password())


def make_tsa() -> DummyTimeStamper:
    """A pyHanko test TSA with its own self-signed RSA certificate (EKU timeStamping)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "folderseal test TSA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        tsa_key=keys.PrivateKeyInfo.load(key_der),
    )


class _TsaHandler(BaseHTTPRequestHandler):
    stamper: DummyTimeStamper  # set on a subclass per server

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            request = tsp.TimeStampReq.load(body)
            reply = self.stamper.request_tsa_response(request).dump()
        except ValueError:
            self.send_error(400, "not a time-stamp request")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep test output clean


@pytest.fixture(scope="session")
def tsa_url() -> Iterator[str]:
    """URL of an RFC 3161 time-stamp server on 127.0.0.1, answering with DummyTimeStamper."""
    handler = type("Handler", (_TsaHandler,), {"stamper": make_tsa()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tsa"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
