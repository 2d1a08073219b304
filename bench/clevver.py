"""Clevver through its emulator: throughput, requests per file, memory on a big file.

    .venv/bin/python bench/clevver.py            # 1,000 files and a 1 GiB file (minutes)
    .venv/bin/python bench/clevver.py --quick    # small counts, to check the script

The Clevver emulator runs in this process with no injected faults or latency (it
delivers a started batch on its first status read: ``--polls 1``; its memory is not
measured); the daemon runs in a subprocess against it over loopback. Measures:
  (a) files/s end to end, from dropping 1,000 small files at once to the last sidecar;
  (b) requests per file, counted by the emulator: the goal is one attach and one
      receipt per file, plus a constant per batch (create, start, status reads);
  (c) the daemon's peak RSS (VmHWM) while attaching one 1 GiB file, and one a tenth of
      that size, to show it does not grow with the file (target <= 150 MB).
Every run is checked: each file comes out unchanged with a sidecar whose receipt has a
txid and the file's sha256 as checksum, and the emulator's journal has no violation.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from folderseal.providers.clevver.emulator import ClevverEmulator, start_clevver  # noqa: E402
from folderseal.providers.emulation.journal import log_to  # noqa: E402
from tests.helpers import (  # noqa: E402
    Daemon,
    Layout,
    drop_at_once,
    last_sidecar,
    wait_until,
)

TOKEN = "bench-token-0123456789"
FOLDER = {"settle_seconds": 0.2, "batch_max_wait_seconds": 0.2, "poll_interval_seconds": 0.5,
          "rescan_seconds": 2.0, "min_free_bytes": "10MB", "batch_max_bytes": "4GB",
          "max_in_flight_files": 2000}


def _toml(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def write_config(layout: Layout, emulator: ClevverEmulator, batch_files: int) -> None:
    """A folder "scans" on a Clevver provider "proof" at the emulator."""
    for sub in ("inbox", "outbox", "errors", "state"):
        (layout.root / sub).mkdir(parents=True, exist_ok=True)
    (layout.root / "clevver.token").write_text(TOKEN)
    provider = {"kind": "clevver", "base_url": emulator.url, "auth": "bearer",
                "api_token_file": "clevver.token", "poll_interval_seconds": 0.2,
                "status_grace_seconds": 1.0, "max_wait_seconds": 600,
                "timeout_seconds": 300.0, "batch_max_files": batch_files}
    folder = {"inbox": "inbox", "outbox": "outbox", "errors": "errors", "provider": "proof",
              **FOLDER, "batch_max_files": batch_files}
    lines = ['state_dir = "state"', 'node = "bench-node"', "", "[log]", 'format = "json"',
             'level = "info"', "", "[providers.proof]"]
    lines += [f"{k} = {_toml(v)}" for k, v in provider.items()]
    lines += ["", "[folders.scans]"]
    lines += [f"{k} = {_toml(v)}" for k, v in folder.items()]
    layout.config.write_text("\n".join(lines) + "\n", encoding="utf-8")


def check_outputs(layout: Layout, originals: dict[str, str], emulator: ClevverEmulator) -> None:
    """Each file unchanged, its receipt's checksum its sha256 and a txid; no violation."""
    for name, sha256 in originals.items():
        out = layout.outbox / name
        assert hashlib.sha256(out.read_bytes()).hexdigest() == sha256, f"{name} changed"
        sidecar = json.loads((layout.outbox / f"{name}.json").read_text())
        receipt = sidecar["provider"]["receipt"]
        assert sidecar["status"] == "stored", sidecar
        assert receipt["checksum"] == sha256 and len(receipt["txid"]) == 64, receipt
    assert not list(layout.errors.iterdir()), "files went to errors"
    assert emulator.violations() == [], emulator.violations()


def _hwm(pid: int) -> int:
    """Peak resident set (VmHWM) of a process, in bytes (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def small_files(root: Path, count: int, polls: int, batch_files: int) -> dict[str, float]:
    """(a) and (b): ``count`` 2 KB files of distinct content, dropped at once."""
    files = {f"doc-{i:04d}.txt": os.urandom(1000).hex().encode() for i in range(count)}
    with start_clevver(api_key=TOKEN, data_dir=root / "emulator", polls=polls) as emulator:
        layout = Layout(root / "small")
        write_config(layout, emulator, batch_files)
        daemon = Daemon(layout).started()
        try:
            dropped = drop_at_once(layout, files)
            last = last_sidecar(layout, count, timeout=900)
        finally:
            daemon.stop()
        check_outputs(layout, {n: hashlib.sha256(d).hexdigest() for n, d in files.items()},
                      emulator)
        requests = emulator.request_counts()
        batches = sum(e["event"] == "start" for e in emulator.read_journal())
    elapsed = last - dropped
    per_batch = sum(v for k, v in requests.items() if k not in ("attach", "receipt"))
    return {"files": count, "seconds": elapsed, "files_per_s": count / elapsed,
            "requests_per_file": sum(requests.values()) / count,
            "attach_per_file": requests.get("attach", 0) / count,
            "receipt_per_file": requests.get("receipt", 0) / count,
            "batches": batches, "other_per_batch": per_batch / max(1, batches),
            "requests": requests}


def big_file(root: Path, mib: int, label: str) -> dict[str, float]:
    """(c): the daemon's peak RSS while one ``mib`` MiB file is attached and stored."""
    with start_clevver(api_key=TOKEN, data_dir=root / f"emulator-{label}", polls=1) as emulator:
        layout = Layout(root / label)
        write_config(layout, emulator, 20)
        big = layout.root / "big.bin"
        block = os.urandom(1 << 20)
        digest = hashlib.sha256()
        with big.open("wb") as handle:
            for _ in range(mib):
                handle.write(block)
                digest.update(block)
        daemon = Daemon(layout).started()
        try:
            started = time.monotonic()
            os.rename(big, layout.inbox / "big.bin")
            wait_until(lambda: (layout.outbox / "big.bin.json").exists(), timeout=3600,
                       what="the big file stored")
            seconds = time.monotonic() - started
            peak = _hwm(daemon.process.pid)
        finally:
            daemon.stop(timeout=120)
        check_outputs(layout, {"big.bin": digest.hexdigest()}, emulator)
    return {"mib": mib, "daemon_peak_mb": peak / 1e6, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (checks the script)")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--polls", type=int, default=1,
                        help="status reads the emulator takes to deliver a started batch")
    parser.add_argument("--batch-files", type=int, default=20,
                        help="batch_max_files of the provider and the folder")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.quick:
        args.files, args.big_mib = 60, 64
    log_to(io.StringIO())  # the emulator's request lines would drown the figures
    with tempfile.TemporaryDirectory(prefix="folderseal-clevver-bench-") as temp:
        root = Path(temp)
        small = small_files(root, args.files, args.polls, args.batch_files)
        big = big_file(root, args.big_mib, "big")
        tenth = big_file(root, max(1, args.big_mib // 10), "tenth")
    if args.json:
        print(json.dumps({"small": small, "big": big, "tenth": tenth}, indent=2))
        return
    print(f"machine: {os.cpu_count()} CPUs; emulator delivers after {args.polls} status read(s)")
    print(f"(a) {small['files']} small files: {small['files_per_s']:.1f} files/s "
          f"({small['seconds']:.1f} s, {small['batches']} batches)")
    print(f"(b) requests per file: {small['requests_per_file']:.2f} "
          f"(attach {small['attach_per_file']:.2f}, receipt {small['receipt_per_file']:.2f}; "
          f"goal 1 + 1) and {small['other_per_batch']:.1f} other requests per batch: "
          f"{small['requests']}")
    print(f"(c) daemon peak RSS: {big['daemon_peak_mb']:.0f} MB with a {big['mib']} MiB file "
          f"({big['seconds']:.1f} s), {tenth['daemon_peak_mb']:.0f} MB with "
          f"{tenth['mib']} MiB (target <= 150 MB, not growing with size)")


if __name__ == "__main__":
    main()
