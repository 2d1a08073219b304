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
