"""The daemon against the Clevver emulator over loopback: receipts, faults, crashes, the token.

The emulator runs in this process (a real HTTP server on 127.0.0.1), the daemon in a
subprocess. The emulator's journal lists every asset it stored and every start: the
proof that each dropped file was stored at most once (once if delivered), that no
batch was started twice, and that each file came out unchanged with its receipt.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from folderseal.providers.clevver.emulator import ClevverEmulator, start_clevver
from tests.helpers import (
    Daemon,
    Layout,
    error_records,
    folderseal,
    outcomes,
    settled,
    sha256,
    sidecars,
    wait_until,
)

TOKEN = "clevver-token-5b1d8e4a"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[ClevverEmulator]:
    with start_clevver(api_key=TOKEN, data_dir=tmp_path / "emulator", seed=20261202,
                       polls=2, late_seconds=1.0, slow_seconds=0.3) as handle:
        yield handle


def _layout(tmp_path: Path, url: str, provider: dict | None = None, **folder: object) -> Layout:
    (tmp_path / "clevver.token").write_text(TOKEN + "\n")
    (tmp_path / "clevver.token").chmod(0o600)
    layout = Layout(tmp_path, folder=folder, provider={
        "kind": "clevver", "base_url": url, "api_token_file": "clevver.token",
        "poll_interval_seconds": 0.1, "timeout_seconds": 5.0, "status_grace_seconds": 2.0,
        "retry_max_seconds": 1.0, "batch_max_files": 5, **(provider or {})})
    layout.write()
    return layout


def _drop(layout: Layout, count: int, start: int = 0) -> dict[str, str]:
    """Files of distinct content (the journal tells documents apart by checksum)."""
    expected = {}
    for i in range(start, start + count):
        source = f"doc-{i}.pdf" if i % 3 == 0 else f"sub/scan-{i}.txt"
        data = f"document {i} {'x' * (i % 7)}\n".encode() * (50 + i)
        path = layout.inbox / source
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name)
        tmp.write_bytes(data)
        tmp.rename(path)
        expected[source] = hashlib.sha256(data).hexdigest()
    return expected


def _check_stored(layout: Layout, sidecar: dict, digest: str) -> None:
    """The original in the outbox, unchanged, with a receipt that proves it."""
    assert sidecar["status"] == "stored"
    assert [o["role"] for o in sidecar["outputs"]] == ["original"]
    output = layout.outbox / sidecar["outputs"][0]["path"]
    assert sha256(output) == digest == sidecar["input"]["sha256"]
    provider = sidecar["provider"]
    assert provider["kind"] == "clevver"
    receipt = provider["receipt"]
    assert receipt["checksum"] == digest
    assert receipt["asset_id"] == provider["document"]
    assert len(receipt["txid"]) == 64
    assert receipt["url"] and receipt["forever_url"]


def _assert_exactly_once(layout: Layout, emulator: ClevverEmulator, expected: dict[str, str],
                         allowed_failures: tuple[str, ...] = ()) -> None:
    """Every file: one outcome; stored by a started batch at most once, and once if
    delivered; no batch started twice; nothing left in the inbox."""
    journal = emulator.read_journal()
    assert emulator.violations() == [], emulator.violations()
    started_assets = {a["asset"] for e in journal if e.get("event") == "start"
                      for a in e.get("assets", ())}
    stored = Counter(e["checksum"] for e in journal
                     if e.get("event") == "asset" and e["asset"] in started_assets)
    starts = Counter(e["batch"] for e in journal if e.get("event") == "start")  # every call
    assert all(n == 1 for n in starts.values()), f"a batch was started twice: {starts}"
    delivered, failed = outcomes(layout)
    for source, digest in expected.items():
        found = delivered.get(source, []) + failed.get(source, [])
        assert len(found) == 1, f"{source}: {len(found)} outcomes"
        assert stored[digest] <= 1, f"{source} was stored {stored[digest]} times"
        if source in delivered:
            assert stored[digest] == 1, f"{source} delivered but Clevver never stored it"
            _check_stored(layout, delivered[source][0], digest)
    for source, records in failed.items():
        error = records[0]["error"]
        assert error["code"] in allowed_failures, f"{source} failed: {error}"
        assert error["message"]
    leftovers = [p for p in layout.inbox.rglob("*") if p.is_file()
                 and ".folderseal" not in p.parts]
    assert leftovers == []


def _no_token_anywhere(layout: Layout) -> None:
    texts = [p.read_text(errors="replace") for p in layout.root.glob("daemon-*.log")]
    texts += [p.read_text() for p in sidecars(layout.outbox) + error_records(layout.errors)]
    status = folderseal("status", "--json", "-c", str(layout.config))
    texts += [status.stdout, status.stderr]
    assert all(TOKEN not in text for text in texts)


def test_files_are_stored_with_a_receipt(tmp_path: Path, emulator: ClevverEmulator) -> None:
    """Each file comes out unchanged with a receipt whose checksum is its sha256 and that
    has a txid; one attach and one receipt per file; verify passes; the token leaks
    nowhere."""
    layout = _layout(tmp_path, emulator.url)
    check = folderseal("check", "-c", str(layout.config))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "token was accepted" in check.stdout + check.stderr
    daemon = Daemon(layout).started()
    expected = _drop(layout, 12)
    wait_until(lambda: settled(layout, expected), timeout=90, what="every file's outcome")
    assert daemon.stop() == 0
    _assert_exactly_once(layout, emulator, expected)
    counts = emulator.request_counts()
    assert counts.get("attach") == 12 and counts.get("receipt") == 12, counts
    verify = folderseal("verify", str(layout.outbox))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "chain" in verify.stdout + verify.stderr
    _no_token_anywhere(layout)


def test_every_fault_at_once(tmp_path: Path, emulator: ClevverEmulator) -> None:
    """Every fault kind injected: each file is stored at most once, no batch is started
    twice, and only batches that never deliver send files to errors."""
    emulator.set_faults("500-before=0.02,500-after=0.02,drop-before=0.02,drop=0.02,"
                        "429=0.03,slow=0.05,late-start=0.2,never-deliver=0.1,"
                        "late-txid=0.2,quirky=0.3")
    layout = _layout(tmp_path, emulator.url, provider={"max_wait_seconds": 6.0})
    daemon = Daemon(layout).started()
    expected = _drop(layout, 30)
    wait_until(lambda: settled(layout, expected), timeout=240, what="every file's outcome")
    assert daemon.stop() == 0
    _assert_exactly_once(layout, emulator, expected, allowed_failures=("never_closed",))
    delivered, _failed = outcomes(layout)
    assert delivered, "nothing got through"
    injected = emulator.injected_faults()  # per-batch kinds may miss a run's few batches
    assert "quirky" in injected and sum(injected.values()) > 10, injected
    _no_token_anywhere(layout)


# Clevver's own crash points and the states around its start; every crash point (these,
# the states and the publishing steps) is in `bench/torture.py --only crash-clevver`.
CRASH_POINTS = ["clevver:created", "clevver:attaching", "clevver:attached",
                "state:ACCEPTING", "clevver:starting", "clevver:started", "state:CLOSED"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_restart_after_crash_point_stores_each_file_once(tmp_path: Path, point: str,
                                                         emulator: ClevverEmulator) -> None:
    """Killed right after a named step, a restarted daemon finishes every file once."""
    layout = _layout(tmp_path, emulator.url)
    expected = _drop(layout, 6)
    crashed = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": f"{point}@2"
                                  if point == "clevver:attaching" else point})
    assert crashed.process.wait(timeout=60) == -9, f"crash point {point} was never reached"
    crashed.kill()
    daemon = Daemon(layout).started()
    wait_until(lambda: settled(layout, expected), timeout=90, what="every file's outcome")
    time.sleep(0.5)  # a duplicate, if any, would show up now
    assert daemon.stop() == 0
    _assert_exactly_once(layout, emulator, expected)


def test_random_kills_while_files_flow(tmp_path: Path, emulator: ClevverEmulator) -> None:
    """SIGKILL at random moments while files keep arriving: every file still ends once,
    stored once, and no batch is started twice."""
    layout = _layout(tmp_path, emulator.url)
    expected: dict[str, str] = {}
    rng = random.Random(20261202)
    dropping = threading.Thread(target=lambda: [expected.update(_drop(layout, 3, 3 * k))
                                                or time.sleep(0.3) for k in range(8)])
    dropping.start()
    kills = 0
    while dropping.is_alive() or kills < 4:
        daemon = Daemon(layout)
        time.sleep(rng.uniform(0.8, 2.0))
        daemon.kill()
        kills += 1
    dropping.join()
    daemon = Daemon(layout).started()
    wait_until(lambda: settled(layout, expected), timeout=120, what="every file's outcome")
    time.sleep(0.5)
    assert daemon.stop() == 0
    assert len(expected) == 24
    _assert_exactly_once(layout, emulator, expected)


def test_a_receipt_without_txid_fails_alone_and_retry_asks_again(tmp_path: Path) -> None:
    """A receipt still without its txid after max_wait_seconds sends that file to errors
    with code no_receipt while the rest of its batch is delivered; `folderseal retry`
    asks Clevver again and never sends the file again: it is delivered, stored once."""
    late = 4.0
    with start_clevver(api_key=TOKEN, data_dir=tmp_path / "emulator", seed=7, polls=2,
                       late_seconds=late, faults="late-txid=0.5") as emulator:
        layout = _layout(tmp_path, emulator.url, provider={"max_wait_seconds": 1.5})
        daemon = Daemon(layout).started()
        expected = _drop(layout, 5)
        wait_until(lambda: settled(layout, expected), timeout=60, what="every outcome")
        delivered, failed = outcomes(layout)
        assert failed, "no receipt came late: the fault was not drawn"
        assert delivered, "every receipt came late"
        for records in failed.values():
            assert records[0]["error"]["code"] == "no_receipt"
            assert "never re-sends" in records[0]["error"]["message"]
        time.sleep(late)  # Clevver has the txids now
        retried = folderseal("retry", "--all", "-c", str(layout.config))
        assert retried.returncode == 0, retried.stdout + retried.stderr
        assert "asked again" in retried.stdout, retried.stdout
        wait_until(lambda: len(outcomes(layout)[0]) == len(expected), timeout=60,
                   what="the retried files delivered")
        assert daemon.stop() == 0
        _assert_exactly_once(layout, emulator, expected)
        attaches = emulator.request_counts().get("attach")
        assert attaches == len(expected), f"{attaches} attaches for {len(expected)} files"
