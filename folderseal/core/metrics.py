"""Prometheus metrics: counters the pipeline bumps as it goes, gauges read when scraped.

Counters count what this process did since it started (Prometheus copes with the
reset at a restart); gauges (batches by state, the oldest waiting file, a full
outbox, a share out, claims stopped for an output folder) are read from the status
report at scrape time, so they show the same facts as ``folderseal status`` and the
status page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from folderseal.core.errors import TransientError
from folderseal.providers import Attempts, BatchView, Provider, RemoteStatus
from folderseal.publish.folders import BLOCK_REASONS
from folderseal.service.procmetrics import ProcessCollector

# No *_created series: they would double what each scrape reads.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
PROCESS = ProcessCollector()  # memory, CPU, open files of the daemon (under ProcSubset=pid too)
REGISTRY.register(PROCESS)

FILES_SEEN = Counter("folderseal_files_seen", "Files noticed in an inbox", ["folder"],
                     registry=REGISTRY)
FILES_CLAIMED = Counter("folderseal_files_claimed", "Files moved into the work folder",
                        ["folder"], registry=REGISTRY)
FILES_SIGNED = Counter("folderseal_files_signed", "Files delivered signed to the outbox",
                       ["folder"], registry=REGISTRY)
FILES_DELIVERED = Counter(
    "folderseal_files_delivered", "Files delivered to the outbox (outputs and sidecar "
    "durable), by what the provider made of them: signed, stored, loaded",
    ["folder", "provider", "outcome"], registry=REGISTRY)
FILES_FAILED = Counter("folderseal_files_failed", "Files put in the errors folder, by reason",
                       ["folder", "code"], registry=REGISTRY)
RECORDS_FAILED = Counter(
    "folderseal_records_failed", "Records a provider could not load from a batch file it "
    "otherwise loaded (Centrapay: a complete batch's errorCount)", ["folder", "provider"],
    registry=REGISTRY)
RETRIES = Counter("folderseal_retries", "Batch steps postponed after a transient failure",
                  ["folder", "provider", "code"], registry=REGISTRY)
PROVIDER_CALLS = Histogram(
    "folderseal_provider_call_seconds", "Provider calls by operation and outcome",
    ["provider", "operation", "outcome"], registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900))


def count_delivered(folder: str, provider: str, outcome: str, count: int) -> None:
    """``count`` files of ``folder`` delivered; signed ones count as signed too."""
    FILES_DELIVERED.labels(folder, provider, outcome).inc(count)
    if outcome == "signed":
        FILES_SIGNED.labels(folder).inc(count)


class MeasuredProvider:
    """A provider whose every step is timed into ``folderseal_provider_call_seconds``
    (``_count`` is the number of calls) with outcome ok, transient (retried) or failed
    (anything else: the provider refused, or answered what cannot be used)."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _timed(self, operation: str, call: Callable[[], Any]) -> Any:
        started = time.monotonic()
        outcome = "failed"
        try:
            result = call()
            outcome = "ok"
            return result
        except TransientError:
            outcome = "transient"
            raise
        finally:
            PROVIDER_CALLS.labels(self.inner.name, operation, outcome).observe(
                time.monotonic() - started)

    def create(self, batch: BatchView, ledger: Attempts) -> str:
        return str(self._timed("create", lambda: self.inner.create(batch, ledger)))

    def upload(self, batch: BatchView, remote_id: str, ledger: Attempts) -> None:
        self._timed("upload", lambda: self.inner.upload(batch, remote_id, ledger))

    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus:
        result: RemoteStatus = self._timed("status", lambda: self.inner.status(batch, remote_id))
        return result

    def accept(self, batch: BatchView, remote_id: str, attempts: Attempts) -> None:
        self._timed("accept", lambda: self.inner.accept(batch, remote_id, attempts))

    def download(self, batch: BatchView, remote_id: str) -> Any:
        return self._timed("download", lambda: self.inner.download(batch, remote_id))

    def delete(self, batch: BatchView, remote_id: str) -> None:
        self._timed("delete", lambda: self.inner.delete(batch, remote_id))


class ReportCollector(Collector):
    """Gauges from the status report (:func:`folderseal.service.status.collect`)."""

    def __init__(self, report: Callable[[], dict[str, Any]]) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        report = self.report()
        batches = GaugeMetricFamily("folderseal_batches", "Batches by state",
                                    labels=["folder", "state"])
        files = GaugeMetricFamily("folderseal_files", "Files in the store by state",
                                  labels=["folder", "state"])
        oldest = GaugeMetricFamily("folderseal_oldest_waiting_seconds",
                                   "Age of the oldest file not yet delivered or failed",
                                   labels=["folder"])
        full = GaugeMetricFamily("folderseal_outbox_full",
                                 "1 while claims wait for disk space (min_free_bytes)",
                                 labels=["folder"])
        outage = GaugeMetricFamily("folderseal_share_outage",
                                   "1 while the folder's inbox share is out of reach",
                                   labels=["folder"])
        blocked = GaugeMetricFamily(
            "folderseal_folder_blocked", "1 while the folder claims nothing because its "
            "outbox, errors or archive folder is missing or not writable",
            labels=["folder", "reason"])
        alarms = GaugeMetricFamily("folderseal_alarms",
                                   "Things that need a person now (folderseal status exits 1)")
        for name, folder in report["folders"].items():
            for state, count in folder["batch_states"].items():
                batches.add_metric([name, state], count)
            for state, count in folder["files"].items():
                files.add_metric([name, state], count)
            oldest.add_metric([name], folder["oldest_waiting_seconds"])
            full.add_metric([name], 1.0 if folder["disk_full"] else 0.0)
            outage.add_metric([name], 1.0 if folder["outage"] else 0.0)
            reasons = {b["reason"] for b in folder["blocked"]}
            for reason in BLOCK_REASONS:  # every series, so that 0 says "not blocked"
                blocked.add_metric([name, reason], 1.0 if reason in reasons else 0.0)
        alarms.add_metric([], len(report["alarms"]))
        yield from (batches, files, oldest, full, outage, blocked, alarms)
