"""Centrapay through its emulator: throughput, bytes published, calls per file, memory
on a big file; with publish = "folder" and with publish = "s3" (moto's S3 server).

    .venv/bin/python bench/centrapay.py            # 200 files of 10,000 records, 1 GiB
    .venv/bin/python bench/centrapay.py --quick    # small counts, to check the script

The Centrapay emulator runs in this process with no injected faults and no rate limit
(``step_seconds`` 0: a fetched batch moves one status step per read); the daemon runs in
a subprocess with ``max_requests_per_minute`` raised out of the way (the default 150
would make the limiter the only figure). publish_dir is served by a web server in this
process; S3 is moto's server in a subprocess (tests/s3server.py). The emulator fetches
every file over HTTP, so each byte is published, fetched and parsed for real. Measures:
  (a) files/s and MB/s published end to end, from dropping 200 batch files of 10,000
      JSON Lines records (about 2 MB each) at once to the last sidecar;
  (b) Centrapay calls per file (one create and the status reads), counted by the
      emulator;
  (c) the daemon's peak RSS (VmHWM) while it checks, publishes and delivers one 1 GiB
      batch file, and one a tenth of that size: it must not grow with the file
      (target <= 150 MB), sampled every 0.2 s to show it flat.
Every run is checked: each file comes out unchanged, its sidecar's report is the count
the emulator loaded, nothing is left published, and the journal has no violation.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from folderseal.providers.centrapay.emulator import (  # noqa: E402
    CentrapayEmulator,
    start_centrapay,
)
from folderseal.providers.emulation.journal import log_to  # noqa: E402
from tests import centrapay_world as cw  # noqa: E402
from tests import s3server  # noqa: E402
from tests.helpers import (  # noqa: E402
    Daemon,
    Layout,
    drop_at_once,
    last_sidecar,
    wait_until,
)

KEY = "bench-centrapay-key-0123456789"
FOLDER = {"settle_seconds": 0.2, "batch_max_wait_seconds": 0.2, "poll_interval_seconds": 0.5,
          "rescan_seconds": 2.0, "min_free_bytes": "10MB", "batch_max_bytes": "4GB",
          "max_in_flight_files": 2000}
MB = 1e6


def _toml(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def write_config(layout: Layout, emulator: CentrapayEmulator, publishing: dict[str, Any]
                 ) -> None:
    """A folder "loads" on a Centrapay provider "bench" at the emulator."""
    for sub in ("inbox", "outbox", "errors", "state"):
        (layout.root / sub).mkdir(parents=True, exist_ok=True)
    (layout.root / "centrapay.key").write_text(KEY)
    provider = {**cw.provider_keys(emulator.url, "centrapay.key"), **publishing,
                "poll_interval_seconds": 0.2, "max_wait_seconds": 3600,
                "timeout_seconds": 600.0, "max_requests_per_minute": 60000}
    folder = {"inbox": "inbox", "outbox": "outbox", "errors": "errors", "provider": "bench",
              **FOLDER}
    lines = ['state_dir = "state"', 'node = "bench-node"', "", "[log]", 'format = "json"',
             'level = "info"', "", "[providers.bench]"]
    lines += [f"{k} = {_toml(v)}" for k, v in provider.items()]
    lines += ["", "[folders.loads]"]
    lines += [f"{k} = {_toml(v)}" for k, v in folder.items()]
    layout.config.write_text("\n".join(lines) + "\n", encoding="utf-8")


@contextlib.contextmanager
def publishing(kind: str, root: Path, endpoint: str) -> Iterator[tuple[dict[str, Any],
                                                                       Any]]:
    """The provider's publish keys and a function telling what is still published."""
    if kind == "folder":
        public = root / "public"
        public.mkdir(mode=0o711)
        with cw.served(public) as url:
            yield cw.folder_keys(public, url), lambda: sorted(os.listdir(public))
        return
    bucket = s3server.make_bucket(endpoint)
    secret = root / "s3.secret"
    secret.write_text(s3server.SECRET_ACCESS_KEY)
    secret.chmod(0o600)
    yield (s3server.provider_keys(endpoint, bucket, str(secret)),
           lambda: s3server.keys(endpoint, bucket))


@dataclass
class Loading:
    """A daemon loading through the emulator: its folders, the emulator, and what is
    still published."""

    layout: Layout
    emulator: CentrapayEmulator
    published: Callable[[], list[str]]
    daemon: Daemon


@contextlib.contextmanager
def loading(work: Path, kind: str, endpoint: str, **emulator: Any) -> Iterator[Loading]:
    """The emulator (no faults, no rate limit), publishing of ``kind``, and a daemon
    configured for both in ``work``, started; the daemon is stopped on the way out."""
    with start_centrapay(api_key=KEY, data_dir=work / "emulator", step_seconds=0.0,
                         rate_limit=0, **emulator) as handle, \
            publishing(kind, work, endpoint) as (keys, published):
        layout = Layout(work)
        write_config(layout, handle, keys)
        daemon = Daemon(layout).started()
        try:
            yield Loading(layout, handle, published, daemon)
        finally:
            daemon.stop(timeout=120)


def check_outputs(layout: Layout, originals: dict[str, tuple[str, int]],
                  emulator: CentrapayEmulator, left: list[str]) -> None:
    """Each file unchanged, its report the count Centrapay loaded; nothing published."""
    for name, (sha256, count) in originals.items():
        out = layout.outbox / name
        assert hashlib.file_digest(out.open("rb"), "sha256").hexdigest() == sha256, name
        sidecar = json.loads((layout.outbox / f"{name}.json").read_text())
        report = sidecar["provider"]["report"]
        assert sidecar["status"] == "loaded", sidecar
        assert (report["status"], report["count"], report["errorCount"]) == \
            ("complete", count, 0), report
    assert not list(layout.errors.iterdir()), "files went to errors"
    assert emulator.violations() == [], emulator.violations()
    assert left == [], f"still published: {left[:3]}"


def _memory(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def many_files(root: Path, kind: str, endpoint: str, count: int, records: int
               ) -> dict[str, Any]:
    """(a) and (b): ``count`` batch files of ``records`` records, dropped at once."""
    # About 200 bytes a record (a name and a padding field): 10,000 records are ~2 MB.
    files = {f"load-{i:04d}.jsonl": cw.jsonl(f"b{i}", records, width=133)
             for i in range(count)}
    total = sum(len(d) for d in files.values())
    work = root / f"many-{kind}"
    work.mkdir()
    with loading(work, kind, endpoint, workers=4) as run:
        dropped = drop_at_once(run.layout, files)
        last = last_sidecar(run.layout, count, timeout=1800)
        wait_until(lambda: not run.published(), timeout=60, what="every copy removed")
    check_outputs(run.layout, {n: (cw.sha(d), records) for n, d in files.items()},
                  run.emulator, run.published())
    requests = run.emulator.request_counts()
    elapsed = last - dropped
    calls = sum(requests.values())
    return {"publish": kind, "files": count, "records_per_file": records,
            "mb": total / MB, "seconds": elapsed, "files_per_s": count / elapsed,
            "mb_per_s": total / MB / elapsed, "calls_per_file": calls / count,
            "creates_per_file": requests.get("create_batch", 0) / count,
            "polls_per_file": requests.get("get_batch", 0) / count, "requests": requests}


def write_big(path: Path, mib: int) -> tuple[str, int]:
    """A JSON Lines file of about ``mib`` MiB; its sha256 and record count."""
    digest = hashlib.sha256()
    count = 0
    with path.open("wb") as handle:
        while handle.tell() < mib << 20:
            block = "".join(f'{{"externalId": "big-{count + i}", "name": "asset {count + i}", '
                            f'"pad": "{"x" * 120}"}}\n' for i in range(20_000)).encode()
            handle.write(block)
            digest.update(block)
            count += 20_000
    return digest.hexdigest(), count


def big_file(root: Path, kind: str, endpoint: str, mib: int, label: str) -> dict[str, Any]:
    """(c): the daemon's peak RSS while one ``mib`` MiB batch file goes through."""
    work = root / f"{label}-{kind}"
    work.mkdir()
    big = work / "big.jsonl"
    sha256, count = write_big(big, mib)
    size = big.stat().st_size
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    with loading(work, kind, endpoint, fetch_timeout=3600) as run:
        pid = run.daemon.process.pid

        def sample() -> None:
            begun = time.monotonic()
            while not done.wait(0.2):
                samples.append((time.monotonic() - begun, _memory(pid, "VmRSS")))

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            started = time.monotonic()
            sampler.start()
            os.rename(big, run.layout.inbox / "big.jsonl")
            wait_until(lambda: (run.layout.outbox / "big.jsonl.json").exists(),
                       timeout=7200, what="the big file loaded")
            seconds = time.monotonic() - started
            peak = _memory(pid, "VmHWM")
            done.set()
            sampler.join(5)
            wait_until(lambda: not run.published(), timeout=60, what="the copy removed")
        finally:
            done.set()
    check_outputs(run.layout, {"big.jsonl": (sha256, count)}, run.emulator, run.published())
    rss = [r for _, r in samples if r]
    quarters = [max(rss[len(rss) * q // 4:len(rss) * (q + 1) // 4] or [0]) / MB
                for q in range(4)] if rss else []
    return {"publish": kind, "mib": mib, "bytes": size, "records": count,
            "daemon_peak_mb": peak / MB, "seconds": seconds,
            "rss_max_by_quarter_mb": quarters, "samples": len(rss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (checks the script)")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--only", default="folder,s3", help="folder, s3 or both")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.quick:
        args.files, args.records, args.big_mib = 12, 1000, 16
    kinds = [k for k in args.only.split(",") if k]
    log_to(io.StringIO())  # the emulator's request lines would drown the figures
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="folderseal-centrapay-bench-") as temp:
        root = Path(temp)
        with s3server.s3_server(root / "moto.log") as endpoint:
            for kind in kinds:
                figures[kind] = {
                    "many": many_files(root, kind, endpoint, args.files, args.records),
                    "big": big_file(root, kind, endpoint, args.big_mib, "big"),
                    "tenth": big_file(root, kind, endpoint, max(1, args.big_mib // 10),
                                      "tenth")}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"machine: {os.cpu_count()} CPUs; emulator without faults or rate limit")
    for kind, f in figures.items():
        many, big, tenth = f["many"], f["big"], f["tenth"]
        print(f"[publish = {kind}]")
        print(f"(a) {many['files']} files of {many['records_per_file']} records "
              f"({many['mb']:.0f} MB): {many['files_per_s']:.1f} files/s, "
              f"{many['mb_per_s']:.1f} MB/s published ({many['seconds']:.1f} s)")
        print(f"(b) calls per file: {many['calls_per_file']:.2f} (create "
              f"{many['creates_per_file']:.2f}, status reads {many['polls_per_file']:.2f})")
        print(f"(c) daemon peak RSS: {big['daemon_peak_mb']:.0f} MB with a {big['mib']} MiB "
              f"file ({big['seconds']:.1f} s; RSS max by quarter of the run "
              f"{', '.join(f'{q:.0f}' for q in big['rss_max_by_quarter_mb'])} MB), "
              f"{tenth['daemon_peak_mb']:.0f} MB with {tenth['mib']} MiB "
              "(target <= 150 MB, flat)")


if __name__ == "__main__":
    main()
