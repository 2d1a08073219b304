"""Writers that pause longer than settle_seconds, against the real daemon (settle 1 s):
a text file's parts are sealed apart but reported as suspected fragments; a JPEG's first
part is not whole, so the file waits and comes out whole."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from tests.helpers import (
    Daemon,
    Layout,
    check_sidecar,
    error_records,
    folderseal,
    sidecars,
    wait_until,
)
from tests.images import make_jpeg

SETTLE = {"settle_seconds": 1.0}
PAUSE = 4.5  # well past settle_seconds: each part settles and is claimed on its own,
# even on a busy machine (a claim takes two looks a second apart, then the claim itself)


def _append_with_pauses(path: Path, parts: list[bytes]) -> None:
    for i, part in enumerate(parts):
        if i:
            time.sleep(PAUSE)
        with path.open("ab") as out:  # open, append, close: as the slow writer does
            out.write(part)


def test_a_writer_that_pauses_is_reported_as_a_suspected_fragment(tmp_path: Path) -> None:
    """A text file appended to with pauses of 4.5 s (settle 1 s) gets a
    file.fragment_suspected warning in the log, naming the earlier claim and
    settle_seconds, and status --json lists it for the folder."""
    layout = Layout(tmp_path, folder=SETTLE)
    layout.write()
    daemon = Daemon(layout).started()
    parts = [b"line 1\n", b"line 2\n", b"line 3\n"]
    _append_with_pauses(layout.inbox / "slow.txt", parts)
    warning = daemon.wait_for_event("file.fragment_suspected", timeout=30)
    assert warning["level"] == "warning" and warning["source"] == "slow.txt"
    assert warning["earlier_claim"] and warning["settle_seconds"] == 1.0
    reason = warning["reason"]
    assert "a writer paused longer than settle_seconds (1 s) between writes? Then its " \
           "parts are sealed separately, each into the outbox with its own sidecar" in reason
    assert "To have the whole file sealed, copy the complete file into the inbox again " \
           "once it is written" in reason
    assert "raise settle_seconds, or have the writer write under a temporary name and " \
           "rename when done" in reason

    def sealed_parts() -> list[Path]:
        return sorted(layout.outbox.glob("slow*.txt"))

    wait_until(lambda: sum(p.stat().st_size for p in sealed_parts()) == len(b"".join(parts))
               and len(sidecars(layout.outbox)) == len(sealed_parts()),
               timeout=60, what="every part sealed")
    assert len(sealed_parts()) >= 2  # (on a busy machine two parts may have merged)
    status = folderseal("status", "-c", str(layout.config), "--json")
    report = json.loads(status.stdout)
    scans = report["folders"]["scans"]
    assert scans["fragments_suspected"] == len(sealed_parts()) - 1, scans["fragments"]
    assert {f["source"] for f in scans["fragments"]} == {"slow.txt"}
    assert warning["earlier_claim"] in {f["earlier_claim"] for f in scans["fragments"]}
    assert all("raise settle_seconds" in f["why"] for f in scans["fragments"])
    assert status.returncode == 0, report["alarms"]  # a warning, not an alarm
    assert daemon.stop() == 0


def test_a_jpeg_written_in_two_parts_is_not_sealed_as_a_fragment(tmp_path: Path) -> None:
    """A JPEG whose writer pauses longer than settle_seconds between its halves is not
    claimed after the first half (no end marker): it comes out once, whole and signed."""
    layout = Layout(tmp_path, folder=SETTLE)
    layout.write()
    daemon = Daemon(layout).started()
    photo = make_jpeg(scan_bytes=60_000)
    half = len(photo) // 2
    _append_with_pauses(layout.inbox / "photo.jpg", [photo[:half], photo[half:]])
    wait_until(lambda: sidecars(layout.outbox), timeout=60, what="the photo sealed")
    time.sleep(2 * PAUSE)  # room for a second part to show, were there one
    [sidecar] = sidecars(layout.outbox)
    data = check_sidecar(sidecar, layout)
    assert data["source"] == "photo.jpg"
    assert data["input"] == {"sha256": hashlib.sha256(photo).hexdigest(), "bytes": len(photo)}
    assert (layout.outbox / "photo.jpg").read_bytes() == photo
    assert not error_records(layout.errors)
    assert not [e for e in daemon.events() if e.get("event") == "file.fragment_suspected"]
    assert daemon.stop() == 0
