"""The daemon's process metrics with only /proc/self visible, as under the unit's
ProcSubset=pid (no /proc/stat): a proc root made in a temp folder stands in for /proc."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from folderseal.core import metrics, procmetrics

NAMES = ("process_cpu_seconds_total", "process_open_fds", "process_max_fds",
         "process_virtual_memory_bytes", "process_resident_memory_bytes",
         "process_start_time_seconds")


def _pid_only_proc(root: Path, stat: str, fds: int) -> Path:
    """A proc root with self/stat and self/fd/ only: what ProcSubset=pid leaves."""
    (root / "self" / "fd").mkdir(parents=True)
    (root / "self" / "stat").write_text(stat)
    for fd in range(fds):
        (root / "self" / "fd" / str(fd)).touch()
    return root


def _samples() -> dict[str, float]:
    found = {}
    for line in generate_latest(metrics.REGISTRY).decode().splitlines():
        if line.startswith("process_"):
            name, _, value = line.partition(" ")
            found[name] = float(value)
    return found


def test_process_metrics_need_only_what_procsubset_pid_leaves_visible(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no /proc/stat, /metrics still has the process's memory, CPU, open and maximum
    file descriptors and start time, read from /proc/self/stat (a command name with
    spaces and a ")" in it), /proc/self/fd, getrlimit and os.times; the start time is
    the boot time from CLOCK_BOOTTIME plus starttime."""
    ticks = os.sysconf("SC_CLK_TCK")
    uptime = time.clock_gettime(time.CLOCK_BOOTTIME)
    started = int((uptime - 42.0) * ticks)  # 42 s ago
    stat = (f"4242 (python3 run (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 5 0 "
            f"{started} 123456789 2500 18446744073709551615 1 1 0 0 0 0 0 16781312 0 0 0 17 "
            "1 0 0 0 0 0\n")
    assert not (tmp_path / "stat").exists()
    monkeypatch.setattr(metrics.PROCESS, "proc", _pid_only_proc(tmp_path, stat, fds=5))
    samples = _samples()
    assert set(NAMES) <= set(samples), samples
    assert samples["process_virtual_memory_bytes"] == 123456789
    assert samples["process_resident_memory_bytes"] == 2500 * resource.getpagesize()
    assert samples["process_open_fds"] == 5
    assert samples["process_max_fds"] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert samples["process_start_time_seconds"] == pytest.approx(time.time() - 42.0, abs=1.0)
    times = os.times()
    assert 0 < samples["process_cpu_seconds_total"] <= times.user + times.system


def test_the_real_process_metrics_describe_this_process() -> None:
    """Read from the real /proc/self: the resident memory and start time of this process."""
    samples = _samples()
    assert set(NAMES) <= set(samples), samples
    assert samples["process_resident_memory_bytes"] > 1_000_000
    assert time.time() - 3600 * 24 < samples["process_start_time_seconds"] <= time.time()


@pytest.mark.skipif(procmetrics._MALLOC_TRIM is None, reason="not glibc: no malloc_trim")
def test_freed_heap_memory_is_handed_back() -> None:
    """Big buffers a thread freed between small blocks it keeps stay in the process's RSS
    until give_back_freed_memory hands their pages back (the daemon calls it every few
    seconds, so RSS does not creep up with the files it has seen)."""
    script = """
import os, threading
from folderseal.core.procmetrics import give_back_freed_memory
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def work(kept):
    big = []
    for _ in range(300):  # 30 MB of read buffers between blocks that stay
        big.append(bytearray(100_000))
        kept.append(bytes(2000))
kept = []
thread = threading.Thread(target=work, args=(kept,))
thread.start()
thread.join()
before = rss()
give_back_freed_memory()
print(before - rss())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert int(out.stdout) > 20_000_000, out.stdout
