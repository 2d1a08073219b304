"""The nodes part of the status report on a real store and on the in-memory one: every
node alive or dead by its heartbeat on the store's clock, each one's clock offset (its
own clock noted in the heartbeat minus the time the store stamped), and the alarms for
a clock off and a node that stopped lately; shown by `status`, the page and /metrics.

The heartbeats are written with a hand clock, as the store stamps them; the clock a
node notes is chosen by the test."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from folderseal.commands.status import show
from folderseal.core import statelock
from folderseal.core.config import Settings, load
from folderseal.service import page, status
from folderseal.service.gauges import ReportCollector
from folderseal.service.node import CLOCK_NOTE
from folderseal.service.status import collect
from folderseal.store import Store
from folderseal.store.memory import MemoryStore
from folderseal.store.sqlite import SqliteStore

T = 1_800_000_000.0
LEASE = 30.0
CONFIG = f"""
state_dir = "state"
node = "n1"
[store]
{{store}}
lease_seconds = {LEASE}
[providers.remote]
kind = "seal"
base_url = "https://seal.invalid"
api_key = "k"
[folders.scans]
inbox = "inbox"
outbox = "outbox"
errors = "errors"
provider = "remote"
"""
# The URL only makes these settings a fleet's: the store they read is the test's own.
FLEET = 'url = "postgresql://folderseal@db.invalid/folderseal"'


def _settings(tmp_path: Path, store: str = "") -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.replace("{store}", store))
    settings = load(path)
    settings.state_dir.mkdir()
    return settings


def _beat(store: Store, clock: list[float], *, started: float, at: float,
          offset: float | None, pid: int = 4242, instance: str = "") -> None:
    """Register ``store``'s node at ``started`` and have it beat at ``at`` (the store's
    clock) noting its own clock ``offset`` seconds off (None: no clock noted)."""
    clock[0] = started
    store.register_node(instance or f"i-{store.node}", pid, started, alive_seconds=LEASE)
    clock[0] = at
    store.heartbeat(pid, started, {} if offset is None else {CLOCK_NOTE: at + offset})


def _fleet(kind: str, settings: Settings, clock: list[float]) -> Callable[[str], Store]:
    """Connections, one per node, to one store of ``kind`` on the hand clock."""
    if kind == "memory":
        memory = MemoryStore("n1", clock=lambda: clock[0], state_dir=settings.state_dir)
        return memory.connect
    SqliteStore.open(settings.state_dir, "n1").close()  # made and migrated
    return lambda node: SqliteStore(settings.database, node, clock=lambda: clock[0])


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_every_node_is_listed_alive_or_dead_with_its_clock_offset_and_alarms(
        tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Five nodes on a shared store: this one on time, one alive 300 s ahead (an alarm
    naming chrony/ntp), one alive without a clock note (an older version: no offset,
    no alarm), one dead two minutes (an alarm naming the two claims and the batch it
    left, its lease lapsed; its stale 5 s offset is shown but is no alarm), one dead two
    days (listed, no alarm); and a claim of a node with no row (a warning). status, the
    page and /metrics show them."""
    settings = _settings(tmp_path, FLEET)
    clock = [T]
    node = _fleet(kind, settings, clock)
    lock = statelock.acquire(settings.state_dir)
    try:
        _beat(node("n1"), clock, started=T - 600, at=T - 1, offset=-0.3, pid=os.getpid(),
              instance=statelock.instance_id(settings.state_dir))
        _beat(node("ahead"), clock, started=T - 600, at=T - 2, offset=300.0)
        _beat(node("older"), clock, started=T - 600, at=T - 3, offset=None)
        _beat(node("gone"), clock, started=T - 600, at=T - 120, offset=5.0)
        _leave_claims_and_a_batch(node("gone"))
        _beat(node("retired"), clock, started=T - 3 * 86400, at=T - 2 * 86400, offset=0.0)
        clock[0] = T
        node("nameless").add_claim(id="nameless-0", folder="scans", source="n.pdf", dev=1,
                                   ino=9, size=3, mtime_ns=4, sha256="ab" * 32, seen_at=T)
        monkeypatch.setattr(status, "reading_store", lambda _settings: node("n1"))
        report = collect(settings, warnings=[])
        assert show(settings) == 1
    finally:
        os.close(lock)
    found = {n["node"]: n for n in report["nodes"]}
    assert [n["node"] for n in report["nodes"]] == ["n1", "ahead", "gone", "older",
                                                     "retired"]
    assert {name: (n["alive"], n["clock_offset_seconds"], n["heartbeat_age_seconds"])
            for name, n in found.items()} == {
        "n1": (True, -0.3, 1.0), "ahead": (True, 300.0, 2.0), "older": (True, None, 3.0),
        "gone": (False, 5.0, 120.0), "retired": (False, 0.0, 172800.0)}
    assert [n["node"] for n in report["nodes"] if n["this_node"]] == ["n1"]
    assert found["n1"]["pid"] == os.getpid() and found["ahead"]["pid"] == 4242
    assert found["ahead"]["heartbeat"] == "2027-01-15T07:59:58.000Z"
    assert found["ahead"]["version"] and found["ahead"]["clock_off"]
    assert report["alarms"] == [
        "node ahead's clock is +300.0 s off the database's: fix its time sync (chrony/ntp) "
        "on that host",
        "node gone stopped: no heartbeat since 2027-01-15T07:58:00.000Z (more than "
        "lease_seconds, 30 s): start its daemon again (`systemctl start folderseal` on its "
        "host; its log says why it stopped); it left 2 claim(s) and 1 batch(es) not yet "
        "taken over: a live node takes the claims at its next scan and each batch as its "
        "lease lapses (none runs? start one); a node retired on purpose stops being an "
        "alarm a day after its last heartbeat"], report["alarms"]
    # A claim of a node with no row (no node's line counts it) is a warning.
    assert report["warnings"] == [
        "1 claim(s) belong to no node listed here (made before claims were per node, or "
        "under a node name the store has no row for): the next scan of any live node "
        "takes them over; if none runs, start one"]
    assert {name: (n["claims"], n["batches_held"], n["orphans"])
            for name, n in found.items()} == {
        "n1": (0, 0, 0), "ahead": (0, 0, 0), "older": (0, 0, 0), "gone": (2, 0, 1),
        "retired": (0, 0, 0)}

    table = capsys.readouterr().out
    assert "5 node(s) on the store" in table
    assert "alive (this node)" in table and "+300.0 s" in table and "dead" in table
    assert "2 claims, 0 batches, 1 orphaned" in table
    html = page.render(report)
    assert '<section id="nodes">' in html and "+300.0 s" in html and "2 days ago" in html
    assert "2 claims, 0 batches, 1 orphaned" in html
    gauges = {m.name: m for m in ReportCollector(lambda: report).collect()}
    offsets = {s.labels["node"]: s.value
               for s in gauges["folderseal_node_clock_offset_seconds"].samples}
    assert offsets == {"n1": -0.3, "ahead": 300.0, "gone": 5.0, "retired": 0.0}
    alive = {s.labels["node"]: s.value for s in gauges["folderseal_node_alive"].samples}
    assert alive == {"n1": 1.0, "ahead": 1.0, "older": 1.0, "gone": 0.0, "retired": 0.0}
    ages = {s.labels["node"]: s.value
            for s in gauges["folderseal_node_heartbeat_age_seconds"].samples}
    assert ages["gone"] == 120.0


def _leave_claims_and_a_batch(store: Store) -> None:
    """Two claims of ``store``'s node not yet batched, and a batch it took (its lease,
    taken at the store's time now, lapses LEASE_SECONDS later)."""
    for i in range(3):
        store.add_claim(id=f"{store.node}-{i}", folder="scans", source=f"{i}.pdf", dev=1,
                        ino=i, size=3, mtime_ns=4, sha256="ab" * 32, seen_at=store.clock())
    store.create_batch(batch_id=f"{store.node}-batch", folder="scans", provider="remote",
                       entries=[(f"{store.node}-2", "0001_2.pdf")])
    assert store.acquire_batch() is not None


def test_on_sqlite_the_list_holds_this_node_alone_and_the_output_stays_as_it_was(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One node on SQLite: the list holds just this node (a row of an earlier node name
    of the same state folder is not a node beside it, and is no alarm), and `status`
    prints no nodes part; only a clock off (seen here with a hand clock) shows it, with
    its alarm."""
    settings = _settings(tmp_path)
    clock = [T]
    SqliteStore.open(settings.state_dir, "n1").close()
    renamed = SqliteStore(settings.database, "old-name", clock=lambda: clock[0])
    _beat(renamed, clock, started=T - 7200, at=T - 3600, offset=0.0)
    renamed.close()
    this = SqliteStore(settings.database, "n1", clock=lambda: clock[0])
    lock = statelock.acquire(settings.state_dir)
    try:
        _beat(this, clock, started=T - 60, at=T - 1, offset=0.0, pid=os.getpid(),
              instance=statelock.instance_id(settings.state_dir))
        clock[0] = T
        report = collect(settings, warnings=[])
        assert show(settings) == 0
        [only] = report["nodes"]
        assert only["node"] == "n1" and only["alive"] and only["clock_offset_seconds"] == 0.0
        assert report["alarms"] == []
        assert "node(s) on the store" not in capsys.readouterr().out
        assert 'id="nodes"' not in page.render(report)

        this.heartbeat(os.getpid(), T - 60, {CLOCK_NOTE: T + 2.5})  # stamped at T
        report = collect(settings, warnings=[])
        assert show(settings) == 1
    finally:
        os.close(lock)
        this.close()
    assert report["alarms"] == ["node n1's clock is +2.5 s off the database's: fix its "
                                "time sync (chrony/ntp) on that host"]
    assert "1 node(s) on the store" in capsys.readouterr().out
