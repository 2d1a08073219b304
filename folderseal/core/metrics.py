"""Prometheus metrics: counters the pipeline bumps as it goes, gauges read when scraped.

Counters count what this process did since it started (Prometheus copes with the
reset at a restart); gauges (batches by state, the oldest waiting file, a full
outbox, a share out, claims stopped for an output folder) are read from the status
report at scrape time (:mod:`folderseal.service.gauges`), so they show the same facts
as ``folderseal status`` and the status page. Provider calls are timed by
:class:`folderseal.providers.measured.MeasuredProvider`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from folderseal.core.procmetrics import ProcessCollector

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
