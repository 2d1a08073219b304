"""The command line as an operator meets it: init, check, run, sign, status, retry, verify,
recover, and the folder options that change what lands where.

Every case runs the real ``python -m folderseal`` in a subprocess against real folders.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from folderseal.signing import make_trial_seal
from folderseal.store.sqlite import migrations
from tests.helpers import (
    FAST,
    Daemon,
    Layout,
    check_sidecar,
    error_records,
    folderseal,
    sha256,
    sidecars,
    wait_until,
)
from tests.pdfs import make_encrypted_pdf, make_pdf

CONFIG_ERROR = 78


# -- helpers ------------------------------------------------------------------------------

def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _status(layout: Layout) -> dict[str, Any]:
    out = folderseal("status", "--json", "-c", str(layout.config))
    assert out.returncode in (0, 1), out.stdout + out.stderr  # 1: an alarm, report printed
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def _records(errors: Path) -> dict[str, dict[str, Any]]:
    return {json.loads(p.read_text())["source"]: json.loads(p.read_text())
            for p in error_records(errors)}


def _inbox_files(inbox: Path) -> list[str]:
    return sorted(str(p.relative_to(inbox)) for p in inbox.rglob("*")
                  if p.is_file() and ".folderseal" not in p.parts)


def _claimed_files(layout: Layout) -> list[Path]:
    """Claimed originals in the work folder (not the batches' hidden manifests)."""
    return [p for folder in (layout.incoming, layout.work / "batches")
            for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path below root with its mode, mtime and (for files) content."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        body = path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, body)
    return found


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _make_seal(directory: Path, *, not_before: datetime.datetime,
               not_after: datetime.datetime) -> tuple[Path, Path]:
    """A self-signed RSA seal valid in [not_before, not_after], as seal.p12 + seal.pass."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "folderseal expiry test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    password = b"expiry-test-password"
    p12 = pkcs12.serialize_key_and_certificates(
        name=b"expiry test", key=key, cert=cert, cas=None,
        encryption_algorithm=serialization.BestAvailableEncryption(password))
    (directory / "seal.p12").write_bytes(p12)
    (directory / "seal.pass").write_bytes(password)
    for path in (directory / "seal.p12", directory / "seal.pass"):
        path.chmod(0o600)  # as a real seal is kept: no warning about readable key files
    return directory / "seal.p12", directory / "seal.pass"


def _first_run(layout: Layout) -> None:
    """Start a daemon once so the store and the work folder exist, then stop it."""
    daemon = Daemon(layout).started()
    daemon.wait_for_event("folder.watching")
    assert daemon.stop() == 0


# -- init ---------------------------------------------------------------------------------

def test_init_writes_a_working_starter_and_refuses_a_second_time(tmp_path: Path) -> None:
    """`init DIR` writes a config, a 0600 trial seal and the folders, `check` accepts them,
    and a second `init DIR` exits 1 without changing anything."""
    target = tmp_path / "fs"
    out = folderseal("init", str(target))
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("config.toml", "seal.p12", "seal.pass"):
        assert (target / name).is_file(), f"init did not write {name}"
    for name in ("inbox", "outbox", "errors", "state"):
        assert (target / name).is_dir(), f"init did not make {name}/"
    assert _mode(target / "seal.pass") == 0o600
    assert _mode(target / "seal.p12") == 0o600
    check = folderseal("check", "-c", str(target / "config.toml"))
    assert check.returncode == 0, check.stdout + check.stderr
    before = _snapshot(target)
    again = folderseal("init", str(target))
    assert again.returncode == 1, again.stdout + again.stderr
    assert "exists" in again.stderr
    assert _snapshot(target) == before, "a second init changed the folder"


def test_init_beside_an_existing_seal_refuses_cleanly(tmp_path: Path) -> None:
    """`init DIR` where DIR holds a seal but no config exits 1 with a message, no traceback,
    and changes nothing (the seal is never overwritten)."""
    target = tmp_path / "fs"
    make_trial_seal(target)
    before = _snapshot(target)
    out = folderseal("init", str(target))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert "seal.p12" in out.stderr
    assert _snapshot(target) == before, "a refused init changed the folder"


# -- bad configurations -------------------------------------------------------------------

def test_bad_value_is_named_with_its_key_and_env_name_by_check_and_run(tmp_path: Path) -> None:
    """A bad value makes `check` and `run` exit 78 naming the key and its environment name."""
    layout = Layout(tmp_path, folder={"settle_seconds": "soon"})
    layout.write()
    check = folderseal("check", "-c", str(layout.config))
    assert check.returncode == CONFIG_ERROR, check.stdout + check.stderr
    for text in ("folders.scans.settle_seconds", "FOLDERSEAL_FOLDERS__SCANS__SETTLE_SECONDS"):
        assert text in check.stdout + check.stderr
    run = folderseal("run", "-c", str(layout.config), timeout=30)
    assert run.returncode == CONFIG_ERROR, run.stdout + run.stderr
    assert "folders.scans.settle_seconds" in run.stdout + run.stderr
    assert list(layout.state.iterdir()) == [], "run touched the state folder"


def test_password_beside_a_bad_key_is_not_echoed(tmp_path: Path) -> None:
    """A provider table with a password, a missing certificate and a bad value exits 78 from
    `check` and `run`, naming the keys without printing the password."""
    secret = "Sup3r-Secr3t-Value"
    layout = Layout(tmp_path, provider={"password": secret, "password_file": "",
                                        "workers": "many"})
    layout.write()
    # Without its certificate the whole table is the input of the error (pydantic would
    # quote it, password included).
    text = layout.config.read_text()
    layout.config.write_text(text.replace('certificate = "seal/seal.p12"\n', ""))
    for command in ("check", "run"):
        out = folderseal(command, "-c", str(layout.config), timeout=30)
        assert out.returncode == CONFIG_ERROR, out.stdout + out.stderr
        for key in ("providers.local.certificate", "providers.local.workers"):
            assert key in out.stdout + out.stderr, out.stdout + out.stderr
        assert secret not in out.stdout + out.stderr, f"{command} printed the password"


def test_migrate_makes_the_sqlite_store_and_then_has_nothing_to_do(tmp_path: Path) -> None:
    """`folderseal migrate` creates the store in state_dir, and says so; a second run
    finds the schema current."""
    layout = Layout(tmp_path)
    layout.write()
    first = folderseal("migrate", "-c", str(layout.config), timeout=30)
    assert first.returncode == 0, first.stdout + first.stderr
    assert str(layout.state / "folderseal.sqlite") in first.stdout
    every = ", ".join(str(number) for number, _ in migrations())
    assert f"applied migrations {every}" in first.stdout
    again = folderseal("migrate", "-c", str(layout.config), timeout=30)
    assert again.returncode == 0 and "the schema is current" in again.stdout, again.stdout


def test_outbox_inside_the_inbox_is_refused(tmp_path: Path) -> None:
    """An outbox inside the inbox makes `check` and `run` exit 78 saying so."""
    layout = Layout(tmp_path, folder={"outbox": "inbox/signed"})
    layout.write()
    (layout.inbox / "signed").mkdir()
    check = folderseal("check", "-c", str(layout.config))
    assert check.returncode == CONFIG_ERROR, check.stdout + check.stderr
    assert "folders.scans.outbox" in check.stdout and "inside" in check.stdout
    run = folderseal("run", "-c", str(layout.config), timeout=30)
    assert run.returncode == CONFIG_ERROR, run.stdout + run.stderr
    assert "inside" in run.stderr


# -- work folder of another store ---------------------------------------------------------

def test_foreign_work_folder_refuses_to_start_and_explains(tmp_path: Path) -> None:
    """A work folder whose marker names another store makes `run` exit 78, pointing at
    `folderseal recover`, and nothing in the inbox is taken."""
    layout = Layout(tmp_path)
    layout.write()
    _first_run(layout)
    (layout.work / "store-id").write_text("0123456789abcdef-some-other-store\n")
    (layout.inbox / "waiting.txt").write_text("must not be taken")
    run = folderseal("run", "-c", str(layout.config), timeout=30)
    assert run.returncode == CONFIG_ERROR, run.stdout + run.stderr
    assert "folderseal recover" in run.stderr
    assert _inbox_files(layout.inbox) == ["waiting.txt"]
    assert sidecars(layout.outbox) == []


def test_unknown_batch_refuses_start_and_recover_puts_the_file_back(tmp_path: Path) -> None:
    """A batch folder the store does not know makes `run` exit 78; `recover` moves its file
    back into the inbox under its original name, and the next run seals it."""
    layout = Layout(tmp_path)
    layout.write()
    _first_run(layout)
    planted = layout.work / "batches" / "deadbeef" / "0001_x.txt"
    planted.parent.mkdir(parents=True)
    planted.write_text("left behind by a lost store")
    run = folderseal("run", "-c", str(layout.config), timeout=30)
    assert run.returncode == CONFIG_ERROR, run.stdout + run.stderr
    assert "deadbeef" in run.stderr and "folderseal recover" in run.stderr
    recover = folderseal("recover", "-c", str(layout.config))
    assert recover.returncode == 0, recover.stdout + recover.stderr
    assert (layout.inbox / "x.txt").read_text() == "left behind by a lost store"
    assert not planted.parent.exists()
    daemon = Daemon(layout).started()
    wait_until(lambda: (layout.outbox / "x.txt.json").exists(), what="x.txt sealed")
    data = check_sidecar(layout.outbox / "x.txt.json", layout)
    assert data["source"] == "x.txt"
    assert daemon.stop() == 0


def _copy_store(layout: Layout, copy: Path) -> Path:
    """A copy of the store's files, taken while no daemon runs."""
    copy.mkdir()
    for path in layout.state.glob("folderseal.sqlite*"):
        shutil.copy2(path, copy / path.name)
    return copy


def _put_back_store(layout: Layout, copy: Path) -> None:
    """Replace the store by an older copy, as a restore from a backup would."""
    for path in layout.state.glob("folderseal.sqlite*"):
        path.unlink()
    for path in copy.iterdir():
        shutil.copy2(path, layout.state / path.name)


def test_a_store_older_than_its_work_folder_refuses_start_and_recover_settles_it(
        tmp_path: Path) -> None:
    """A copy of the store taken while files were in flight, put back after they were
    delivered, makes `run` exit 78; `recover` finds them delivered by their sidecars, and
    the next run seals nothing again and writes no error record."""
    layout = Layout(tmp_path)
    layout.write()
    for i in range(3):
        (layout.inbox / f"old-{i}.txt").write_text(f"in flight {i}")
    crashed = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": "state:ACCEPTING"})
    assert crashed.process.wait(timeout=60) == -signal.SIGKILL
    copy = _copy_store(layout, tmp_path / "store-copy")
    daemon = Daemon(layout).started()
    # Until the originals are gone too: a stop between sidecars and removal leaves them in
    # the work folder, and the old store then still matches it.
    wait_until(lambda: len(sidecars(layout.outbox)) == 3
               and not list((layout.work / "batches").iterdir()), what="the batch delivered")
    assert daemon.stop() == 0
    _put_back_store(layout, copy)

    run = folderseal("run", "-c", str(layout.config), timeout=30)
    assert run.returncode == CONFIG_ERROR, run.stdout + run.stderr
    assert "older than the work folder" in run.stderr and "folderseal recover" in run.stderr
    recover = folderseal("recover", "-c", str(layout.config))
    assert recover.returncode == 0, recover.stdout + recover.stderr
    assert "3 files found delivered" in recover.stdout, recover.stdout
    daemon = Daemon(layout).started()
    wait_until(lambda: not _status(layout)["folders"]["scans"]["batches"],
               what="the recovered batch finished")
    assert daemon.stop() == 0
    assert not list((layout.work / "batches").iterdir())
    assert sorted(p.name for p in sidecars(layout.outbox)) == [
        f"old-{i}.txt.json" for i in range(3)], "a file was sealed again"
    assert error_records(layout.errors) == []


def test_outputs_published_after_the_store_copy_are_not_published_again(
        tmp_path: Path) -> None:
    """A store copy from before delivery, put back after outputs and sidecars were
    published (originals not yet removed): delivery runs again and finds its own outputs,
    so nothing is published a second time under -1."""
    layout = Layout(tmp_path)
    layout.write()
    for i in range(3):
        (layout.inbox / f"twice-{i}.txt").write_text(f"deliver once {i}")
    crashed = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": "state:DOWNLOADED"})
    assert crashed.process.wait(timeout=60) == -signal.SIGKILL
    copy = _copy_store(layout, tmp_path / "store-copy")
    crashed = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": "sidecar-published"})
    assert crashed.process.wait(timeout=60) == -signal.SIGKILL
    assert len(sidecars(layout.outbox)) == 3
    _put_back_store(layout, copy)
    daemon = Daemon(layout).started()
    wait_until(lambda: not _status(layout)["folders"]["scans"]["batches"],
               what="the batch finished")
    assert daemon.stop() == 0
    assert sorted(p.name for p in sidecars(layout.outbox)) == [
        f"twice-{i}.txt.json" for i in range(3)], "an output group was published again"
    assert error_records(layout.errors) == []


# -- sign and verify --------------------------------------------------------------------

def test_sign_seals_inbox_files_and_verify_checks_them(tmp_path: Path) -> None:
    """`sign` seals a PDF and a text file from the inbox without a daemon and prints where;
    `verify` accepts the outbox and rejects tampered outputs, tampered originals, and a
    folder without sidecars."""
    layout = Layout(tmp_path)
    layout.write()
    pdf, txt = layout.inbox / "deal.pdf", layout.inbox / "sub" / "note.txt"
    make_pdf(pdf, text="verify me please")
    txt.parent.mkdir()
    txt.write_text("a note to seal\n")
    out = folderseal("sign", "-c", str(layout.config), str(pdf), str(txt))
    assert out.returncode == 0, out.stdout + out.stderr
    assert str(layout.outbox / "deal.pdf") in out.stdout
    assert str(layout.outbox / "sub" / "note.txt") in out.stdout
    check_sidecar(layout.outbox / "deal.pdf.json", layout)
    check_sidecar(layout.outbox / "sub" / "note.txt.json", layout)
    assert _inbox_files(layout.inbox) == []

    good = folderseal("verify", str(layout.outbox))
    assert good.returncode == 0, good.stdout + good.stderr
    assert sum(line.startswith("ok") for line in good.stdout.splitlines()) == 2, good.stdout

    signed, note = layout.outbox / "deal.pdf", layout.outbox / "sub" / "note.txt"
    original = signed.read_bytes()
    assert b"verify me please" in original
    signed.write_bytes(original.replace(b"verify me please", b"verify ME please"))
    note.write_text("a note to seal, changed\n")
    bad = folderseal("verify", str(layout.outbox))
    assert bad.returncode == 1, bad.stdout
    failed = [line for line in bad.stdout.splitlines() if line.startswith("FAILED")]
    assert any("deal.pdf" in line for line in failed), bad.stdout
    assert any("note.txt" in line for line in failed), bad.stdout
    # With the sidecars' hashes brought in line, the signatures themselves must fail.
    for output, sidecar in ((signed, signed.with_name("deal.pdf.json")),
                            (note, note.with_name("note.txt.json"))):
        data = json.loads(sidecar.read_text())
        for entry in data["outputs"]:
            if entry["role"] in ("signed", "original"):
                entry["sha256"], entry["bytes"] = sha256(output), output.stat().st_size
        if output is note:
            data["input"] = {"sha256": sha256(note), "bytes": note.stat().st_size}
        sidecar.write_text(json.dumps(data))
    bad = folderseal("verify", str(signed), str(note))
    assert bad.returncode == 1, bad.stdout
    failed = [line for line in bad.stdout.splitlines() if line.startswith("FAILED")]
    assert any("deal.pdf" in line for line in failed), "a PDF with changed signed bytes passed"
    assert any("note.txt" in line for line in failed), "a signature over other content passed"

    empty = tmp_path / "empty"
    empty.mkdir()
    none = folderseal("verify", str(empty))
    assert none.returncode == 1, none.stdout


def _openssl_certificate(layout: Layout) -> dict[str, str]:
    """The trial seal's certificate as openssl reads it from the PKCS#12: fingerprint,
    serial, subject and issuer."""
    pem = subprocess.run(
        ["openssl", "pkcs12", "-in", str(layout.root / "seal" / "seal.p12"), "-nokeys",
         "-clcerts", "-passin", f"file:{layout.root / 'seal' / 'seal.pass'}"],
        capture_output=True, text=True, check=True).stdout
    shown = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-serial", "-subject",
         "-issuer", "-nameopt", "RFC2253"], input=pem, capture_output=True, text=True,
        check=True).stdout
    fields = dict(line.split("=", 1) for line in shown.splitlines())
    return {"fingerprint": fields["sha256 Fingerprint"].replace(":", "").lower(),
            "serial": fields["serial"], "subject": fields["subject"], "issuer": fields["issuer"]}


def test_sidecars_name_the_seal_and_verify_checks_it(tmp_path: Path) -> None:
    """Each sidecar records the certificate that sealed it (subject, issuer, serial, SHA-256
    fingerprint, self-signed), as openssl reads the trial seal; `verify` passes, and fails
    once a sidecar's fingerprint is changed."""
    layout = Layout(tmp_path)
    layout.write()
    make_pdf(layout.inbox / "deal.pdf", text="who sealed this")
    (layout.inbox / "note.txt").write_text("and this\n")
    out = folderseal("sign", "-c", str(layout.config), str(layout.inbox / "deal.pdf"),
                     str(layout.inbox / "note.txt"))
    assert out.returncode == 0, out.stdout + out.stderr
    seal = _openssl_certificate(layout)
    for name in ("deal.pdf", "note.txt"):
        signer = json.loads((layout.outbox / f"{name}.json").read_text())["signer"]
        assert signer == {"subject": seal["subject"], "issuer": seal["issuer"],
                          "serial_number": seal["serial"],
                          "fingerprint_sha256": seal["fingerprint"], "self_signed": True}
    good = folderseal("verify", str(layout.outbox))
    assert good.returncode == 0, good.stdout + good.stderr
    for name in ("deal.pdf", "note.txt"):
        sidecar = layout.outbox / f"{name}.json"
        data = json.loads(sidecar.read_text())
        data["signer"]["fingerprint_sha256"] = "0" * 64
        sidecar.write_text(json.dumps(data))
    bad = folderseal("verify", str(layout.outbox))
    assert bad.returncode == 1, bad.stdout
    failed = [line for line in bad.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2 and all("not the one its sidecar records" in line
                                    for line in failed), bad.stdout


def test_sign_refuses_outside_paths_and_fails_bad_pdfs(tmp_path: Path) -> None:
    """`sign` exits 1 for a path outside every inbox (leaving it alone) and for an encrypted
    or fake PDF, which go to errors with a record."""
    layout = Layout(tmp_path)
    layout.write()
    outside = tmp_path / "outside.txt"
    outside.write_text("not in an inbox")
    out = folderseal("sign", "-c", str(layout.config), str(outside))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "not in any configured inbox" in out.stderr
    assert outside.read_text() == "not in an inbox"
    assert sidecars(layout.outbox) == []

    make_encrypted_pdf(layout.inbox / "locked.pdf")
    (layout.inbox / "fake.pdf").write_bytes(b"just text pretending\n%%EOF\n")
    out = folderseal("sign", "-c", str(layout.config), str(layout.inbox / "locked.pdf"),
                     str(layout.inbox / "fake.pdf"))
    assert out.returncode == 1, out.stdout + out.stderr
    records = _records(layout.errors)
    assert records["locked.pdf"]["error"]["code"] == "encrypted_pdf"
    assert records["fake.pdf"]["error"]["code"] == "not_a_pdf"
    assert (layout.errors / "locked.pdf").exists() and (layout.errors / "fake.pdf").exists()
    assert "locked.pdf" in out.stdout and "fake.pdf" in out.stdout
    assert sidecars(layout.outbox) == []


def test_sign_puts_a_rejected_file_into_errors_at_once(tmp_path: Path) -> None:
    """`sign` of a file rejected when it is claimed (an empty file) puts it into errors
    with its record and exits 1 at once (no daemon's errors thread to wait for)."""
    layout = Layout(tmp_path)
    layout.write()
    (layout.inbox / "empty.txt").write_bytes(b"")
    started = time.monotonic()
    out = folderseal("sign", "--timeout", "60", "-c", str(layout.config),
                     str(layout.inbox / "empty.txt"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "failed (empty)" in out.stdout, out.stdout
    assert _records(layout.errors)["empty.txt"]["error"]["code"] == "empty"
    assert time.monotonic() - started < 30


# -- status and retry --------------------------------------------------------------------

def test_status_reports_a_running_daemon_its_counts_and_failures(tmp_path: Path) -> None:
    """`status --json` shows a running daemon, DONE counts and each failed file with code and
    reason; the text form names the failed file; a stopped daemon shows as not running."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(layout).started()
    make_pdf(layout.inbox / "a.pdf", text="status a")
    (layout.inbox / "b.txt").write_text("status b")
    (layout.inbox / "empty.txt").write_bytes(b"")
    wait_until(lambda: len(sidecars(layout.outbox)) == 2, what="two sidecars")
    wait_until(lambda: "empty.txt" in _records(layout.errors), what="empty.txt failed")
    wait_until(lambda: _status(layout)["folders"]["scans"]["files"].get("DONE") == 2,
               timeout=10, what="two files DONE")
    report = _status(layout)
    assert report["daemon"]["running"] is True
    assert report["daemon"]["pid"] == daemon.process.pid
    scans = report["folders"]["scans"]
    assert scans["files"].get("DONE") == 2, scans["files"]
    assert scans["files"].get("FAILED") == 1, scans["files"]
    failed = [f for f in scans["failed"] if f["source"] == "empty.txt"]
    assert len(failed) == 1 and failed[0]["code"] == "empty" and failed[0]["reason"]
    text = folderseal("status", "-c", str(layout.config))
    assert text.returncode == 0, text.stderr
    assert "empty.txt" in text.stdout and "running" in text.stdout
    assert daemon.stop() == 0
    assert _status(layout)["daemon"]["running"] is False, "a stopped daemon shows as running"


def test_retry_refuses_a_fixed_file_and_the_fix_goes_through_the_inbox(tmp_path: Path) -> None:
    """`retry --all` refuses a failed file changed in errors (it moves only the file that
    failed), says what to do, and keeps file and record; moved into the inbox as told, the
    fixed file is sealed and `status` no longer lists the failure; an unknown id exits 1."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(layout).started()
    (layout.inbox / "fake.pdf").write_bytes(b"not a pdf at all\n%%EOF\n")
    wait_until(lambda: "fake.pdf" in _records(layout.errors), what="fake.pdf failed")
    assert _records(layout.errors)["fake.pdf"]["error"]["code"] == "not_a_pdf"
    failed = _status(layout)["folders"]["scans"]["failed"]
    assert [f["source"] for f in failed] == ["fake.pdf"]

    unknown = folderseal("retry", "-c", str(layout.config), "no-such-id")
    assert unknown.returncode == 1, unknown.stdout + unknown.stderr
    assert "no-such-id" in unknown.stderr
    assert (layout.errors / "fake.pdf.error.json").exists()

    fixed = make_pdf(None, text="fixed now")
    (layout.errors / "fake.pdf").write_bytes(fixed)
    out = folderseal("retry", "-c", str(layout.config), "--all")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "changed since it failed" in out.stderr and "into the inbox" in out.stderr
    assert (layout.errors / "fake.pdf.error.json").exists()
    (layout.errors / "fake.pdf").rename(layout.inbox / "fake.pdf")
    (layout.errors / "fake.pdf.error.json").unlink()
    wait_until(lambda: (layout.outbox / "fake.pdf.json").exists(), what="fake.pdf sealed")
    data = check_sidecar(layout.outbox / "fake.pdf.json", layout)
    assert data["input"]["sha256"] == _digest(fixed)
    wait_until(lambda: _status(layout)["folders"]["scans"]["failed"] == [], timeout=10,
               what="the failure no longer listed")
    assert error_records(layout.errors) == []
    assert daemon.stop() == 0


# -- secrets ------------------------------------------------------------------------------

def test_the_seal_password_never_leaks(tmp_path: Path) -> None:
    """With the seal password given inline, it appears in no log line, sidecar, error record,
    `status`, `status --json` or `check` output, and not in the state folder."""
    seal = make_trial_seal(tmp_path / "seal")
    password = seal.password().decode()
    layout = Layout(tmp_path, provider={"password": password, "password_file": ""})
    layout.write()
    daemon = Daemon(layout).started()
    make_pdf(layout.inbox / "good.pdf", text="secret test")
    (layout.inbox / "good.txt").write_text("secret test")
    (layout.inbox / "fake.pdf").write_bytes(b"fake\n%%EOF\n")
    (layout.inbox / "empty.txt").write_bytes(b"")
    wait_until(lambda: len(sidecars(layout.outbox)) == 2, what="two sidecars")
    wait_until(lambda: len(error_records(layout.errors)) == 2, what="two error records")
    outputs = {}
    for args in (("status",), ("status", "--json"), ("check",)):
        out = folderseal(*args, "-c", str(layout.config))
        assert out.returncode == 0, out.stdout + out.stderr
        outputs[" ".join(args)] = out.stdout + out.stderr
    assert daemon.stop() == 0
    outputs["daemon log"] = daemon.log_path.read_text()
    for path in [*sidecars(layout.outbox), *error_records(layout.errors)]:
        outputs[str(path)] = path.read_text()
    for path in layout.state.rglob("*"):
        if path.is_file():
            outputs[str(path)] = path.read_bytes().decode("latin-1")
    assert '"file.delivered"' in outputs["daemon log"]
    leaks = [where for where, text in outputs.items() if password in text]
    assert leaks == [], f"the password appears in {leaks}"


# -- certificate expiry -------------------------------------------------------------------

def test_a_seal_expiring_soon_is_warned_about(tmp_path: Path) -> None:
    """A seal expiring in 10 days passes `check` with an "expires" warning, shows in
    `status`, and the daemon logs provider.warning."""
    now = datetime.datetime.now(datetime.UTC)
    _make_seal(tmp_path / "soon", not_before=now - datetime.timedelta(days=1),
               not_after=now + datetime.timedelta(days=10))
    layout = Layout(tmp_path, provider={"certificate": "soon/seal.p12",
                                        "password_file": "soon/seal.pass"})
    layout.write()
    check = folderseal("check", "-c", str(layout.config))
    assert check.returncode == 0, check.stdout + check.stderr
    assert any(line.startswith("warning") and "expires" in line
               for line in check.stdout.splitlines()), check.stdout
    status = folderseal("status", "-c", str(layout.config))
    # Exit 1: the daemon is not running yet (an alarm); the expiry is a warning.
    assert status.returncode == 1 and "expires" in status.stdout, status.stdout + status.stderr
    assert "ALARM: the daemon is not running" in status.stdout
    daemon = Daemon(layout).started()
    event = daemon.wait_for_event("provider.warning", timeout=5)
    assert "expires" in event["warning"]
    assert daemon.stop() == 0


def test_an_expired_seal_is_a_configuration_error(tmp_path: Path) -> None:
    """An expired seal makes `check` and `run` exit 78 saying it expired."""
    now = datetime.datetime.now(datetime.UTC)
    _make_seal(tmp_path / "old", not_before=now - datetime.timedelta(days=30),
               not_after=now - datetime.timedelta(days=1))
    layout = Layout(tmp_path, provider={"certificate": "old/seal.p12",
                                        "password_file": "old/seal.pass"})
    layout.write()
    check = folderseal("check", "-c", str(layout.config))
    assert check.returncode == CONFIG_ERROR, check.stdout + check.stderr
    assert "expired" in check.stdout
    run = folderseal("run", "-c", str(layout.config), timeout=30)
    assert run.returncode == CONFIG_ERROR, run.stdout + run.stderr
    assert "expired" in run.stderr


def test_a_password_file_others_may_read_is_warned_about(tmp_path: Path) -> None:
    """A seal password file readable by every account passes `check` with a warning naming
    the file and chmod 600, and the daemon logs the same warning at start."""
    layout = Layout(tmp_path)
    layout.write()
    password_file = tmp_path / "seal" / "seal.pass"
    password_file.chmod(0o644)
    check = folderseal("check", "-c", str(layout.config))
    assert check.returncode == 0, check.stdout + check.stderr
    assert (f"warning: provider local: password_file {password_file} is readable by every "
            "account") in check.stdout
    assert "chmod 600" in check.stdout
    daemon = Daemon(layout).started()
    event = daemon.wait_for_event("provider.warning", timeout=5)
    assert str(password_file) in event["warning"] and "chmod 600" in event["warning"]
    assert daemon.stop() == 0


def test_a_secret_in_a_config_others_may_read_is_warned_about(tmp_path: Path) -> None:
    """A seal password written into a config.toml every account may read passes `check`
    with a warning naming the key (not the password) and the fix, and the daemon logs the
    same warning at start."""
    layout = Layout(tmp_path)
    layout.write()
    password = (tmp_path / "seal" / "seal.pass").read_text().strip()
    layout.provider = {"password_file": "", "password": password}
    layout.write()
    layout.config.chmod(0o644)
    check = folderseal("check", "-c", str(layout.config))
    assert check.returncode == 0, check.stdout + check.stderr
    assert (f"warning: {layout.config} holds providers.local.password and is readable by "
            "every account") in check.stdout
    assert "password_file" in check.stdout and password not in check.stdout
    daemon = Daemon(layout).started()
    event = daemon.wait_for_event("config.warning", timeout=5)
    assert event["config"] == str(layout.config) and "chmod 600" in event["warning"]
    assert daemon.stop() == 0


# -- folder options, one daemon watching one folder per option ----------------------------
#
# Starting a daemon costs a second or two, so these cases share one daemon that watches
# one folder per option (a realistic configuration in itself); each test uses only its
# own folder, and the daemon must still be running at the end of each.

@dataclass(frozen=True)
class Box:
    """The inbox, outbox and errors folder of one configured folder."""

    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def errors(self) -> Path:
        return self.root / "errors"


@dataclass(frozen=True)
class Shared:
    layout: Layout
    daemon: Daemon
    boxes: dict[str, Box]

    def box(self, name: str) -> Box:
        assert self.daemon.process.poll() is None, "the shared daemon is not running"
        return self.boxes[name]


SHARED_FOLDERS: dict[str, dict[str, Any]] = {
    "skip": {"duplicates": "skip"},
    "archived": {"archive": "archived/archive"},
    "private": {"file_mode": "0600"},
    "taken": {},
    "polled": {"watch": "polling", "poll_interval_seconds": 0.5, "rescan_seconds": 60.0},
}


def _toml_value(value: Any) -> str:
    return repr(value) if isinstance(value, int | float) else json.dumps(value)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    root = tmp_path_factory.mktemp("shared")
    boxes = {"scans": Box(root)}
    extra: list[str] = []
    for name, options in SHARED_FOLDERS.items():
        boxes[name] = Box(root / name)
        table = {"inbox": f"{name}/inbox", "outbox": f"{name}/outbox",
                 "errors": f"{name}/errors", "provider": "local", **FAST, **options}
        for sub in ("inbox", "outbox", "errors"):
            (root / name / sub).mkdir(parents=True)
        extra += ["", f"[folders.{name}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    (root / "archived" / "archive").mkdir()
    layout = Layout(root, extra="\n".join(extra) + "\n")
    layout.write()
    daemon = Daemon(layout)
    Daemon.running.remove(daemon)  # conftest stops daemons after each test; this one is ours
    try:
        daemon.started()
        yield Shared(layout, daemon, boxes)
        assert daemon.stop() == 0, "the shared daemon did not stop cleanly"
    finally:
        daemon.kill()


def test_duplicates_skip_sends_a_second_copy_to_errors(shared: Shared) -> None:
    """With duplicates = "skip", content already delivered goes to errors as `duplicate`."""
    box = shared.box("skip")
    (box.inbox / "first.txt").write_text("the same content")
    wait_until(lambda: (box.outbox / "first.txt.json").exists(), what="first sealed")
    wait_until(lambda: not list((box.inbox / ".folderseal" / "work" / "batches").rglob("*.txt")),
               timeout=10, what="first.txt finished")
    (box.inbox / "second.txt").write_text("the same content")
    wait_until(lambda: "second.txt" in _records(box.errors), what="second.txt in errors")
    assert _records(box.errors)["second.txt"]["error"]["code"] == "duplicate"
    assert (box.errors / "second.txt").read_text() == "the same content"
    assert not (box.outbox / "second.txt").exists()
    assert [json.loads(p.read_text())["source"] for p in sidecars(box.outbox)] == ["first.txt"]
    assert shared.daemon.process.poll() is None


def test_duplicates_sign_seals_every_copy(shared: Shared) -> None:
    """With the default duplicates = "sign", the same content dropped again is sealed again:
    under -1 when the name repeats, under its own name otherwise."""
    box = shared.box("scans")
    (box.inbox / "copy.txt").write_text("twice")
    wait_until(lambda: (box.outbox / "copy.txt.json").exists(), what="first sealed")
    (box.inbox / "copy.txt").write_text("twice")
    (box.inbox / "other.txt").write_text("twice")
    wait_until(lambda: len(sidecars(box.outbox)) == 3, what="three sidecars")
    for name in ("copy.txt.json", "copy-1.txt.json", "other.txt.json"):
        data = check_sidecar(box.outbox / name, shared.layout)
        assert data["input"]["sha256"] == _digest(b"twice")
    assert error_records(box.errors) == []
    assert shared.daemon.process.poll() is None


def test_archive_keeps_originals_at_their_relative_path(shared: Shared) -> None:
    """With an archive folder, originals end there at their relative path with their
    original bytes after delivery, and the inbox is left empty."""
    box = shared.box("archived")
    archive = box.root / "archive"
    pdf = make_pdf(None, text="archive me")
    (box.inbox / "2026" / "11").mkdir(parents=True)
    (box.inbox / "2026" / "11" / "invoice.pdf").write_bytes(pdf)
    (box.inbox / "memo.txt").write_bytes(b"memo body")
    wait_until(lambda: len(sidecars(box.outbox)) == 2, what="two sidecars")
    for sidecar in sidecars(box.outbox):
        check_sidecar(sidecar, shared.layout)
    wait_until(lambda: (archive / "memo.txt").exists()
               and (archive / "2026" / "11" / "invoice.pdf").exists(), what="archived")
    assert (archive / "2026" / "11" / "invoice.pdf").read_bytes() == pdf
    assert (archive / "memo.txt").read_bytes() == b"memo body"
    assert (box.outbox / "memo.txt").read_bytes() == b"memo body"
    modes = {p.name: oct(_mode(p)) for p in box.outbox.rglob("*") if p.is_file()}
    assert set(modes.values()) == {oct(0o644)}, f"outputs missed the default file_mode: {modes}"
    wait_until(lambda: _inbox_files(box.inbox) == [], timeout=5, what="an empty inbox")
    (box.outbox / "memo.txt").write_bytes(b"changed in the outbox")
    assert (archive / "memo.txt").read_bytes() == b"memo body", "archive shares the output"
    assert shared.daemon.process.poll() is None


def test_file_mode_applies_to_outputs_and_sidecars(shared: Shared) -> None:
    """file_mode = "0600" gives every published output and sidecar mode 0600."""
    box = shared.box("private")
    make_pdf(box.inbox / "private.pdf", text="mode")
    (box.inbox / "private.txt").write_text("mode")
    wait_until(lambda: len(sidecars(box.outbox)) == 2, what="two sidecars")
    published = sorted(p for p in box.outbox.rglob("*") if p.is_file())
    assert [p.name for p in published] == ["private.pdf", "private.pdf.json", "private.txt",
                                           "private.txt.json", "private.txt.p7s"]
    modes = {p.name: oct(_mode(p)) for p in published}
    assert set(modes.values()) == {oct(0o600)}, modes
    assert shared.daemon.process.poll() is None


def test_taken_names_move_the_whole_output_group_to_a_suffix(shared: Shared) -> None:
    """A taken output name sends the signed file and sidecar to -1 leaving the foreign file
    alone; a taken .p7s alone moves original, signature and sidecar together to -1."""
    box = shared.box("taken")
    (box.outbox / "report.pdf").write_bytes(b"someone else's report")
    (box.outbox / "note.txt.p7s").write_bytes(b"someone else's signature")
    make_pdf(box.inbox / "report.pdf", text="conflict")
    (box.inbox / "note.txt").write_text("conflict note")
    wait_until(lambda: len(sidecars(box.outbox)) == 2, what="two sidecars")
    assert (box.outbox / "report.pdf").read_bytes() == b"someone else's report"
    assert (box.outbox / "note.txt.p7s").read_bytes() == b"someone else's signature"
    report = check_sidecar(box.outbox / "report-1.pdf.json", shared.layout)
    assert [o["path"] for o in report["outputs"]] == ["report-1.pdf"]
    note = check_sidecar(box.outbox / "note-1.txt.json", shared.layout)
    assert sorted(o["path"] for o in note["outputs"]) == ["note-1.txt", "note-1.txt.p7s"]
    assert sorted(p.name for p in box.outbox.iterdir()) == [
        "note-1.txt", "note-1.txt.json", "note-1.txt.p7s", "note.txt.p7s",
        "report-1.pdf", "report-1.pdf.json", "report.pdf"], "the group was split"
    assert shared.daemon.process.poll() is None


def test_polling_mode_is_logged_and_seals_files(shared: Shared) -> None:
    """With watch = "polling" the daemon logs folder.watching with mode polling for that
    folder and still seals a dropped file."""
    box = shared.box("polled")
    watching = [e for e in shared.daemon.events()
                if e.get("event") == "folder.watching" and e.get("folder") == "polled"]
    assert [e["mode"] for e in watching] == ["polling"], watching
    (box.inbox / "polled.txt").write_text("found by polling")
    wait_until(lambda: (box.outbox / "polled.txt.json").exists(), timeout=15,
               what="polled.txt sealed")
    check_sidecar(box.outbox / "polled.txt.json", shared.layout)
    assert _status(shared.layout)["folders"]["polled"]["watch"] == "polling"
    assert shared.daemon.process.poll() is None


# -- outage -------------------------------------------------------------------------------

def test_an_inbox_that_goes_away_is_an_outage_not_a_crash(tmp_path: Path) -> None:
    """An inbox renamed away is logged as folder.outage while the daemon keeps running;
    renamed back, the folder is watched again, nothing in it was deleted, and files are
    sealed."""
    layout = Layout(tmp_path)
    layout.write()
    (layout.inbox / ".keep-me").write_text("ignored, must survive")
    daemon = Daemon(layout).started()
    daemon.wait_for_event("folder.watching")
    aside = tmp_path / "inbox-aside"
    os.rename(layout.inbox, aside)
    daemon.wait_for_event("folder.outage", timeout=15)
    assert daemon.process.poll() is None, "the daemon died when its inbox went away"
    (aside / "during.txt").write_text("dropped during the outage")
    marker = (aside / ".folderseal" / "work" / "store-id").read_text()
    os.rename(aside, layout.inbox)

    def watching_again() -> bool:
        return sum(e.get("event") == "folder.watching" for e in daemon.events()) >= 2

    wait_until(watching_again, timeout=15, what="a second folder.watching event")
    (layout.inbox / "after.txt").write_text("dropped after the outage")
    wait_until(lambda: (layout.outbox / "after.txt.json").exists()
               and (layout.outbox / "during.txt.json").exists(), what="both sealed")
    assert daemon.process.poll() is None
    assert (layout.inbox / ".keep-me").read_text() == "ignored, must survive"
    assert (layout.work / "store-id").read_text() == marker
    assert daemon.stop() == 0
    assert not any(e.get("event") == "daemon.crashed" for e in daemon.events())


# -- in-flight limit ----------------------------------------------------------------------

def test_in_flight_limit_leaves_files_in_the_inbox_until_there_is_room(tmp_path: Path) -> None:
    """With max_in_flight_files = 2 no more than 2 files are ever claimed, the rest stay in
    the inbox, `status` shows why claiming paused, and all 5 are sealed in the end."""
    layout = Layout(tmp_path, folder={"max_in_flight_files": 2, "batch_max_wait_seconds": 2.0})
    layout.write()
    daemon = Daemon(layout).started()
    for i in range(5):
        (layout.inbox / f"limited-{i}.txt").write_text(f"limited {i}")
    wait_until(lambda: len(_claimed_files(layout)) == 2, timeout=10, what="two claims")
    assert len(_inbox_files(layout.inbox)) == 3, "more than 2 files left the inbox"
    most, paused = 2, ""
    deadline = time.monotonic() + 40
    while len(sidecars(layout.outbox)) < 5 and time.monotonic() < deadline:
        most = max(most, len(_claimed_files(layout)))
        assert most <= 2, f"{most} files claimed with max_in_flight_files = 2"
        if not paused:  # the heartbeat (every 2 s) falls inside the 2 s + signing wait
            paused = _status(layout)["folders"]["scans"]["paused"]
        time.sleep(0.05)
    assert len(sidecars(layout.outbox)) == 5
    assert "max_in_flight_files" in paused, f"status never showed the pause: {paused!r}"
    assert daemon.stop() == 0
    assert error_records(layout.errors) == []


# -- settling -----------------------------------------------------------------------------

def test_slow_writes_and_unfinished_pdfs_are_taken_only_when_complete(tmp_path: Path) -> None:
    """A file written in pieces with pauses shorter than settle_seconds is sealed whole, and
    a PDF without %%EOF waits in the inbox until its end arrives."""
    layout = Layout(tmp_path, folder={"settle_seconds": 0.6})
    layout.write()
    daemon = Daemon(layout).started()

    data = b"".join(b"line %04d of a slowly written file\n" % i for i in range(400))
    slow = layout.inbox / "slow.csv"

    def write_slowly() -> None:
        with slow.open("wb") as handle:
            for start in range(0, len(data), len(data) // 10):
                handle.write(data[start:start + len(data) // 10])
                handle.flush()
                time.sleep(0.15)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    pdf = make_pdf(None, text="unfinished")
    cut = pdf.rindex(b"%%EOF")
    unfinished = layout.inbox / "unfinished.pdf"
    unfinished.write_bytes(pdf[:cut])
    writer.join()
    wait_until(lambda: (layout.outbox / "slow.csv.json").exists(), what="slow.csv sealed")
    record = check_sidecar(layout.outbox / "slow.csv.json", layout)
    assert record["input"]["sha256"] == _digest(data), "sealed before it was complete"
    assert _inbox_files(layout.inbox) == ["unfinished.pdf"], "the unfinished PDF was taken"

    def status_says_why() -> bool:
        waiting = _status(layout)["folders"]["scans"]["waiting"]
        return any(w["source"] == "unfinished.pdf" and "%%EOF" in w["why"] for w in waiting)

    wait_until(status_says_why, timeout=10, what="status to say the PDF lacks %%EOF")
    assert _inbox_files(layout.inbox) == ["unfinished.pdf"], "the unfinished PDF was taken"
    with unfinished.open("ab") as handle:
        handle.write(pdf[cut:])
    wait_until(lambda: (layout.outbox / "unfinished.pdf.json").exists(),
               what="unfinished.pdf sealed")
    record = check_sidecar(layout.outbox / "unfinished.pdf.json", layout)
    assert record["input"]["sha256"] == _digest(pdf)
    assert error_records(layout.errors) == []
    assert len(sidecars(layout.outbox)) == 2
    assert daemon.stop() == 0
