"""The real `folderseal run` in a subprocess: files dropped, results checked, SIGTERM sent."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.helpers import Daemon, Layout, check_sidecar, error_records, sha256, sidecars, wait_until
from tests.pdfs import make_pdf


def _write_slowly(path: Path, data: bytes, pieces: int = 6, pause: float = 0.1) -> None:
    step = max(1, len(data) // pieces)
    with path.open("wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start:start + step])
            handle.flush()
            time.sleep(pause)


def _drop_fifty(inbox: Path) -> dict[str, str]:
    """50 mixed files: PDFs and others, unicode names, one name in two subfolders, slow writers."""
    expected: dict[str, str] = {}
    slow: list[threading.Thread] = []
    for i in range(50):
        if i % 10 == 0:
            folder = "a" if i % 20 == 0 else "b"
            source = f"{folder}/Bericht {i // 20}.pdf"
        elif i % 3 == 0:
            source = f"Rechnung für März {i}.pdf"
        elif i % 3 == 1:
            source = f"scans/page-{i:02d}.PDF"
        else:
            source = f"daten/übersicht_{i}.csv" if i % 4 else f"photo-{i}.jpg"
        data = (make_pdf(None, pages=1 + i % 3, text=f"document {i}")
                if source.lower().endswith(".pdf") else bytes([i % 256]) * (1000 + 997 * i))
        path = inbox / source
        path.parent.mkdir(parents=True, exist_ok=True)
        expected[source] = __import__("hashlib").sha256(data).hexdigest()
        if i % 9 == 4:
            slow.append(threading.Thread(target=_write_slowly, args=(path, data)))
            slow[-1].start()
        else:
            path.write_bytes(data)
    for thread in slow:
        thread.join()
    return expected


def test_fifty_mixed_files_come_out_sealed_and_sigterm_exits_zero(tmp_path: Path) -> None:
    """Fifty dropped files (PDFs, others, unicode, twins in subfolders, slow writers) all come
    out sealed exactly once with valid signatures and matching sidecars; SIGTERM exits 0."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(layout).started()
    expected = _drop_fifty(layout.inbox)
    assert "a/Bericht 0.pdf" in expected and "b/Bericht 0.pdf" in expected
    wait_until(lambda: len(sidecars(layout.outbox)) >= 50, timeout=90, what="50 sidecars")
    seen = {}
    for sidecar in sidecars(layout.outbox):
        data = check_sidecar(sidecar, layout)
        assert data["source"] not in seen, f"{data['source']} delivered twice"
        seen[data["source"]] = data["input"]["sha256"]
        assert data["outputs"][0]["path"] == data["source"], "output not at the source's path"
    assert seen == expected
    assert error_records(layout.errors) == []
    wait_until(lambda: not [p for p in layout.inbox.rglob("*") if p.is_file()
                            and ".folderseal" not in p.parts], timeout=10, what="empty inbox")
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 10
    # Originals were removed only after delivery, and nothing is left in the work folder.
    assert [p for p in (layout.work / "batches").rglob("*") if p.is_file()] == []
    assert [p for p in layout.incoming.rglob("*") if p.is_file()] == []
    twins = [layout.outbox / folder / "Bericht 0.pdf" for folder in ("a", "b")]
    assert sha256(twins[0]) != sha256(twins[1])


def test_the_same_name_twice_in_one_batch_gets_two_outputs(tmp_path: Path) -> None:
    """A scanner that reuses a name (same content even) before the first is delivered gets
    two separate results, name and name-1, each with its own sidecar."""
    layout = Layout(tmp_path, folder={"batch_max_wait_seconds": 2.0})
    layout.write()
    daemon = Daemon(layout).started()
    for _ in range(2):
        (layout.inbox / "scan.txt").write_text("identical page")
        wait_until(lambda: not (layout.inbox / "scan.txt").exists(), what="the claim")
    wait_until(lambda: len(sidecars(layout.outbox)) == 2, timeout=30, what="two sidecars")
    names = sorted(p.name for p in layout.outbox.iterdir())
    assert names == ["scan-1.txt", "scan-1.txt.json", "scan-1.txt.p7s",
                     "scan.txt", "scan.txt.json", "scan.txt.p7s"]
    for sidecar in sidecars(layout.outbox):
        check_sidecar(sidecar, layout)
    assert daemon.stop() == 0


def test_ctrl_c_stops_the_daemon_cleanly(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) finishes the current step and exits 0 within seconds."""
    import signal

    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(layout).started()
    (layout.inbox / "last.txt").write_text("sealed before the stop")
    wait_until(lambda: (layout.outbox / "last.txt.json").exists(), what="the file sealed")
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert "asked to stop" in daemon.log_path.read_text()


def test_claims_left_under_an_earlier_node_name_are_sealed_by_the_next_daemon(
        tmp_path: Path) -> None:
    """A daemon dies right after claiming a file; it comes back under another node name
    (the host was renamed, node = ""): it takes the earlier name's claims over, logs
    that, and seals the file."""
    layout = Layout(tmp_path)
    layout.write()
    layout.config.write_text(layout.config.read_text().replace('node = "test-node"',
                                                               'node = "old-name"'))
    crashing = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": "claimed"}).started()
    (layout.inbox / "a.txt").write_bytes(b"alpha\n")
    crashing.process.wait(timeout=30)
    old = layout.work / "nodes" / "old-name" / "incoming"
    assert [p.name for p in old.rglob("*") if p.is_file()] == ["a.txt"]
    layout.write()  # node = "test-node" again
    daemon = Daemon(layout).started()
    adopted = daemon.wait_for_event("claims.adopted")
    # Never recorded (the crash came first): its folder moves, and the scan records it.
    assert adopted["folders"] == {"old-name": 1} and adopted["claims"] == 0
    wait_until(lambda: (layout.outbox / "a.txt.json").exists(), what="a.txt sealed")
    check_sidecar(layout.outbox / "a.txt.json", layout)
    assert not [p for p in old.rglob("*") if p.is_file()]
    assert daemon.stop() == 0


def test_a_claim_waiting_in_the_layout_of_an_earlier_version_is_sealed_after_upgrade(
        tmp_path: Path) -> None:
    """A file claimed and recorded by a version that kept claims in <work>/incoming/:
    the upgraded daemon starts (the store is not taken for older than its work folder),
    moves the claim into its node's folder and seals it."""
    layout = Layout(tmp_path, folder={"batch_max_wait_seconds": 600})
    layout.write()
    before = Daemon(layout).started()
    (layout.inbox / "a.txt").write_bytes(b"alpha\n")
    before.wait_for_event("file.claimed")
    before.kill()
    [claim] = list(layout.incoming.iterdir())
    (layout.work / "incoming").mkdir()
    claim.rename(layout.work / "incoming" / claim.name)  # where the earlier version kept it
    layout.folder = {}
    layout.write()
    daemon = Daemon(layout).started()
    wait_until(lambda: (layout.outbox / "a.txt.json").exists(), what="a.txt sealed")
    assert not (layout.work / "incoming").exists()
    assert daemon.stop() == 0
