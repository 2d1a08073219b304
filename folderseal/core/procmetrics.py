"""The daemon's own process metrics, read from what a hardened service can see, and
the memory it hands back (:func:`give_back_freed_memory`).

prometheus-client's ProcessCollector reads the boot time from ``/proc/stat`` and exports
nothing without it; under the unit's ``ProcSubset=pid`` only ``/proc/<pid>/`` is
visible. This collector reads ``/proc/self/stat`` (memory, start time) and
``/proc/self/fd``, ``getrlimit`` and ``os.times``, and takes the boot time from the
clocks (now minus ``CLOCK_BOOTTIME``), under prometheus-client's metric names.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# Fields of /proc/self/stat after the ")" that ends the command name (proc(5) numbers
# them from 1 with pid and name first, so field N is at index N - 3).
_STARTTIME, _VSIZE, _RSS = 19, 20, 21

_MALLOC_TRIM = None
with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to give back
    _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim
    _MALLOC_TRIM.argtypes = [ctypes.c_size_t]


class ProcessCollector(Collector):
    """process_cpu_seconds_total, process_open_fds, process_max_fds,
    process_virtual_memory_bytes, process_resident_memory_bytes and
    process_start_time_seconds of this process."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.page_size = resource.getpagesize()

    def collect(self) -> Iterator[Metric]:
        times = os.times()
        yield CounterMetricFamily("process_cpu_seconds",
                                  "Total user and system CPU time spent in seconds.",
                                  value=times.user + times.system)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            yield GaugeMetricFamily("process_max_fds", "Maximum number of open file "
                                    "descriptors.", value=soft)
        try:
            open_fds = len(os.listdir(self.proc / "self" / "fd"))
            fields = (self.proc / "self" / "stat").read_bytes().rpartition(b")")[2].split()
        except OSError:
            return
        yield GaugeMetricFamily("process_open_fds", "Number of open file descriptors.",
                                value=open_fds)
        yield GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                value=float(fields[_VSIZE]))
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in "
                                "bytes.", value=float(fields[_RSS]) * self.page_size)
        booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        yield GaugeMetricFamily("process_start_time_seconds", "Start time of the process since "
                                "unix epoch in seconds.",
                                value=booted + float(fields[_STARTTIME]) / self.ticks)


def give_back_freed_memory() -> None:
    """Hand the pages the C heap holds free back to the system (glibc's ``malloc_trim``).
    Buffers freed between blocks still in use stay counted in the process's RSS, which
    then creeps up with the files it has seen; elsewhere this does nothing."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
