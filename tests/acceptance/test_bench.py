"""The benchmark script in its quick form: it runs and reports every figure.

Timings are not asserted here (a busy CI machine is no place for them); the full run
with the targets is ``bench/throughput.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "throughput.py"


def test_quick_benchmark_reports_every_figure() -> None:
    """bench/throughput.py --quick seals its files end to end and prints each measurement."""
    out = subprocess.run([sys.executable, str(BENCH), "--quick", "--json"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout)
    assert figures["a_stock_pyhanko_files_per_s"] > 0
    assert figures["a2_pyhanko_cades_files_per_s"] > 0
    assert figures["b_over_a"] > 0 and figures["c_over_a2"] > 0
    assert set(figures["missed"]) <= {"b_over_a >= 20", "c_over_a2 >= 3"}
    for run in ("b_daemon_pdfs", "c_daemon_detached"):
        assert figures[run]["files_per_s"] > 0 and figures[run]["batches"] >= 1
        assert 0 < figures[run]["first_claim_s"] <= figures[run]["last_claim_s"]
    for run in ("d_peak_rss_big", "d_peak_rss_small"):
        assert figures[run]["main_mb"] > 0 and figures[run]["workers_seen"] >= 1
        assert figures[run]["worker_mb_max"] > 0
    assert figures["e_claim_latency"]["p50_s"] >= figures["e_claim_latency"]["settle_s"]


def test_quick_polling_benchmark_measures_both_side_by_side() -> None:
    """bench/polling.py --quick runs the daemon polling a folder of excluded files beside
    watchdog's PollingObserver on it and reports the CPU of each."""
    out = subprocess.run([sys.executable, str(BENCH.with_name("polling.py")), "--quick",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout)
    assert figures["files"] == 2000 and figures["observer_cpu_s"] > 0
    assert figures["daemon_cpu_s"] >= 0 and figures["share"] >= 0


def test_quick_isolation_benchmark_measures_both_targets() -> None:
    """bench/isolation.py --quick claims small files beside a big one and measures a local
    folder's rate beside a share that hangs (bindfs stopped), which /healthz and status
    name."""
    out = subprocess.run([sys.executable, str(BENCH.with_name("isolation.py")), "--quick",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout)
    five, six = figures["big_beside_small"], figures["hung_share"]
    assert 0 < five["beside_p50_s"] <= five["beside_p95_s"] <= five["beside_max_s"]
    assert five["alone_p95_s"] > 0 and 0 < five["big_hashed_s"] < five["big_sealed_s"]
    assert six["answering_files_per_s"] > 0 and six["hung_files_per_s"] > 0
    assert six["healthz_status"] == 503 and six["healthz_names_folder"]
    assert six["status_alarm"].startswith("folder scans: not making progress: its intake")
    assert set(figures["missed"]) <= {"small beside big p95 < settle + 1 s",
                                      "local rate beside a hung share >= 80%"}


def test_quick_centrapay_benchmark_reports_every_figure() -> None:
    """bench/centrapay.py --quick loads its files through the emulator with folder and S3
    publishing (each checked against the emulator's journal) and prints each figure."""
    script = BENCH.with_name("centrapay.py")
    out = subprocess.run([sys.executable, str(script), "--quick", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout)
    assert set(figures) == {"folder", "s3"}
    for kind in ("folder", "s3"):
        many = figures[kind]["many"]
        assert many["files_per_s"] > 0 and many["mb_per_s"] > 0
        assert many["creates_per_file"] == 1.0 and many["calls_per_file"] >= 2
        for run in ("big", "tenth"):
            assert 0 < figures[kind][run]["daemon_peak_mb"] < 400
            assert figures[kind][run]["samples"] >= 1


def test_quick_memory_benchmark_reports_every_figure() -> None:
    """bench/memory.py --quick seals a big and a tenth-size file with the local signer,
    through SEAL and through Clevver (each against its emulator) and reports the peak
    RSS of each."""
    out = subprocess.run([sys.executable, str(BENCH.with_name("memory.py")), "--quick",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout)
    runs = [f"{kind}_{size}" for kind in ("local", "seal", "clevver")
            for size in ("big", "tenth")]
    assert set(figures) == {"cpus", "missed", *runs}
    for run in runs:
        assert figures[run] and all(value > 0 for value in figures[run].values()), run
    for size in ("big", "tenth"):
        assert figures[f"local_{size}"]["workers_seen"] >= 1
    assert set(figures["missed"]) <= {"local_main_mb <= 150", "local_worker_mb <= 150",
                                      "seal_daemon_mb <= 150", "clevver_daemon_mb <= 150"}


def test_quick_backlog_benchmark_reports_every_figure() -> None:
    """bench/backlog.py --quick starts the daemon on a backlog of 3,000 files already in
    the inbox, asks for the status page and /metrics while it drains, and reports each
    figure."""
    out = subprocess.run([sys.executable, str(BENCH.with_name("backlog.py")), "--quick",
                          "--json"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout)
    assert figures["files"] == figures["sidecars"] == 3000 and figures["errors"] == 0
    for name in ("first_batched_s", "first_batch_accepted_s", "first_sidecar_s",
                 "rss_max_mb", "rss_at_tenth_mb", "rss_end_mb", "drain_s", "files_per_s"):
        assert figures[name] > 0, name
    assert figures["first_batch_accepted_s"] <= figures["first_sidecar_s"] < figures["drain_s"]
    assert figures["rss_samples"] >= 2
    for page in ("status_page", "metrics"):
        assert figures[page]["asked"] >= 1, page
        assert 0 < figures[page]["p50_ms"] <= figures[page]["p95_ms"] <= figures[page]["max_ms"]
    assert isinstance(figures["missed"], list)

@pytest.mark.fleet
def test_quick_fleet_benchmark_reports_every_figure() -> None:
    """bench/fleet.py --quick runs 1, 2 and 3 nodes on a cluster of its own, a takeover
    after a kill -9, and reports throughput, takeover time and statements per file, with
    every fleet invariant kept."""
    script = BENCH.with_name("fleet.py")
    out = subprocess.run([sys.executable, str(script), "--quick", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout)
    assert [r["nodes"] for r in figures["runs"]] == [1, 2, 3]
    for run in figures["runs"]:
        assert run["delivered"] == run["files"] and run["files_per_s"] > 0
        assert run["statements_per_file"] >= run["statements_per_file_without_utility"] > 0
        assert run["transactions_per_file"] > 0 and run["invariants"] == []
    taken, = figures["takeovers"]
    assert taken["after_kill_s"] > 0 and taken["invariants"] == []
    assert -1 < taken["after_expiry_s"] < taken["after_kill_s"]
    assert "scaling" in figures["scaling"]
