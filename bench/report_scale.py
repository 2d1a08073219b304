"""How long the status report takes on a big store: `folderseal status`, the status page,
/metrics and systemd's STATUS= line all read it.

Builds a store of N delivered files (a year of a busy scanner folder, say) plus some in
errors (1 %, each with its file in the errors folder) and a few batches in flight, then
times the report, the page and a /metrics render, and the daemon's reconciliation of
the errors folder with the store (once per rescan).
Run: python bench/report_scale.py [--files 200000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from prometheus_client import generate_latest

from folderseal.core import metrics
from folderseal.core.config import Settings, load
from folderseal.providers import registry  # noqa: F401  the provider kinds, for load()
from folderseal.publish.errorfiles import identity, mark
from folderseal.publish.failures import Failures
from folderseal.service import gauges, page
from folderseal.service.status import collect
from folderseal.store.sqlite import SqliteStore
from folderseal.work import WorkFolder

CONFIG = """
state_dir = "state"
node = "bench"
[providers.local]
kind = "local"
certificate = "seal.p12"
[folders.scans]
inbox = "inbox"
outbox = "outbox"
errors = "errors"
provider = "local"
"""


def _fill(store: SqliteStore, files: int, now: float) -> None:
    rows = [{"id": f"f{i:08d}", "folder": "scans", "source": f"2026/scan-{i:08d}.pdf",
             "dev": 1, "ino": i, "size": 1000, "mtime_ns": 0, "sha256": "ab" * 32,
             "seen_at": now - 3600 * 24 * 365 * (1 - i / files)} for i in range(files)]
    for start in range(0, files, 10_000):
        store.add_claims(rows[start:start + 10_000])
    db = store._db  # noqa: SLF001 - bulk state for the benchmark, not a transition
    with store.transaction():
        db.execute("UPDATE files SET state = 'DONE', updated_at = seen_at")
        db.execute("UPDATE files SET state = 'FAILED', error_code = 'empty', "
                   "error_message = 'the file is empty' WHERE rowid % 100 = 0")
        db.execute("UPDATE files SET updated_at = ? - (rowid % 3600) WHERE rowid > ?",
                   (now, files - 2000))
        # A scanner that reuses one name: a suspected fragment every few minutes for 2 days.
        db.executemany("INSERT INTO events (at, node, file_id, kind, detail) "
                       "VALUES (?, 'bench', ?, 'file.fragment_suspected', 'bench')",
                       [(now - 300 * i, f"f{files - 1 - i:08d}") for i in range(576)])


def _place_failures(store: SqliteStore, settings: Settings) -> None:
    """Put each failed file's original in the errors folder, its identity recorded."""
    errors = settings.folders["scans"].errors
    (errors / "2026").mkdir(parents=True)
    folder_id = mark(errors, 0o644)
    db = store._db  # noqa: SLF001 - bulk state for the benchmark, not a transition
    with store.transaction():
        for (file_id, source) in db.execute("SELECT id, source FROM files WHERE state = "
                                            "'FAILED'").fetchall():
            path = errors / source.decode()
            path.write_bytes(b"x")
            planned = {"role": "error", "path": source.decode(), "n": 0, "plain": False,
                       **identity(path, hashed=False), "folder_id": folder_id}
            db.execute("UPDATE files SET outputs = ? WHERE id = ?",
                       (json.dumps([planned]), file_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config.toml").write_text(CONFIG)
        settings = load(root / "config.toml")
        store = SqliteStore.open(settings.state_dir, "bench")
        started = time.perf_counter()
        _fill(store, args.files, time.time())
        _place_failures(store, settings)
        store.close()
        print(f"store of {args.files} files built in {time.perf_counter() - started:.1f} s")
        timings = {}
        for name, work in (
                ("report (status --json)", lambda: collect(settings, warnings=[])),
                ("status page", lambda: page.render(collect(settings, warnings=[]))),
                ("/metrics", lambda: generate_latest(metrics.REGISTRY))):
            if name == "/metrics":
                metrics.REGISTRY.register(
                    gauges.ReportCollector(lambda: collect(settings, warnings=[])))
            work()  # warm the page cache
            runs = []
            for _ in range(5):
                t = time.perf_counter()
                work()
                runs.append(time.perf_counter() - t)
            timings[name] = sorted(runs)[2]
        store = SqliteStore.open(settings.state_dir, "bench")
        scans = settings.folders["scans"]
        failures = Failures("scans", scans, WorkFolder(scans.work_folder, "scans", "b"), store, "b")
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            failures.reconcile()
            runs.append(time.perf_counter() - t)
        timings["errors folder reconcile"] = sorted(runs)[2]
        store.close()
        for name, seconds in timings.items():
            print(f"{name:28s} {seconds * 1000:8.1f} ms (median of 5)")


if __name__ == "__main__":
    main()
