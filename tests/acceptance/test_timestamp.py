"""Time-stamped seals (B-T), and a time-stamp server that is down.

A TSA outage is not the files' fault: their batch waits, the daemon keeps running,
no file goes to errors, and once the TSA answers the files are sealed with a
signature time-stamp.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from tests.helpers import Daemon, Layout, check_sidecar, error_records, wait_until
from tests.pdfs import make_pdf
from tests.signing_fixtures import tsa_url  # noqa: F401 - a fixture


def _dead_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsa"


def test_a_tsa_outage_makes_the_batch_wait_and_then_seals_with_time_stamps(
        tmp_path: Path, tsa_url: str) -> None:  # noqa: F811
    """With the TSA down the batch is postponed and nothing fails; with it back the PDF
    carries a signature time-stamp and the .p7s a timeStampToken."""
    layout = Layout(tmp_path, provider={"timestamp_url": _dead_url()})
    layout.write()
    daemon = Daemon(layout).started()
    (layout.inbox / "stamped.pdf").write_bytes(make_pdf(None, text="B-T"))
    (layout.inbox / "stamped.txt").write_text("time-stamped detached")
    daemon.wait_for_event("batch.postponed", timeout=30)
    assert daemon.process.poll() is None, "the daemon died on a TSA outage"
    assert error_records(layout.errors) == []
    assert daemon.stop() == 0
    layout.provider["timestamp_url"] = tsa_url
    layout.write()
    daemon = Daemon(layout).started()
    wait_until(lambda: (layout.outbox / "stamped.txt.json").exists()
               and (layout.outbox / "stamped.pdf.json").exists(), timeout=60,
               what="both files sealed")
    assert error_records(layout.errors) == []
    for name in ("stamped.pdf", "stamped.txt"):
        data = check_sidecar(layout.outbox / f"{name}.json", layout)
        assert data["status"] == "signed"
    dump = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in",
                           str(layout.outbox / "stamped.txt.p7s")], capture_output=True,
                          text=True)
    assert "id-smime-aa-timeStampToken" in dump.stdout
    assert _has_pdf_timestamp(layout.outbox / "stamped.pdf")
    attempts = [e for e in daemon.events() if e.get("event") == "file.sign_attempt_failed"]
    assert attempts == []
    assert daemon.stop() == 0
    sidecar = json.loads((layout.outbox / "stamped.pdf.json").read_text())
    assert sidecar["outputs"][0]["role"] == "signed"


def _has_pdf_timestamp(path: Path) -> bool:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    with path.open("rb") as handle:
        signature = PdfFileReader(handle).embedded_signatures[0]
        status = validate_pdf_signature(signature, ValidationContext(trust_roots=[]))
    return status.timestamp_validity is not None
