"""The gauges of ``/metrics``, read from the status report when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from folderseal.publish.folders import BLOCK_REASONS


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
        takeovers = GaugeMetricFamily(
            "folderseal_batch_takeovers", "Times a batch in flight was taken over (another "
            "holder's lease had lapsed; status alarms at 3); batches never taken over have "
            "no series", labels=["folder", "batch"])
        alarms = GaugeMetricFamily("folderseal_alarms",
                                   "Things that need a person now (folderseal status exits 1)")
        for name, folder in report["folders"].items():
            for state, count in folder["batch_states"].items():
                batches.add_metric([name, state], count)
            for batch in folder["batches"]:
                if batch.get("takeovers"):
                    takeovers.add_metric([name, batch["batch"]], batch["takeovers"])
            for state, count in folder["files"].items():
                files.add_metric([name, state], count)
            oldest.add_metric([name], folder["oldest_waiting_seconds"])
            full.add_metric([name], 1.0 if folder["disk_full"] else 0.0)
            outage.add_metric([name], 1.0 if folder["outage"] else 0.0)
            reasons = {b["reason"] for b in folder["blocked"]}
            for reason in BLOCK_REASONS:  # every series, so that 0 says "not blocked"
                blocked.add_metric([name, reason], 1.0 if reason in reasons else 0.0)
        alarms.add_metric([], len(report["alarms"]))
        yield from (batches, files, oldest, full, outage, blocked, takeovers, alarms)
        yield from _nodes(report.get("nodes", []))


def _nodes(nodes: list[dict[str, Any]]) -> Iterator[Metric]:
    """Per node of the store (this one only, on SQLite): alive, heartbeat age, clock
    offset (a node whose notes carry no clock has no offset series)."""
    alive = GaugeMetricFamily("folderseal_node_alive", "1 while the node's last heartbeat "
                              "is younger than [store] lease_seconds", labels=["node"])
    age = GaugeMetricFamily("folderseal_node_heartbeat_age_seconds",
                            "Age of the node's last heartbeat, on the store's clock",
                            labels=["node"])
    offset = GaugeMetricFamily(
        "folderseal_node_clock_offset_seconds", "The node's clock minus the store's at its "
        "last heartbeat (status alarms beyond 2 s)", labels=["node"])
    for found in nodes:
        alive.add_metric([found["node"]], 1.0 if found["alive"] else 0.0)
        age.add_metric([found["node"]], found["heartbeat_age_seconds"])
        if found["clock_offset_seconds"] is not None:
            offset.add_metric([found["node"]], found["clock_offset_seconds"])
    yield from (alive, age, offset)
