"""`folderseal retry` as an operator meets it: the id in every error record and in
`status`, paths in the errors folder, a batch woken from its backoff, and only ever the
very file that failed moved, with `status` listing what is really in the errors folder.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from folderseal.providers.seal.emulator import start_seal
from folderseal.service import page
from tests.helpers import (
    Daemon,
    Layout,
    error_records,
    folderseal,
    sidecars,
    wait_until,
)

KEY = "retry-key-3e1f0a"
BUSY_SECONDS = 120


def _status(layout: Layout) -> dict[str, Any]:
    out = folderseal("status", "--json", "-c", str(layout.config))
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def _records(layout: Layout) -> dict[str, dict[str, Any]]:
    return {json.loads(p.read_text())["source"]: json.loads(p.read_text())
            for p in error_records(layout.errors)}


def _retry(layout: Layout, *args: str, cwd: Path | None = None,
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "folderseal", "retry", "-c",
                           str(layout.config), *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def _fail(layout: Layout, name: str, data: bytes) -> str:
    """Drop a file that cannot be sealed; its file id (the retry id), as `status` lists it."""
    def listed() -> set[str]:
        return {f["file"] for f in _status(layout)["folders"]["scans"]["failed"]
                if f["source"] == name}

    before = listed()
    (layout.inbox / name).write_bytes(data)
    wait_until(lambda: listed() - before, timeout=30, what=f"{name} failed, listed by status")
    return (listed() - before).pop()


def test_the_retry_id_is_in_the_record_and_status_and_retry_takes_a_path(
        tmp_path: Path) -> None:
    """Every error record has a top-level retry_id, which `status` (table and --json, once:
    as the failed file's `file`) and the status page show for the failed file; `retry`
    takes the path of the record (relative to the current folder) or of the original
    (absolute) as well as the id."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(layout).started()
    gap = _fail(layout, "slow-gap.txt", b"")
    fake = _fail(layout, "fake.pdf", b"not a pdf at all\n%%EOF\n")
    assert len({gap, fake}) == 2
    records = _records(layout)
    assert (records["slow-gap.txt"]["retry_id"], records["fake.pdf"]["retry_id"]) == (gap, fake)
    report = _status(layout)
    failed = report["folders"]["scans"]["failed"]
    assert {f["source"]: f["file"] for f in failed} == {"slow-gap.txt": gap, "fake.pdf": fake}
    assert all(list(f.values()).count(f["file"]) == 1 for f in failed), failed
    table = folderseal("status", "-c", str(layout.config)).stdout
    assert gap in table and fake in table, table
    html = page.render(report)
    assert gap in html and fake in html

    by_record = _retry(layout, "slow-gap.txt.error.json", cwd=layout.errors)
    assert by_record.returncode == 0, by_record.stdout + by_record.stderr
    assert gap in by_record.stdout and "back in the inbox" in by_record.stdout
    by_original = _retry(layout, str(layout.errors / "fake.pdf"))
    assert by_original.returncode == 0, by_original.stdout + by_original.stderr
    assert fake in by_original.stdout
    # Taken again from the inbox, both fail again: new records, new ids.
    wait_until(lambda: {r["retry_id"] for r in _records(layout).values()}.isdisjoint(
        {gap, fake}) and len(_records(layout)) == 2, timeout=30, what="both failed again")
    again = _retry(layout, gap)
    assert again.returncode == 0 and "earlier retry" in again.stdout, again.stdout
    assert daemon.stop() == 0


def _take_out(layout: Layout, name: str) -> None:
    """The operator moves a failed file and its record out of the errors folder."""
    kept = layout.root / "kept"
    kept.mkdir(exist_ok=True)
    for each in (name, name + ".error.json"):
        (layout.errors / each).rename(kept / each)


def test_a_failure_taken_out_of_errors_is_no_longer_listed_and_not_retried(
        tmp_path: Path) -> None:
    """A failed file the operator moved out of the errors folder (with its record) leaves
    `status` at the next rescan, and `retry` of its id says it is gone from there."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(layout).started()
    first = _fail(layout, "fake.pdf", b"first: not a pdf\n%%EOF\n")
    _take_out(layout, "fake.pdf")

    def unlisted() -> bool:
        scans = _status(layout)["folders"]["scans"]
        return scans["failed"] == [] and scans["files"].get("FAILED", 0) == 0

    wait_until(unlisted, timeout=20, what="status to stop listing the removed failure")
    gone = _retry(layout, first)
    assert gone.returncode == 1 and "gone from the errors folder" in gone.stderr, gone.stderr
    assert daemon.stop() == 0


def test_a_failure_put_back_into_errors_is_listed_again_and_retried(tmp_path: Path) -> None:
    """A failed file the operator took out of the errors folder (CLEARED) and put back is
    listed by `status` again at the next rescan, and `retry` of its id takes it."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(layout).started()
    first = _fail(layout, "fake.pdf", b"first: not a pdf\n%%EOF\n")
    _take_out(layout, "fake.pdf")

    def listed() -> bool:
        return first in {f["file"] for f in _status(layout)["folders"]["scans"]["failed"]}

    wait_until(lambda: not listed(), timeout=20, what="status to stop listing the removed one")
    for name in ("fake.pdf", "fake.pdf.error.json"):
        (layout.root / "kept" / name).rename(layout.errors / name)
    wait_until(listed, timeout=20, what="status to list the failure again")
    _take_out(layout, "fake.pdf")
    wait_until(lambda: not listed(), timeout=20, what="status to stop listing it again")
    assert daemon.stop() == 0
    (layout.root / "kept" / "fake.pdf").rename(layout.errors / "fake.pdf")  # CLEARED, back
    out = _retry(layout, first)
    assert out.returncode == 0 and "back in the inbox" in out.stdout, out.stdout + out.stderr
    assert (layout.inbox / "fake.pdf").read_bytes().startswith(b"first")


def test_retry_of_an_old_id_never_moves_a_later_failure_of_the_same_name(
        tmp_path: Path) -> None:
    """After the operator took a failure out of the errors folder and a later failure of
    the same name took its name there, `retry` of the old id moves nothing, while the
    path retries the file that is really there."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(layout).started()
    first = _fail(layout, "fake.pdf", b"first: not a pdf\n%%EOF\n")
    _take_out(layout, "fake.pdf")
    second = _fail(layout, "fake.pdf", b"second: not a pdf either\n%%EOF\n")
    assert second != first
    old = _retry(layout, first)
    assert old.returncode == 1, old.stdout + old.stderr
    assert (layout.errors / "fake.pdf").read_bytes().startswith(b"second")
    assert (layout.errors / "fake.pdf.error.json").exists()
    by_path = _retry(layout, str(layout.errors / "fake.pdf"))
    assert by_path.returncode == 0 and second in by_path.stdout, by_path.stderr
    assert daemon.stop() == 0


def test_retry_refuses_a_file_replaced_or_changed_in_errors(tmp_path: Path) -> None:
    """`retry` moves only the file that failed: a file put in its place (another inode) or
    one changed in place (another sha256) is refused with the reason and stays put."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(layout).started()
    replaced = _fail(layout, "a.pdf", b"a: not a pdf\n%%EOF\n")
    changed = _fail(layout, "b.pdf", b"b: not a pdf\n%%EOF\n")
    assert daemon.stop() == 0
    other = layout.errors / "other"
    other.write_bytes(b"another file, put where a.pdf was")
    os.replace(other, layout.errors / "a.pdf")
    with (layout.errors / "b.pdf").open("r+b") as f:
        f.write(b"B")
    out = _retry(layout, replaced)
    assert out.returncode == 1 and "not the one that failed" in out.stderr, out.stderr
    out = _retry(layout, changed)
    assert out.returncode == 1 and "changed since it failed" in out.stderr, out.stderr
    assert (layout.errors / "a.pdf").read_bytes().startswith(b"another file")
    assert (layout.errors / "b.pdf").read_bytes().startswith(b"B: not a pdf")
    assert list(layout.inbox.iterdir()) == [layout.inbox / ".folderseal"]


def test_a_failure_that_stayed_in_the_work_folder_is_retried_from_there(
        open_tmp: Path) -> None:
    """A file that could not be moved into the errors folder (unreadable by the daemon's
    user, and errors on another filesystem) stays in the work folder: its failure stays
    listed, and `retry` puts it back into the inbox from there instead of calling it
    removed by hand."""
    if os.geteuid() != 0:
        pytest.skip("mounts a tmpfs and runs the daemon as nobody: needs root (CI runs as root)")
    layout = Layout(open_tmp, folder={"stuck_after_seconds": 4.0})
    layout.write()
    subprocess.run(["chown", "-R", "nobody:nogroup", str(layout.root)], check=True)
    nobody = pwd.getpwnam("nobody")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=1m,uid={nobody.pw_uid},"
                    f"gid={nobody.pw_gid},mode=0755", "tmpfs", str(layout.errors)], check=True)
    try:
        daemon = Daemon(layout, user="nobody").started()
        locked = layout.inbox / "locked.txt"
        locked.write_text("root only")
        locked.chmod(0o600)  # owned by root: nobody may not read it, nor copy it
        wait_until(lambda: error_records(layout.errors), timeout=30, what="its error record")
        record = json.loads(error_records(layout.errors)[0].read_text())
        assert "could not be moved to the errors folder" in record["error"]["message"]
        kept = list(layout.work.rglob("locked.txt"))
        assert len(kept) == 1
        def reconciles() -> int:
            return len([e for e in daemon.events() if e["event"] == "errors.reconciled"])

        after = reconciles() + 2  # a reconcile or two: it stays listed
        wait_until(lambda: reconciles() >= after, timeout=60, what="two reconciles")
        failed = folderseal("status", "--json", "-c", str(layout.config), user="nobody")
        listed = json.loads(failed.stdout)["folders"]["scans"]["failed"]
        assert [f["file"] for f in listed] == [record["retry_id"]], listed
        assert daemon.stop() == 0
        out = folderseal("retry", "-c", str(layout.config), record["retry_id"], user="nobody")
        assert out.returncode == 0 and "back in the inbox" in out.stdout, out.stdout + out.stderr
        assert "removed" not in out.stdout + out.stderr
        assert locked.read_text() == "root only" and not kept[0].exists()
        assert error_records(layout.errors) == []
    finally:
        subprocess.run(["umount", str(layout.errors)], check=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Busy(BaseHTTPRequestHandler):
    """A SEAL that is overloaded: every request is answered 429, "come back in 120 s"."""

    def _busy(self) -> None:
        self.send_response(429)
        self.send_header("Retry-After", str(BUSY_SECONDS))
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = _busy

    def log_message(self, *args: object) -> None:
        pass


def test_retry_of_a_batch_waiting_out_a_backoff_wakes_it(tmp_path: Path) -> None:
    """After a provider outage, `retry <batch id>` of a batch waiting out its backoff makes
    it due now: it is sealed well before the time the store had it due; a retry of a batch
    neither failed nor waiting says what it is instead of "no failed file or batch"."""
    port = _free_port()
    (tmp_path / "signius.key").write_text(KEY + "\n")
    layout = Layout(tmp_path, provider={
        "kind": "seal", "base_url": f"http://127.0.0.1:{port}", "api_key_file": "signius.key",
        "poll_interval_seconds": 0.1, "timeout_seconds": 5.0, "status_grace_seconds": 1.0})
    layout.write()
    busy = ThreadingHTTPServer(("127.0.0.1", port), _Busy)
    threading.Thread(target=busy.serve_forever, daemon=True).start()
    try:
        daemon = Daemon(layout).started()
        (layout.inbox / "a.txt").write_text("sealed after the outage")

        def waiting_long() -> bool:
            batches = _status(layout)["folders"]["scans"]["batches"]
            return bool(batches) and (batches[0]["next_attempt_in"] or 0) >= 60

        wait_until(waiting_long, timeout=90, what="a batch told to wait 60 s or more")
    finally:
        busy.shutdown()
        busy.server_close()
    batch = _status(layout)["folders"]["scans"]["batches"][0]["batch"]
    with closing(sqlite3.connect(layout.state / "folderseal.sqlite")) as db:
        due = db.execute("SELECT next_attempt_at FROM batches WHERE id = ?", (batch,)).fetchone()[0]
    with start_seal(port=port, api_key=KEY, data_dir=tmp_path / "emulator",
                    step_delay=0.02, slow_seconds=0.3):
        out = _retry(layout, batch)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "woken" in out.stdout and "failed attempt" in out.stdout, out.stdout
        wait_until(lambda: len(sidecars(layout.outbox)) == 1, timeout=due - time.time(),
                   what="sealed before the batch was due")
        wait_until(lambda: _status(layout)["folders"]["scans"]["batches"] == [], timeout=30,
                   what="the batch cleaned")
        done = _retry(layout, batch)
        assert done.returncode == 0 and "finished" in done.stdout, done.stdout + done.stderr
    assert daemon.stop() == 0
