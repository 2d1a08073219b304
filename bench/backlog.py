"""A backlog at start: 100,000 small files already in the inbox when the daemon starts.

    .venv/bin/python bench/backlog.py            # the full run (100,000 files, minutes)
    .venv/bin/python bench/backlog.py --quick    # 3,000 files, to check the script

The files (1-2 KB each, not PDFs: detached CAdES signatures) are written into the inbox
before the daemon is spawned, with the benchmark settings (settle 0.2 s, batch wait
0.2 s, batches of 100, the SQLite store), ``max_in_flight_files`` as large as the
backlog, the scans at their defaults (a rescan every 300 s, not the tests' 2 s) and the
status page and /metrics on a loopback port. Measures:
  (a) from the daemon's spawn to its first batch accepted (the ``batch.accepted`` event
      of its JSON log; also to the first ``batch.batched`` and to the first sidecar, its
      ``file.delivered``): target <= 5 s;
  (b) the main process's RSS (VmRSS, every 0.5 s) from spawn to the last sidecar: its
      peak, target < 300 MB; and its value at the end beside its value when the first
      tenth of the files (10,000) had their sidecars: target within 10 % (flat memory);
  (c) the status page (/) and /metrics, asked in turn every 0.25 s during the drain:
      p50, p95 and the slowest, target p95 < 100 ms for each;
  (d) the drain: from spawn to the last sidecar, and files/s.
Prints the figures beside their targets. A full run exits 1 when a target is missed
(``--quick`` only checks that the script works).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.conclude import conclude  # noqa: E402
from bench.throughput import BENCH, _iso, _sidecar_count  # noqa: E402
from tests.helpers import Daemon, Layout  # noqa: E402

FILES = 100_000
QUICK_FILES = 3_000
FIRST_BATCH_TARGET_S = 5.0
RSS_TARGET_MB = 300.0
FLAT_TARGET_PCT = 10.0
LATENCY_TARGET_MS = 100.0
RSS_EVERY_S = 0.5
ASK_EVERY_S = 0.25
COUNT_EVERY_S = 1.0
# The log events looked for: (a)'s three moments, and the listener's port.
MOMENTS = ("batch.batched", "batch.accepted", "file.delivered")
LISTENING = "web.listening"


def write_backlog(inbox: Path, count: int) -> float:
    """``count`` files of 1-2 KB, each different, straight into the inbox; seconds taken."""
    started = time.perf_counter()
    block = os.urandom(2048)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for i in range(count):
        size = 1024 + (i * 7919) % 1024
        fd = os.open(inbox / f"doc-{i:06d}.bin", flags, 0o644)
        try:
            os.write(fd, f"{i}\n".encode() + block[:size])
        finally:
            os.close(fd)
    return time.perf_counter() - started


class LogTail:
    """The daemon's JSON log, read as it grows: the first time of each event looked for,
    and the listener's URL."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.first: dict[str, float] = {}
        self.url = ""

    def done(self) -> bool:
        return bool(self.url) and all(name in self.first for name in MOMENTS)

    def read(self) -> None:
        if self.done():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if b'"event"' not in line:
                continue
            wanted = [n for n in (*MOMENTS, LISTENING) if n.encode() in line]
            if not wanted:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            name = event.get("event")
            if name == LISTENING and not self.url:
                self.url = str(event["url"]).rstrip("/")
            elif name in MOMENTS and name not in self.first:
                self.first[name] = _iso(event["timestamp"])


def vm_rss(pid: int) -> int:
    """VmRSS of a process in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """The main process's RSS every 0.5 s, each with the last sidecar count seen."""

    def __init__(self, pid: int, spawned: float) -> None:
        super().__init__(name="rss", daemon=True)
        self.pid = pid
        self.spawned = spawned
        self.sidecars = 0  # set by the drain loop
        self.samples: list[tuple[float, int, int]] = []  # (s after spawn, bytes, sidecars)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            rss = vm_rss(self.pid)
            if rss:
                self.samples.append((time.time() - self.spawned, rss, self.sidecars))
            self.stopping.wait(RSS_EVERY_S)


class Asker(threading.Thread):
    """Asks for the status page and /metrics in turn every 0.25 s; each one's latency."""

    PATHS = ("/", "/metrics")

    def __init__(self, url: str) -> None:
        super().__init__(name="asker", daemon=True)
        self.url = url
        self.latencies: dict[str, list[float]] = {path: [] for path in self.PATHS}
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        turn = 0
        while not self.stopping.is_set():
            path = self.PATHS[turn % len(self.PATHS)]
            turn += 1
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url + path, timeout=30) as answer:
                    answer.read()
                    ok = answer.status == 200
            except OSError as exc:
                self.failures.append(f"{path}: {exc}")
                ok = False
            took = time.perf_counter() - started
            if ok:
                self.latencies[path].append(took)
            self.stopping.wait(max(0.0, ASK_EVERY_S - took))


def _rank(values: list[float], share: float) -> float:
    """The nearest-rank percentile of ``values`` (0 when there are none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * share) - 1)]


def _latency(values: list[float]) -> dict[str, float]:
    return {"p50_ms": _rank(values, 0.50) * 1000, "p95_ms": _rank(values, 0.95) * 1000,
            "max_ms": max(values, default=0.0) * 1000, "asked": len(values)}


def _error_count(errors: Path) -> int:
    count = 0
    for folder, _dirs, names in os.walk(errors):
        if "/." not in folder:
            count += sum(1 for name in names if name.endswith(".error.json"))
    return count


def drain(root: Path, count: int, max_in_flight: int, timeout: float) -> dict[str, Any]:
    """Write the backlog, start the daemon on it, measure until every file has a sidecar
    (or an error record)."""
    layout = Layout(root / "backlog",
                    folder={**BENCH, "max_in_flight_files": max_in_flight,
                            "rescan_seconds": 300.0, "poll_interval_seconds": 10.0},
                    extra='\n[metrics]\nlisten = "127.0.0.1:0"\n')
    layout.write()
    written_s = write_backlog(layout.inbox, count)
    tenth = max(1, count // 10)
    spawned = time.time()
    daemon = Daemon(layout)
    tail = LogTail(daemon.log_path)
    sampler = Sampler(daemon.process.pid, spawned)
    sampler.start()
    asker: Asker | None = None
    sidecars = errors = 0
    tenth_rss = 0
    tenth_at = 0.0
    try:
        deadline = time.monotonic() + timeout
        next_count = 0.0
        while True:
            if daemon.process.poll() is not None:
                raise SystemExit(f"the daemon exited ({daemon.process.returncode}); log:\n"
                                 + daemon.log_path.read_text(errors="replace")[-4000:])
            if time.monotonic() > deadline:
                raise SystemExit(f"{sidecars} of {count} sidecars after {timeout:.0f} s")
            tail.read()
            if asker is None and tail.url:
                asker = Asker(tail.url)
                asker.start()
            if time.monotonic() >= next_count:
                next_count = time.monotonic() + COUNT_EVERY_S
                sidecars = _sidecar_count(layout.outbox)
                sampler.sidecars = sidecars
                if sidecars >= tenth and not tenth_rss:
                    tenth_rss, tenth_at = vm_rss(daemon.process.pid), time.time() - spawned
                if sidecars + errors >= count:
                    errors = _error_count(layout.errors)  # nothing should fail: looked at once
                    if sidecars + errors >= count:
                        break
                elif sidecars >= count - count // 100:
                    errors = _error_count(layout.errors)
            time.sleep(0.1)
        drained = time.time()
        end_rss = vm_rss(daemon.process.pid)
        tail.read()
    finally:
        sampler.stopping.set()
        if asker is not None:
            asker.stopping.set()
            asker.join(35)
        sampler.join(5)
        daemon.stop(timeout=120)
    seconds = drained - spawned
    rss = [bytes_ for _at, bytes_, _seen in sampler.samples] + [end_rss]
    figures: dict[str, Any] = {
        "files": count, "cpus": os.cpu_count(), "max_in_flight_files": max_in_flight,
        "write_backlog_s": written_s,
        "first_batch_event": "batch.accepted",
        "first_batched_s": tail.first.get("batch.batched", spawned - 1) - spawned,
        "first_batch_accepted_s": tail.first.get("batch.accepted", spawned - 1) - spawned,
        "first_sidecar_s": tail.first.get("file.delivered", spawned - 1) - spawned,
        "rss_max_mb": max(rss) / 1e6,
        "rss_tenth_files": tenth, "rss_at_tenth_mb": tenth_rss / 1e6,
        "rss_at_tenth_s": tenth_at, "rss_end_mb": end_rss / 1e6,
        "rss_change_pct": (end_rss / tenth_rss - 1) * 100 if tenth_rss else 0.0,
        "rss_samples": len(sampler.samples),
        "rss_trace_mb": _trace(sampler.samples),
        "drain_s": seconds, "files_per_s": count / seconds,
        "sidecars": sidecars, "errors": errors,
        "status_page": _latency(asker.latencies["/"] if asker else []),
        "metrics": _latency(asker.latencies["/metrics"] if asker else []),
        "web_failures": (asker.failures if asker else [])[:5],
    }
    return figures


def _trace(samples: list[tuple[float, int, int]], points: int = 12) -> list[list[float]]:
    """A dozen of the RSS samples, evenly spread: [s after spawn, MB, sidecars]."""
    if not samples:
        return []
    step = max(1, len(samples) // points)
    chosen = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    return [[round(at, 1), round(rss / 1e6, 1), seen] for at, rss, seen in chosen]


def targets(figures: dict[str, Any]) -> dict[str, bool]:
    return {
        f"first batch accepted <= {FIRST_BATCH_TARGET_S:g} s":
            0 <= figures["first_batch_accepted_s"] <= FIRST_BATCH_TARGET_S,
        f"main RSS < {RSS_TARGET_MB:g} MB": figures["rss_max_mb"] < RSS_TARGET_MB,
        f"RSS at the end within {FLAT_TARGET_PCT:g} % of RSS at the first tenth":
            figures["rss_at_tenth_mb"] > 0
            and abs(figures["rss_change_pct"]) <= FLAT_TARGET_PCT,
        f"status page p95 < {LATENCY_TARGET_MS:g} ms":
            0 < figures["status_page"]["p95_ms"] < LATENCY_TARGET_MS,
        f"/metrics p95 < {LATENCY_TARGET_MS:g} ms":
            0 < figures["metrics"]["p95_ms"] < LATENCY_TARGET_MS,
        "every file sealed": figures["sidecars"] == figures["files"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_FILES:,} files (checks the script; never exits 1)")
    parser.add_argument("--files", type=int, default=None,
                        help=f"files in the backlog (default {FILES:,})")
    parser.add_argument("--max-in-flight", type=int, default=None,
                        help="the folder's max_in_flight_files (default: the backlog)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for the last sidecar (default: 0.1 s a file, "
                             "at least 300)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    count = args.files or (QUICK_FILES if args.quick else FILES)
    root = Path(tempfile.mkdtemp(prefix="folderseal-backlog-"))
    try:
        figures = drain(root, count, args.max_in_flight or count,
                        args.timeout or max(300.0, count * 0.1))
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", str(root)], check=False)
    conclude(figures, [name for name, met in targets(figures).items() if not met],
             as_json=args.json, quick=args.quick, show=_print)


def _print(f: dict[str, Any]) -> None:
    print(f"machine: {f['cpus']} CPUs; backlog of {f['files']:,} files written in "
          f"{f['write_backlog_s']:.1f} s; max_in_flight_files {f['max_in_flight_files']:,}")
    print(f"(a) first batch accepted:  {f['first_batch_accepted_s']:7.2f} s after spawn "
          f"(target <= {FIRST_BATCH_TARGET_S:g} s); first batch formed "
          f"{f['first_batched_s']:.2f} s, first sidecar {f['first_sidecar_s']:.2f} s")
    print(f"(b) main RSS peak:         {f['rss_max_mb']:7.1f} MB (target < {RSS_TARGET_MB:g} "
          f"MB; {f['rss_samples']} samples)")
    print(f"    at {f['rss_tenth_files']:,} sidecars {f['rss_at_tenth_mb']:.1f} MB "
          f"({f['rss_at_tenth_s']:.0f} s), at the end {f['rss_end_mb']:.1f} MB: "
          f"{f['rss_change_pct']:+.1f} % (target within {FLAT_TARGET_PCT:g} %)")
    print("    trace [s, MB, sidecars]: " + " ".join(
        f"[{at:g}, {mb:g}, {seen}]" for at, mb, seen in f["rss_trace_mb"]))
    for label, key in (("status page /", "status_page"), ("/metrics", "metrics")):
        lat = f[key]
        print(f"(c) {label:<22} p50 {lat['p50_ms']:6.1f} ms, p95 {lat['p95_ms']:6.1f} ms, "
              f"max {lat['max_ms']:7.1f} ms over {lat['asked']} asks "
              f"(target p95 < {LATENCY_TARGET_MS:g} ms)")
    if f["web_failures"]:
        print(f"    failed asks: {f['web_failures']}")
    print(f"(d) drained:               {f['drain_s']:7.1f} s from spawn to the last sidecar, "
          f"{f['files_per_s']:.1f} files/s ({f['sidecars']:,} sidecars, {f['errors']} error "
          "records)")
    print("targets missed: " + ("; ".join(f["missed"]) or "none"))


if __name__ == "__main__":
    main()
