"""The status report on a real store: alarms for what needs a person, none for files in
errors, the one-line summary, the chart's minutes, and the metrics read off it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from folderseal.commands.status import show
from folderseal.core import statelock
from folderseal.core.config import Settings, load
from folderseal.core.model import BatchState, FileState
from folderseal.publish import retrying
from folderseal.service import page
from folderseal.service.gauges import ReportCollector
from folderseal.service.status import ALARM_ATTEMPTS, TAKEOVER_ALARM, collect, summary
from folderseal.store import LEASE_SECONDS, Store
from folderseal.store.sqlite import SqliteStore

CONFIG = """
state_dir = "state"
node = "n1"
[providers.remote]
kind = "seal"
base_url = "https://seal.invalid"
api_key = "k"
max_wait_seconds = 600
[folders.scans]
inbox = "inbox"
outbox = "outbox"
errors = "errors"
provider = "remote"
stuck_after_seconds = 3600
"""


def _settings(tmp_path: Path) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return load(path)


def _claim(store: Store, file_id: str, seen_at: float) -> None:
    store.add_claim(id=file_id, folder="scans", source=f"{file_id}.pdf", dev=1,
                    ino=abs(hash(file_id)) % 10**6, size=10, mtime_ns=0, sha256="ab" * 32,
                    seen_at=seen_at)


def test_a_batch_failing_for_long_and_an_old_batch_are_alarms(tmp_path: Path) -> None:
    """A batch postponed ALARM_ATTEMPTS times in a row, and one older than the provider's
    max_wait_seconds, each raise an alarm naming the batch; a file delivered and one in
    errors raise none, and the summary counts them."""
    settings = _settings(tmp_path)
    now = time.time()
    clock = [now - 3000.0]
    settings.state_dir.mkdir()
    store = SqliteStore(settings.database, "n1", clock=lambda: clock[0])
    _claim(store, "old", clock[0])
    store.create_batch(batch_id="batch-old", folder="scans", provider="remote",
                     entries=[("old", "0001_old.pdf")])
    clock[0] = now - 60.0
    _claim(store, "failing", clock[0])
    store.create_batch(batch_id="batch-failing", folder="scans", provider="remote",
                     entries=[("failing", "0001_failing.pdf")])
    for _ in range(ALARM_ATTEMPTS):
        batch = store.acquire_batch(frozenset({"batch-old"}))
        assert batch is not None and batch.id == "batch-failing"
        store.postpone(batch, lambda _a: 0.0, "transient", "HTTP 503 from the provider")
    for file_id, state in (("done", FileState.DONE), ("bad", FileState.FAILED)):
        clock[0] = now - 90.0
        _claim(store, file_id, clock[0])
        store.set_file_state(file_id, FileState.CLAIMED, state)
    store.close()

    report = collect(settings, warnings=[])
    alarms = report["alarms"]
    assert "the daemon is not running" in alarms
    assert any("batch-failing" in a and f"after {ALARM_ATTEMPTS} attempts" in a
               and "HTTP 503" in a for a in alarms), alarms
    assert any("batch-old" in a and "max_wait_seconds" in a for a in alarms), alarms
    assert not any("bad" in a for a in alarms), "a file in errors is no alarm"
    scans = report["folders"]["scans"]
    assert scans["failed"][0]["source"] == "bad.pdf"
    assert scans["in_flight"] == 2 and 2990 < scans["oldest_waiting_seconds"] < 3100
    assert scans["batch_states"] == {BatchState.BATCHED: 2}
    assert scans["signed_per_minute"][-2] == 1 and sum(scans["signed_per_minute"]) == 1
    line = summary(report)
    assert line.startswith("0 waiting, 2 in flight, 1 signed, 1 failed; folder scans: batch")

    gauges = {m.name: m for m in ReportCollector(lambda: report).collect()}
    assert gauges["folderseal_alarms"].samples[0].value == len(alarms)
    assert [(s.labels, s.value) for s in gauges["folderseal_batches"].samples] == [
        ({"folder": "scans", "state": "BATCHED"}, 2.0)]


def test_the_summary_line_names_each_stopped_folder_once() -> None:
    """The one-line summary (systemd's STATUS=) names a folder whose claims stopped, or
    whose share is out, once: by the first alarm if it is about that folder, else in the
    list; folders the first alarm is not about stay in the list."""
    def folder(outage: str = "", blocked: str = "") -> dict[str, Any]:
        return {"settling": 0, "in_flight": 0, "delivered": 0, "files": {}, "outage": outage,
                "blocked": [{"reason": "outbox_missing", "message": blocked}] if blocked else []}

    report = {"folders": {"a": folder(blocked="the outbox folder /a is not there"),
                          "b": folder(blocked="the errors folder /b is not there"),
                          "c": folder(outage="the inbox /c is not there")},
              "alarms": ["folder a: claims stopped: the outbox folder /a is not there",
                         "folder b: claims stopped: the errors folder /b is not there",
                         "folder c: share out: the inbox /c is not there"]}
    line = summary(report)
    assert line == ("0 waiting, 0 in flight, 0 signed, 0 failed, share out: c, claims "
                    "stopped: b; folder a: claims stopped: the outbox folder /a is not there")
    report["alarms"] = report["alarms"][2:]
    assert summary(report).endswith("claims stopped: a, b; folder c: share out: the inbox /c "
                                    "is not there")
    assert summary(report).count("share out") == 1


def test_a_quiet_store_with_files_in_errors_has_no_alarm_but_the_daemon(
        tmp_path: Path) -> None:
    """Only the stopped daemon is an alarm when everything else is delivered or failed."""
    settings = _settings(tmp_path)
    store = SqliteStore.open(settings.state_dir, "n1", check=False)
    _claim(store, "bad", time.time())
    store.set_file_state("bad", FileState.CLAIMED, FileState.FAILED)
    store.close()
    assert collect(settings, warnings=[])["alarms"] == ["the daemon is not running"]


def test_a_daemon_that_never_ran_is_reported_without_making_a_store(tmp_path: Path) -> None:
    """The report of a configuration whose daemon never ran says so, without creating
    the store: `status` only reads."""
    settings = _settings(tmp_path)
    report = collect(settings, warnings=[])
    assert not settings.database.exists()
    assert report["alarms"] == ["the daemon is not running"]
    assert any("never ran" in w for w in report["warnings"])


def test_suspected_fragments_of_the_last_day_and_ignored_names_are_shown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fragment suspected an hour ago is listed (table, --json, page) with its earlier
    claim and what to do, one from 25 hours ago is not; the ignored names of the daemon's
    last scan show with their count and the oldest's age; neither is an alarm."""
    settings = _settings(tmp_path)
    now = time.time()
    clock = [now - 25 * 3600.0]
    settings.state_dir.mkdir()
    store = SqliteStore(settings.database, "n1", clock=lambda: clock[0])
    for claim_id, at in (("yesterday", now - 25 * 3600.0), ("slow", now - 3600.0)):
        clock[0] = at - 5
        _claim(store, claim_id, clock[0])
        store.set_file_state(claim_id, FileState.CLAIMED, FileState.DONE)
        clock[0] = at
        store.event("file.fragment_suspected", file_id=claim_id,
                    detail=f"{claim_id}.pdf appeared 5 s after a file of that name was "
                           "claimed: raise settle_seconds")
    lock = statelock.acquire(settings.state_dir)
    try:
        clock[0] = now
        store.register_node(statelock.instance_id(settings.state_dir), os.getpid(), now - 60,
                            alive_seconds=30)
        store.heartbeat(os.getpid(), now - 60, {"folders": {"scans": {"ignored": {
            "count": 3, "oldest": "sub/y.PART", "oldest_mtime": now - 7200}}}})
        store.close()
        report = collect(settings, warnings=[])
        assert show(settings) == 0
    finally:
        os.close(lock)
    scans = report["folders"]["scans"]
    assert scans["fragments_suspected"] == 1
    [fragment] = scans["fragments"]
    assert fragment["source"] == "slow.pdf" and fragment["earlier_claim"] == "slow"
    assert "raise settle_seconds" in fragment["why"]
    assert scans["ignored"]["count"] == 3 and scans["ignored"]["oldest"] == "sub/y.PART"
    assert 7190 < scans["ignored"]["oldest_age_seconds"] < 7300
    assert report["alarms"] == []
    table = capsys.readouterr().out
    assert "fragment?" in table and "slow.pdf" in table and "yesterday" not in table
    assert "sub/y.PART" in table and "3 in the inbox" in table
    html = page.render(report)
    assert 'table class="fragments"' in html and "slow.pdf" in html
    assert 'class="warn ignored"' in html and "sub/y.PART, was last written 2.0 h ago" in html


def test_the_in_flight_limit_counts_what_status_calls_in_flight(tmp_path: Path) -> None:
    """max_in_flight_files counts the files claimed and not yet delivered, as status's
    in_flight does: with one file in each state, the store's count the intake holds
    claims back by equals the report's in_flight (PUBLISHED files are delivered)."""
    settings = _settings(tmp_path)
    settings.state_dir.mkdir()
    store = SqliteStore(settings.database, "n1")
    for state in FileState:
        _claim(store, state.lower(), time.time())
        if state != FileState.CLAIMED:
            store.set_file_state(state.lower(), FileState.CLAIMED, state)
    counted = store.count_in_flight("scans")
    store.close()
    scans = collect(settings, warnings=[])["folders"]["scans"]
    assert counted == scans["in_flight"] == 4, (counted, scans["files"])


def test_files_of_a_delivered_batch_count_as_delivered_not_in_flight(tmp_path: Path) -> None:
    """A file whose outputs and sidecar are published (its batch DELIVERED, not yet
    cleaned) counts as delivered, not in flight, and is not "waiting" however old."""
    settings = _settings(tmp_path)
    now = time.time()
    clock = [now - 5000.0]  # older than stuck_after_seconds (3600)
    settings.state_dir.mkdir()
    store = SqliteStore(settings.database, "n1", clock=lambda: clock[0])
    _claim(store, "out", clock[0])
    store.create_batch(batch_id="batch-out", folder="scans", provider="remote",
                     entries=[("out", "0001_out.pdf")])
    store.set_file_state("out", FileState.BATCHED, FileState.PUBLISHED)
    clock[0] = now - 10.0
    _claim(store, "waiting", clock[0])
    store.close()

    report = collect(settings, warnings=[])
    scans = report["folders"]["scans"]
    assert scans["in_flight"] == 1 and scans["delivered"] == 1
    assert scans["oldest_waiting_seconds"] < 100
    assert not any("waited" in a for a in report["alarms"]), report["alarms"]
    assert "1 in flight, 1 signed" in summary(report)


def test_a_retry_at_work_is_not_taken_for_an_interrupted_one(tmp_path: Path) -> None:
    """A file RETRYING for minutes is alarmed as an interrupted retry only while no retry
    holds the retry lock: a big batch or a slow copy being moved is not interrupted."""
    settings = _settings(tmp_path)
    settings.state_dir.mkdir()
    ago = time.time() - 600
    store = SqliteStore(settings.database, "n1", clock=lambda: ago)
    _claim(store, "f1", ago)
    store.set_file_state("f1", FileState.CLAIMED, FileState.FAILED)
    record = store.file("f1")
    assert record is not None
    store.begin_retry([(record, {"role": "retry", "to": "inbox"})])
    store.close()

    def interrupted() -> list[str]:
        return [a for a in collect(settings, warnings=[])["alarms"] if "interrupted" in a]

    with retrying.lock(settings.state_dir, wait=0) as held:
        assert held
        assert interrupted() == []
    [alarm] = interrupted()
    assert "run `folderseal retry` to see why" in alarm


def test_a_storing_folder_speaks_of_stored_files_and_shows_progress(tmp_path: Path) -> None:
    """A Clevver folder's report, summary and page say "stored", not "signed", and a
    batch the provider reports progress for shows it."""
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.replace('kind = "seal"\nbase_url = "https://seal.invalid"\n'
                                   'api_key = "k"',
                                   'kind = "clevver"\nbase_url = "https://clevver.invalid"\n'
                                   'api_token = "t"'))
    settings = load(path)
    settings.state_dir.mkdir()
    store = SqliteStore(settings.database, "n1")
    _claim(store, "out", time.time())
    store.create_batch(batch_id="batch-out", folder="scans", provider="remote",
                     entries=[("out", "0001_out.pdf")])
    store.set_file_state("out", FileState.BATCHED, FileState.PUBLISHED)
    _claim(store, "busy", time.time())
    store.create_batch(batch_id="batch-busy", folder="scans", provider="remote",
                     entries=[("busy", "0001_busy.pdf")])
    batch = store.acquire_batch(frozenset({"batch-out"}))
    assert batch is not None and batch.id == "batch-busy"
    store.set_progress(batch, 33.3)
    store.close()

    report = collect(settings, warnings=[])
    scans = report["folders"]["scans"]
    assert scans["outcome"] == "stored"
    assert [b["progress"] for b in scans["batches"] if b["batch"] == "batch-busy"] == [33.3]
    assert "1 stored" in summary(report) and "signed" not in summary(report)
    html = page.render(report)
    assert "files stored in the last hour" in html and "signed" not in html
    assert "(33.3%)" in html


def test_each_batch_shows_its_holder_epoch_and_lease_left(tmp_path: Path) -> None:
    """A batch some node works on names that node, the epoch of its lease (how often it
    was taken) and the seconds its lease has left; a batch nobody holds names none."""
    settings = _settings(tmp_path)
    settings.state_dir.mkdir()
    clock = [time.time() - 10.0]
    store = SqliteStore(settings.database, "scan-1", clock=lambda: clock[0])
    for file_id in ("held", "free"):
        _claim(store, file_id, clock[0])
        store.create_batch(batch_id=f"batch-{file_id}", folder="scans", provider="remote",
                           entries=[(file_id, f"0001_{file_id}.pdf")])
    taken = store.acquire_batch(frozenset({"batch-free"}))
    assert taken is not None and taken.id == "batch-held"
    store.close()

    batches = {b["batch"]: b for b in collect(settings, warnings=[])["folders"]["scans"]["batches"]}
    held, free = batches["batch-held"], batches["batch-free"]
    assert (held["holder"], held["epoch"]) == ("scan-1", 1)
    assert LEASE_SECONDS - 12 < held["lease_left_seconds"] < LEASE_SECONDS - 8
    assert (free["holder"], free["epoch"], free["lease_left_seconds"]) == (None, 0, None)


def test_a_batch_taken_over_again_and_again_is_an_alarm_naming_what_to_look_at(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each batch counts the times it was taken while another holder's lease had lapsed;
    status, the page and /metrics show it, and TAKEOVER_ALARM takeovers of one batch are
    an alarm naming it and the logs to look at. Once is no alarm."""
    settings = _settings(tmp_path)
    settings.state_dir.mkdir()
    clock = [time.time() - 10 * LEASE_SECONDS]
    nodes = [SqliteStore(settings.database, name, clock=lambda: clock[0])
             for name in ("scan-1", "scan-2")]
    for file_id in ("again", "once"):
        _claim(nodes[0], file_id, clock[0])
        nodes[0].create_batch(batch_id=f"batch-{file_id}", folder="scans", provider="remote",
                              entries=[(file_id, f"0001_{file_id}.pdf")])
    for turn in range(TAKEOVER_ALARM + 1):  # each holder's lease lapses in turn
        taken = nodes[turn % 2].acquire_batch(frozenset({"batch-once"}))
        assert taken is not None and taken.takeovers == turn
        clock[0] += LEASE_SECONDS + 1
    for turn in range(2):
        assert nodes[turn].acquire_batch(frozenset({"batch-again"})) is not None
        clock[0] += LEASE_SECONDS + 1
    for store in nodes:
        store.close()

    report = collect(settings, warnings=[])
    batches = {b["batch"]: b for b in report["folders"]["scans"]["batches"]}
    assert (batches["batch-again"]["takeovers"], batches["batch-once"]["takeovers"]) == \
        (TAKEOVER_ALARM, 1)
    alarms = [a for a in report["alarms"] if "taken over" in a]
    assert len(alarms) == 1
    assert "batch batch-again" in alarms[0] and f"taken over {TAKEOVER_ALARM} times" in alarms[0]
    assert "lease.lost" in alarms[0] and "step_limit" in alarms[0]
    assert f"taken over {TAKEOVER_ALARM}×" in page.render(report)
    gauges = {m.name: m for m in ReportCollector(lambda: report).collect()}
    assert {s.labels["batch"]: s.value for s in gauges["folderseal_batch_takeovers"].samples} \
        == {"batch-again": TAKEOVER_ALARM, "batch-once": 1}
    assert show(settings) == 1
    out = capsys.readouterr().out
    assert f"taken over {TAKEOVER_ALARM}×" in out and "ALARM: folder scans: batch batch-again" \
        in " ".join(out.split())


def test_a_main_loop_that_hangs_while_the_daemon_beats_is_an_alarm(tmp_path: Path) -> None:
    """The heartbeat has a thread of its own, so it goes on while the main loop is stuck:
    its note of the main loop's last round shows it. Beats from a loop that ran
    just now raise no alarm; beats from one stuck for 40 s name it."""
    settings = _settings(tmp_path)
    settings.state_dir.mkdir()
    now = time.time()
    store = SqliteStore(settings.database, "n1", clock=lambda: now)
    lock = statelock.acquire(settings.state_dir)
    try:
        store.register_node(statelock.instance_id(settings.state_dir), os.getpid(), now - 60,
                            alive_seconds=30)
        store.heartbeat(os.getpid(), now - 60, {"main_loop_at": now - 1, "clock": now})
        assert not [a for a in collect(settings, warnings=[])["alarms"] if "main loop" in a]
        store.heartbeat(os.getpid(), now - 60, {"main_loop_at": now - 40, "clock": now})
        alarms = [a for a in collect(settings, warnings=[])["alarms"] if "main loop" in a]
    finally:
        store.close()
        os.close(lock)
    assert alarms == ["the daemon's main loop has made no progress for 40 s: the daemon is "
                      "stuck, and what it shows of the folders is that old; systemd's "
                      "watchdog restarts it, and /healthz names the cause"]
