"""Folders and files that do not hold each other up: a big file beside small ones, and
a share that hangs beside a local folder.

    .venv/bin/python bench/isolation.py            # the full run (a few minutes; root)
    .venv/bin/python bench/isolation.py --quick    # small counts, to check the script

Measures, on 2 cores:
  (5) claim latency of small files dropped one every 0.1 s while a 2 GiB file dropped
      just before them is hashed and claimed (settle 0.2 s): target p95 < settle + 1 s;
      beside it, the same latency with nothing big in the inbox (the baseline), and how
      long the big file took from its drop to its recorded hash;
  (6) files/s of a folder on local disk with a second folder whose inbox is a FUSE share
      (bindfs) that hangs (its server stopped with SIGSTOP), against the same folder's
      rate while the share answers: target >= 80%; and that /healthz and `status` name
      the hung folder meanwhile.
A full run exits 1 when a target is missed (``--quick`` only checks that the script
works). (6) needs root and bindfs (``make bench`` installs bindfs).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.conclude import conclude  # noqa: E402
from bench.throughput import BENCH, _iso, _sidecar_count  # noqa: E402
from bench.torturekit.scenarios import Share  # noqa: E402
from tests.helpers import Daemon, Layout, folderseal, toml_value, wait_until  # noqa: E402

METRICS = '\n[metrics]\nlisten = "127.0.0.1:0"\n'


def _write_big(path: Path, mib: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for _ in range(mib):
            handle.write(block)


def _latencies(daemon: Daemon, dropped: dict[str, float]) -> list[float]:
    def claimed() -> dict[str, float]:
        return {e["source"]: _iso(e["timestamp"]) for e in daemon.events()
                if e.get("event") == "file.claimed" and e["source"] in dropped}
    wait_until(lambda: len(claimed()) == len(dropped), timeout=120,
               what="the small files claimed")
    times = claimed()
    return sorted(times[name] - at for name, at in dropped.items())


def _p95(values: list[float]) -> float:
    return values[max(0, int(len(values) * 0.95) - 1)]


def big_beside_small(root: Path, big_mib: int, count: int) -> dict[str, float]:
    """(5): small files' drop-to-claim latency with and without a big file beside them."""
    layout = Layout(root / "big", folder={**BENCH, "watch": "events"},
                    provider={"sign_timeout_seconds": 900})
    layout.write()
    staging = layout.root / "staging"
    staging.mkdir()
    big = staging / "big.bin"
    _write_big(big, big_mib)
    daemon = Daemon(layout).started()
    try:
        wait_until(lambda: any(e.get("event") == "daemon.started" for e in daemon.events()),
                   timeout=60, what="the daemon started")

        def drop_small(prefix: str) -> dict[str, float]:
            dropped = {}
            for i in range(count):
                name = f"{prefix}-{i:03d}.txt"
                (staging / name).write_bytes(os.urandom(2000))
                dropped[name] = time.time()
                os.rename(staging / name, layout.inbox / name)
                time.sleep(0.1)
            return dropped
        alone = _latencies(daemon, drop_small("alone"))
        big_at = time.time()
        os.rename(big, layout.inbox / "big.bin")
        beside = drop_small("beside")
        beside_latencies = _latencies(daemon, beside)
        wait_until(lambda: (layout.outbox / "big.bin.json").exists(), timeout=600,
                   what="the big file sealed")
        hashed = [_iso(e["timestamp"]) for e in daemon.events()
                  if e.get("event") == "file.hashed" and e.get("source") == "big.bin"]
    finally:
        daemon.stop(timeout=120)
    return {"alone_p50_s": statistics.median(alone), "alone_p95_s": _p95(alone),
            "beside_p50_s": statistics.median(beside_latencies),
            "beside_p95_s": _p95(beside_latencies),
            "beside_max_s": beside_latencies[-1],
            "big_sealed_s": (layout.outbox / "big.bin.json").stat().st_mtime - big_at,
            "big_hashed_s": (max(hashed) - big_at) if hashed else -1.0,
            "settle_s": BENCH["settle_seconds"], "big_mib": big_mib, "small_files": count}


def _drop_and_time(inbox: Path, outbox: Path, count: int, tag: str) -> float:
    """Drop ``count`` 100 KB files at once; files/s until their last sidecar."""
    staging = inbox.parent / f"staging-{tag}"
    staging.mkdir()
    names = [f"{tag}-{i:04d}.bin" for i in range(count)]
    for name in names:
        (staging / name).write_bytes(os.urandom(100_000))
    before = _sidecar_count(outbox)
    started = time.time()
    for name in names:
        os.rename(staging / name, inbox / name)
    deadline = time.monotonic() + 600
    while _sidecar_count(outbox) < before + count:
        assert time.monotonic() < deadline, f"{count} sidecars not there in 600 s"
        time.sleep(0.1)
    last = max((outbox / f"{name}.json").stat().st_mtime for name in names)
    return count / (last - started)


def hung_share_beside_local(root: Path, count: int) -> dict[str, Any]:
    """(6): a local folder's rate while a second folder's inbox share hangs, against its
    rate while the share answers; what /healthz and status say meanwhile."""
    local = root / "local"
    for sub in ("inbox", "outbox", "errors"):
        (local / sub).mkdir(parents=True)
    extra = "\n".join(["", "[folders.local]", f'inbox = "{local / "inbox"}"',
                       f'outbox = "{local / "outbox"}"', f'errors = "{local / "errors"}"',
                       'provider = "local"',
                       *(f"{k} = {toml_value(v)}" for k, v in BENCH.items())]) + "\n"
    layout = Layout(root / "hung", folder={**BENCH, "watch": "polling",
                                           "poll_interval_seconds": 0.5},
                    extra=METRICS + extra)
    layout.write()
    backing = layout.root / "backing"
    backing.mkdir()
    share = Share(backing, layout.inbox)
    share.mount()
    try:
        daemon = Daemon(layout).started()
        try:
            url = str(daemon.wait_for_event("web.listening", timeout=60)["url"]).rstrip("/")
            wait_until(lambda: httpx.get(f"{url}/healthz", timeout=10).status_code == 200,
                       timeout=60, what="a healthy daemon")
            _drop_and_time(local / "inbox", local / "outbox", min(count, 100), "warm")
            answering = _drop_and_time(local / "inbox", local / "outbox", count, "answering")
            assert share.process is not None
            share.process.send_signal(signal.SIGSTOP)
            try:
                time.sleep(2)  # past the kernel's attribute cache: the next poll blocks
                hung = _drop_and_time(local / "inbox", local / "outbox", count, "hung")
                wait_until(lambda: "its intake has waited" in
                           httpx.get(f"{url}/healthz", timeout=10).text,
                           timeout=60, what="/healthz to name the hung folder")
                health = httpx.get(f"{url}/healthz", timeout=10)
                wait_until(lambda: any("its intake has waited" in a for a in _alarms(layout)),
                           timeout=30, what="status to name the hung folder")
                alarm = next(a for a in _alarms(layout) if "its intake has waited" in a)
            finally:
                share.process.send_signal(signal.SIGCONT)
        finally:
            daemon.stop(timeout=60)
    finally:
        share.close()
    return {"answering_files_per_s": answering, "hung_files_per_s": hung,
            "share": hung / answering, "healthz_status": health.status_code,
            "healthz_names_folder": "folder scans:" in health.text,
            "status_alarm": alarm, "files": count}


def _alarms(layout: Layout) -> list[str]:
    out = folderseal("status", "--json", "-c", str(layout.config), timeout=30)
    return list(json.loads(out.stdout)["alarms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (checks the script)")
    parser.add_argument("--big-mib", type=int, default=2048)
    parser.add_argument("--files", type=int, default=1000, help="files per rate of (6)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    small = 60
    if args.quick:
        args.big_mib, args.files, small = 64, 100, 20
    root = Path(tempfile.mkdtemp(prefix="folderseal-isolation-"))
    try:
        results: dict[str, Any] = {
            "cpus": os.cpu_count(),
            "big_beside_small": big_beside_small(root, args.big_mib, small),
            "hung_share": hung_share_beside_local(root, args.files)}
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    five, six = results["big_beside_small"], results["hung_share"]
    targets = {"small beside big p95 < settle + 1 s":
               five["beside_p95_s"] < five["settle_s"] + 1.0,
               "local rate beside a hung share >= 80%": six["share"] >= 0.8,
               "healthz and status name the hung folder":
               six["healthz_status"] == 503 and six["healthz_names_folder"]
               and "folder scans:" in six["status_alarm"]}
    conclude(results, [name for name, met in targets.items() if not met], as_json=args.json,
             quick=args.quick, show=_print)


def _print(results: dict[str, Any]) -> None:
    five, six = results["big_beside_small"], results["hung_share"]
    print(f"machine: {results['cpus']} CPUs")
    print(f"(5) small files' drop-to-claim latency beside a {five['big_mib']} MiB file: "
          f"p50 {five['beside_p50_s']:.3f} s, p95 {five['beside_p95_s']:.3f} s, max "
          f"{five['beside_max_s']:.3f} s (target p95 < settle {five['settle_s']} + 1 s); "
          f"alone: p50 {five['alone_p50_s']:.3f} s, p95 {five['alone_p95_s']:.3f} s; "
          f"the big file hashed {five['big_hashed_s']:.1f} s and sealed "
          f"{five['big_sealed_s']:.1f} s after its drop")
    print(f"(6) local folder beside a hung share: {six['hung_files_per_s']:.1f} files/s, "
          f"against {six['answering_files_per_s']:.1f} files/s while it answers: "
          f"{six['share']:.0%} (target >= 80%); /healthz {six['healthz_status']}; status: "
          f"{six['status_alarm'][:100]}...")
    print("targets missed: " + (", ".join(results["missed"]) or "none"))


if __name__ == "__main__":
    main()
