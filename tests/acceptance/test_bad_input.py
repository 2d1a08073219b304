"""Bad input: each case gets a clear record, nothing is lost, and the daemon keeps running.

Permission cases run the daemon as the unprivileged user ``nobody`` (tests run as root
in CI, where file permissions do not bite).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyhanko.pdf_utils.crypt.permissions import StandardPermissions

from tests.helpers import (
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


def _record(layout: Layout, source: str) -> dict:
    for path in error_records(layout.errors):
        data = json.loads(path.read_text())
        if data["source"] == source:
            return data
    raise AssertionError(f"no error record for {source}")


def _records(layout: Layout) -> dict[str, dict]:
    return {json.loads(p.read_text())["source"]: json.loads(p.read_text())
            for p in error_records(layout.errors)}


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Layout, Daemon]]:
    layout = Layout(tmp_path, folder={"stuck_after_seconds": 4.0})
    layout.write()
    daemon = Daemon(layout).started()
    yield layout, daemon
    assert daemon.stop() == 0, "the daemon did not keep running, or did not stop cleanly"


def test_broken_inputs_go_to_errors_with_reasons(running: tuple[Layout, Daemon]) -> None:
    """Empty files, encrypted PDFs, non-PDFs named .pdf, truncated PDFs and symlinks each go
    to errors with a record naming the reason; a good file beside them is still sealed."""
    layout, _daemon = running
    outside = layout.root / "secret.txt"
    outside.write_text("not for sealing")
    (layout.inbox / "empty.txt").write_bytes(b"")
    make_encrypted_pdf(layout.inbox / "locked.pdf")
    (layout.inbox / "fake.pdf").write_bytes(b"this is a text file\n%%EOF\n")
    good = make_pdf(None, text="good")
    (layout.inbox / "truncated.pdf").write_bytes(good[: len(good) // 2] + b"\n%%EOF\n")
    (layout.inbox / "link.pdf").symlink_to(outside)
    (layout.inbox / "good.pdf").write_bytes(good)
    wanted = {"empty.txt": "empty", "locked.pdf": "encrypted_pdf", "fake.pdf": "not_a_pdf",
              "truncated.pdf": "broken_pdf", "link.pdf": "not_regular"}
    wait_until(lambda: set(_records(layout)) >= set(wanted), timeout=30, what="error records")
    records = _records(layout)
    for source, code in wanted.items():
        assert records[source]["status"] == "failed"
        assert records[source]["error"]["code"] == code, records[source]
        assert records[source]["error"]["message"]
        assert os.path.lexists(layout.errors / source), f"{source} is not kept in errors"
    assert (layout.errors / "link.pdf").is_symlink(), "the link itself is kept, not followed"
    assert outside.read_text() == "not for sealing"
    wait_until(lambda: (layout.outbox / "good.pdf.json").exists(), what="good.pdf sealed")
    check_sidecar(layout.outbox / "good.pdf.json", layout)
    assert not list(layout.outbox.glob("secret*"))


def test_error_records_say_what_to_do_next(running: tuple[Layout, Daemon]) -> None:
    """An empty file, a PDF that needs a password to open and one that opens without one
    but forbids changes (an owner password only) each get a record saying what to do;
    the owner-password one is not told to remove a password."""
    layout, _daemon = running
    (layout.inbox / "empty.txt").write_bytes(b"")
    make_encrypted_pdf(layout.inbox / "locked.pdf")
    make_encrypted_pdf(layout.inbox / "restricted.pdf", user_password="",
                       permissions=StandardPermissions.ALLOW_PRINTING)
    wanted = {"empty.txt", "locked.pdf", "restricted.pdf"}
    wait_until(lambda: set(_records(layout)) >= wanted, timeout=30, what="error records")
    message = {source: record["error"]["message"]
               for source, record in _records(layout).items()}
    assert "Scan or copy it into the inbox again" in message["empty.txt"]
    assert "needs a password to open" in message["locked.pdf"]
    assert "save it again without a password" in message["locked.pdf"]
    restricted = message["restricted.pdf"]
    assert "opens without a password" in restricted and "forbids changes" in restricted
    assert "without security restrictions" in restricted and "print it to a new PDF" in restricted
    assert "remove the password" not in restricted


def test_a_failed_files_timeline_holds_only_its_own_steps(
        running: tuple[Layout, Daemon]) -> None:
    """A PDF the signer refuses was submitted and accepted with its batch, never signed or
    downloaded, and its record's timeline says just that; a good file has every step."""
    layout, _daemon = running
    make_encrypted_pdf(layout.inbox / "refused.pdf")
    (layout.inbox / "fine.pdf").write_bytes(make_pdf(None, text="fine"))
    wait_until(lambda: "refused.pdf" in _records(layout)
               and (layout.outbox / "fine.pdf.json").exists(), what="both outcomes")
    refused = _records(layout)["refused.pdf"]
    assert [s["step"] for s in refused["timeline"]] == [
        "seen", "claimed", "batched", "submitted", "accepted", "failed"]
    fine = json.loads((layout.outbox / "fine.pdf.json").read_text())
    assert [s["step"] for s in fine["timeline"]] == [
        "seen", "claimed", "batched", "submitted", "accepted", "signed", "downloaded",
        "delivered"]


def test_odd_names_are_sealed_and_recorded_readably(running: tuple[Layout, Daemon]) -> None:
    """Names with a newline or invalid UTF-8 bytes are sealed under the same name; the
    sidecar shows the invalid bytes as \\x escapes."""
    layout, _daemon = running
    newline = "two\nlines.txt"
    (layout.inbox / newline).write_text("newline")
    raw = os.path.join(os.fsencode(layout.inbox), b"caf\xe9.txt")
    with open(raw, "wb") as handle:
        handle.write(b"latin-1 name")
    wait_until(lambda: len(sidecars(layout.outbox)) == 2, what="two sidecars")
    assert (layout.outbox / newline).read_text() == "newline"
    assert os.path.exists(os.path.join(os.fsencode(layout.outbox), b"caf\xe9.txt"))
    sources = sorted(json.loads(p.read_text())["source"] for p in sidecars(layout.outbox))
    assert sources == ["caf\\xe9.txt", "two\nlines.txt"]


def test_files_deleted_or_replaced_while_settling(running: tuple[Layout, Daemon]) -> None:
    """A file deleted before it settles leaves no trace; one replaced while settling is
    sealed with its final content."""
    layout, daemon = running
    doomed = layout.inbox / "doomed.txt"
    doomed.write_text("gone soon")
    doomed.unlink()
    target = layout.inbox / "replaced.txt"
    target.write_text("first version")
    time.sleep(0.1)
    newer = layout.inbox / ".replaced.tmp"
    newer.write_text("second version, written elsewhere and renamed over")
    newer.rename(target)
    wait_until(lambda: (layout.outbox / "replaced.txt.json").exists(), what="replaced sealed")
    assert (layout.outbox / "replaced.txt").read_text().startswith("second version")
    time.sleep(1)
    assert not (layout.outbox / "doomed.txt").exists()
    assert error_records(layout.errors) == []
    assert daemon.process.poll() is None


def test_crafted_scanner_files_do_not_stop_the_daemon(running: tuple[Layout, Daemon]) -> None:
    """A BigTIFF whose directory lies at 2**63 + 5 and a DOCX whose Zip64 locator points
    at 2**63 + 1 (bytes that once made the content check raise, ending the daemon at
    every start) wait, then go to errors with a record naming what is wrong; the daemon
    keeps running, and a file dropped after them is sealed."""
    layout, daemon = running
    (layout.inbox / "crafted.tif").write_bytes(
        b"II+\0\x08\0\0\0" + struct.pack("<Q", 2**63 + 5) + bytes(100))
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                      0xFFFFFFFF, 0)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, 2**63 + 1, 1)
    (layout.inbox / "crafted.docx").write_bytes(b"PK\x03\x04" + bytes(100) + locator + end)
    wait_until(lambda: len(error_records(layout.errors)) == 2, timeout=60,
               what="both crafted files in errors")
    records = _records(layout)
    assert records["crafted.tif"]["error"]["code"] == "stuck"
    assert "the TIFF is cut short" in records["crafted.tif"]["error"]["message"]
    assert "no complete end record" in records["crafted.docx"]["error"]["message"]
    (layout.inbox / "after.txt").write_text("dropped after the crafted files")
    wait_until(lambda: (layout.outbox / "after.txt.json").exists(), what="after.txt sealed")
    check_sidecar(layout.outbox / "after.txt.json", layout)
    assert daemon.process.poll() is None
    assert not [e for e in daemon.events() if e.get("event") == "daemon.crashed"]


def test_a_name_the_outbox_refuses_fails_that_file_alone(running: tuple[Layout, Daemon]) -> None:
    """A name whose sidecar name would be too long for the filesystem fails with a clear
    record (under a shortened name in errors); the other files are sealed."""
    layout, _daemon = running
    long_name = "n" * 249 + ".txt"           # 253 bytes: fits; its sidecar name does not
    (layout.inbox / long_name).write_text("long")
    (layout.inbox / "short.txt").write_text("short")
    wait_until(lambda: error_records(layout.errors), what="error record")
    record = json.loads(error_records(layout.errors)[0].read_text())
    assert record["source"] == long_name
    assert record["error"]["code"] == "name_refused"
    assert "name" in record["error"]["message"]
    kept = layout.errors / record["error"]["original"]
    assert kept.read_text() == "long"
    assert not (layout.outbox / long_name).exists(), "a partial group was left published"
    wait_until(lambda: (layout.outbox / "short.txt.json").exists(), what="short.txt sealed")


# -- as an unprivileged user --------------------------------------------------------------

def _give_to_nobody(layout: Layout) -> None:
    layout.write()
    subprocess.run(["chown", "-R", "nobody:nogroup", str(layout.root)], check=True)


def test_unreadable_file_waits_then_goes_to_errors(open_tmp: Path) -> None:
    """A file the daemon may not read is not taken; status says why; after
    stuck_after_seconds it goes to errors with that reason, and the daemon keeps running."""
    layout = Layout(open_tmp, folder={"stuck_after_seconds": 10.0})
    _give_to_nobody(layout)
    daemon = Daemon(layout, user="nobody").started()
    locked = layout.inbox / "locked.txt"
    locked.write_text("root only")
    locked.chmod(0o600)                      # owned by root: nobody cannot read it
    (layout.inbox / "open.txt").write_text("anyone")
    os.chmod(layout.inbox / "open.txt", 0o644)
    wait_until(lambda: (layout.outbox / "open.txt.json").exists(), what="open.txt sealed")

    def status_says_why() -> bool:
        out = folderseal("status", "--json", "-c", str(layout.config), user="nobody")
        waiting = json.loads(out.stdout)["folders"]["scans"]["waiting"]
        return any(w["source"] == "locked.txt" and "may not read" in w["why"] for w in waiting)

    wait_until(status_says_why, timeout=15, what="status to show the unreadable file")
    wait_until(lambda: error_records(layout.errors), timeout=20, what="the stuck record")
    record = _record(layout, "locked.txt")
    assert record["error"]["code"] == "stuck"
    assert "may not read" in record["error"]["message"]
    assert (layout.errors / "locked.txt").exists()
    assert daemon.stop() == 0


def test_read_only_outbox_makes_work_wait_and_resume(open_tmp: Path) -> None:
    """With a folder of the outbox read-only nothing is published or deleted: files wait in
    the work folder, status shows the reason; once writable again everything is delivered.
    (A read-only outbox itself stops claims: tests/acceptance/test_blocked.py.)"""
    layout = Layout(open_tmp)
    for folder in (layout.inbox / "sub", layout.outbox / "sub"):
        folder.mkdir(parents=True)
    _give_to_nobody(layout)
    (layout.outbox / "sub").chmod(0o555)
    daemon = Daemon(layout, user="nobody").started()
    data = make_pdf(None, text="waiting")
    (layout.inbox / "sub" / "wait.pdf").write_bytes(data)
    os.chown(layout.inbox / "sub" / "wait.pdf", 65534, 65534)
    daemon.wait_for_event("batch.postponed", timeout=30)
    kept = [p for p in (layout.work / "batches").rglob("*.pdf")]
    assert len(kept) == 1 and sha256(kept[0]) == __import__("hashlib").sha256(data).hexdigest()
    out = folderseal("status", "--json", "-c", str(layout.config), user="nobody")
    batches = json.loads(out.stdout)["folders"]["scans"]["batches"]
    assert batches and "outbox" in (batches[0]["last_error"] or "")
    assert list((layout.outbox / "sub").iterdir()) == []
    (layout.outbox / "sub").chmod(0o755)
    wait_until(lambda: (layout.outbox / "sub" / "wait.pdf.json").exists(), timeout=30,
               what="delivery after the outbox became writable")
    check_sidecar(layout.outbox / "sub" / "wait.pdf.json", layout)
    assert daemon.stop() == 0


def test_full_outbox_makes_work_wait_and_resume(tmp_path: Path) -> None:
    """With the outbox full (ENOSPC) files wait and nothing is lost; freeing space resumes."""
    layout = Layout(tmp_path, folder={"min_free_bytes": 0})
    layout.write()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(layout.outbox)],
                   check=True)
    try:
        filler = layout.outbox / ".filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        daemon = Daemon(layout).started()
        data = os.urandom(50_000)
        (layout.inbox / "big.bin").write_bytes(data)
        daemon.wait_for_event("batch.postponed", timeout=30)
        assert [p.name for p in (layout.work / "batches").rglob("*") if p.is_file()] != []
        assert not (layout.outbox / "big.bin").exists()
        filler.unlink()
        wait_until(lambda: (layout.outbox / "big.bin.json").exists(), timeout=40,
                   what="delivery after space was freed")
        assert (layout.outbox / "big.bin").read_bytes() == data
        assert daemon.stop() == 0
    finally:
        subprocess.run(["umount", "-l", str(layout.outbox)], check=False)


def test_low_disk_space_pauses_claims_and_nothing_is_lost(tmp_path: Path) -> None:
    """Under min_free_bytes nothing is claimed: files stay in the inbox and status says why;
    with the limit lowered (here by its environment variable) they are sealed."""
    layout = Layout(tmp_path, folder={"min_free_bytes": "100PB"})
    layout.write()
    daemon = Daemon(layout).started()
    (layout.inbox / "waiting.txt").write_text("no room yet")

    def paused() -> bool:
        out = folderseal("status", "--json", "-c", str(layout.config))
        return "min_free_bytes" in json.loads(out.stdout)["folders"]["scans"]["paused"]

    wait_until(paused, timeout=15, what="status to report the pause")
    assert (layout.inbox / "waiting.txt").exists()
    assert daemon.stop() == 0
    resumed = Daemon(layout, env={"FOLDERSEAL_FOLDERS__SCANS__MIN_FREE_BYTES": "1MB"}).started()
    wait_until(lambda: (layout.outbox / "waiting.txt.json").exists(), what="the file sealed")
    check_sidecar(layout.outbox / "waiting.txt.json", layout)
    assert resumed.stop() == 0


def _claimed_before_errors_went(layout: Layout, name: str, data: bytes) -> Path:
    """Have ``name`` claimed (the daemon dies right after), then move the errors folder
    away: a claim made before the folder went, as a share that drops out would leave."""
    crashing = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": "claimed"}).started()
    (layout.inbox / name).write_bytes(data)
    crashing.process.wait(timeout=30)
    assert not (layout.inbox / name).exists(), "the file was not claimed"
    aside = layout.root / "errors-aside"
    layout.errors.rename(aside)
    return aside


def test_a_failure_waits_while_the_errors_folder_is_gone(tmp_path: Path) -> None:
    """A file claimed before the errors folder went away and that cannot be sealed stays in
    the work folder while it is gone (the daemon keeps running); once the folder is back
    it lands there."""
    layout = Layout(tmp_path, folder={"rescan_seconds": 1.0})
    layout.write()
    aside = _claimed_before_errors_went(layout, "fake.pdf", b"not a pdf at all\n%%EOF\n")
    daemon = Daemon(layout).started()
    daemon.wait_for_event("batch.postponed", timeout=30)
    assert daemon.process.poll() is None
    assert (layout.work / "batches").exists()
    assert [p for p in (layout.work / "batches").rglob("*") if p.is_file()]
    aside.rename(layout.errors)
    wait_until(lambda: error_records(layout.errors), timeout=30, what="the error record")
    assert _record(layout, "fake.pdf")["error"]["code"] == "not_a_pdf"
    assert (layout.errors / "fake.pdf").read_bytes().startswith(b"not a pdf")
    assert daemon.stop() == 0


def test_an_empty_file_fails_after_the_errors_folder_returns(tmp_path: Path) -> None:
    """A claim rejected at once (an empty file) while the errors folder is gone is kept and
    put into the errors folder by a later scan; nothing crashes."""
    layout = Layout(tmp_path, folder={"rescan_seconds": 1.0, "settle_seconds": 0.1})
    layout.write()
    aside = _claimed_before_errors_went(layout, "empty.txt", b"")
    daemon = Daemon(layout).started()
    daemon.wait_for_event("file.fail_postponed", timeout=30)
    assert daemon.process.poll() is None
    aside.rename(layout.errors)
    wait_until(lambda: error_records(layout.errors), timeout=30, what="the error record")
    assert _record(layout, "empty.txt")["error"]["code"] == "empty"
    assert daemon.stop() == 0


def _fill(folder: Path) -> Path:
    filler = folder / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    return filler


def test_full_state_folder_pauses_claims_and_resumes(tmp_path: Path) -> None:
    """With the state folder full SQLite refuses writes: the daemon keeps running, claims
    pause with the reason in the log, nothing is lost; freeing space resumes the work."""
    layout = Layout(tmp_path, folder={"min_free_bytes": 0})
    layout.write()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(layout.state)],
                   check=True)
    try:
        daemon = Daemon(layout).started()
        filler = _fill(layout.state)
        data = os.urandom(20_000)
        (layout.inbox / "scan.bin").write_bytes(data)
        event = daemon.wait_for_event("folder.paused", timeout=30)
        assert "free space" in event["reason"]
        assert daemon.process.poll() is None
        assert not (layout.outbox / "scan.bin").exists()
        waiting = [p for p in (layout.work).rglob("*") if p.is_file() and p.name != "store-id"]
        assert (layout.inbox / "scan.bin").exists() or waiting, "the file vanished"
        filler.unlink()
        wait_until(lambda: (layout.outbox / "scan.bin.json").exists(), timeout=40,
                   what="delivery after space was freed")
        assert (layout.outbox / "scan.bin").read_bytes() == data
        check_sidecar(layout.outbox / "scan.bin.json", layout)
        assert daemon.stop() == 0
    finally:
        subprocess.run(["umount", "-l", str(layout.state)], check=False)
