"""`folderseal verify` on a stored file: a sidecar whose provider block carries a receipt
(as Clevver's does). The file's sha256 must be the receipt's checksum; what verify
cannot check from here (the chain itself) it says, with where to look.

The sidecar and the file are written by hand, as an operator would find them in an
outbox; verify runs as the real command line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.helpers import folderseal

TXID = "7f" * 32
URL = f"https://clevver.example/tx/{TXID}"


def stored_file(outbox: Path, data: bytes, checksum: str | None = None,
                txid: str | None = TXID) -> Path:
    """A file and its sidecar as a storing provider's delivery leaves them; the receipt
    says ``checksum`` (the file's own sha256 unless given)."""
    digest = hashlib.sha256(data).hexdigest()
    path = outbox / "2026" / "contract.pdf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    sidecar: dict[str, Any] = {
        "schema": "folderseal.sidecar/1", "status": "stored", "folder": "scans",
        "source": "2026/contract.pdf", "input": {"sha256": digest, "bytes": len(data)},
        "outputs": [{"path": "2026/contract.pdf", "role": "original", "sha256": digest,
                     "bytes": len(data)}],
        "provider": {"name": "proof", "kind": "clevver", "batch": "b-1", "document": "a-1",
                     "receipt": {"asset_id": "a-1", "checksum": checksum or digest,
                                 "txid": txid, "url": URL if txid else None,
                                 "forever_url": None, "stored_on": "2026-11-22T10:05:00Z",
                                 "updated_at": "2026-11-22T10:05:01Z",
                                 "duplicate": False}},
        "batch": {"id": "batch-1", "files": 1}, "node": "n", "version": "0",
        "timeline": [], "signer": None,
    }
    (outbox / "2026" / "contract.pdf.json").write_text(json.dumps(sidecar))
    return path


def test_a_file_that_matches_its_receipt_verifies_and_the_chain_is_left_to_look_up(
        tmp_path: Path) -> None:
    """The file, its sidecar and its receipt agree: ok, exit 0, and a note that the
    chain itself was not checked, naming the transaction and its URL."""
    path = stored_file(tmp_path, b"%PDF-1.7 a contract\n%%EOF\n")
    out = folderseal("verify", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert f"ok     {path}" in lines
    note = next(line for line in lines if line.startswith("note"))
    assert "not checked" in note and "chain" in note and TXID in note and URL in note
    assert lines[-1] == "1 of 1 verified"


def test_a_receipt_for_other_content_fails_with_both_hashes(tmp_path: Path) -> None:
    """The receipt's checksum is not the file's sha256 (the sidecar's own hashes agree
    with the file): FAILED with both full hashes, exit 1."""
    data = b"%PDF-1.7 a contract\n%%EOF\n"
    other = hashlib.sha256(b"another contract").hexdigest()
    stored_file(tmp_path, data, checksum=other)
    out = folderseal("verify", str(tmp_path / "2026" / "contract.pdf"))
    assert out.returncode == 1, out.stdout
    failed = [line for line in out.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1, out.stdout
    assert hashlib.sha256(data).hexdigest() in failed[0] and other in failed[0]
    assert "receipt" in failed[0]


def test_a_changed_file_fails_against_sidecar_and_receipt(tmp_path: Path) -> None:
    """The file changed after delivery: it matches neither its sidecar nor its
    receipt, and both are said."""
    path = stored_file(tmp_path, b"%PDF-1.7 a contract\n%%EOF\n")
    path.write_bytes(b"%PDF-1.7 a changed contract\n%%EOF\n")
    out = folderseal("verify", str(tmp_path))
    assert out.returncode == 1, out.stdout
    failed = [line for line in out.stdout.splitlines() if line.startswith("FAILED")]
    assert any("does not match its sidecar" in line for line in failed), out.stdout
    assert any("receipt says" in line for line in failed), out.stdout


def test_a_receipt_without_a_transaction_says_there_is_nothing_to_look_up(
        tmp_path: Path) -> None:
    """A receipt with a checksum but no txid: the checksum is still checked (ok), and
    the note says there is no transaction to look up."""
    stored_file(tmp_path, b"plain text\n", txid=None)
    out = folderseal("verify", str(tmp_path))
    assert out.returncode == 0, out.stdout
    assert any(line.startswith("note") and "no transaction id" in line
               for line in out.stdout.splitlines()), out.stdout


def test_an_error_record_is_not_a_delivered_file(tmp_path: Path) -> None:
    """A record with status "failed" given by name is refused: it proves no delivery."""
    path = stored_file(tmp_path, b"x\n")
    record = path.with_name("contract.pdf.error.json")
    data = json.loads(path.with_name("contract.pdf.json").read_text())
    record.write_text(json.dumps({**data, "status": "failed"}))
    out = folderseal("verify", str(record))
    assert out.returncode == 1 and "not a delivered file" in out.stdout, out.stdout
