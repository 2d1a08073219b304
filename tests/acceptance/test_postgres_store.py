"""`folderseal run`, `status` and `migrate` on a PostgreSQL store (``[store] url``), each
test in a schema of its own on the test server: the same daemon as on SQLite, with the
store a database the node reaches over TCP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg

from folderseal.store.postgres import migrations
from tests.helpers import Daemon, Layout, folderseal, settled, sidecars, wait_until

CONFIG_ERROR = 78
PASSWORD = "pg-Pw-never-shown"


def _layout(root: Path, url: str, *, auto_migrate: bool = True, node: str = "test-node",
            url_in_file: bool = False) -> Layout:
    layout = Layout(root)
    store = f'url_file = "{root / "store.url"}"' if url_in_file else f'url = "{url}"'
    layout.extra = (f"\n[store]\n{store}\nlease_seconds = 6\n"
                    f"auto_migrate = {'true' if auto_migrate else 'false'}\n")
    layout.write()
    if url_in_file:
        (root / "store.url").write_text(url + "\n")
    if node != "test-node":
        layout.config.write_text(layout.config.read_text().replace(
            'node = "test-node"', f'node = "{node}"'))
    return layout


def _with_password(url: str) -> str:
    """The test URL with a password (trust auth ignores it), to see it never shown."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def test_a_node_on_postgresql_seals_files_and_status_reads_the_database(
        tmp_path: Path, postgres_url: str) -> None:
    """With auto_migrate the daemon makes the schema, seals what is dropped, and records
    it in the database (not in state_dir); status reads it there; the URL's password is
    in no log, sidecar or status output."""
    url = _with_password(postgres_url)
    layout = _layout(tmp_path, url, url_in_file=True)
    daemon = Daemon(layout).started()
    (layout.inbox / "a.txt").write_bytes(b"alpha\n")
    (layout.inbox / "b.pdf").write_bytes(b"not a pdf at all")
    wait_until(lambda: settled(layout, {"a.txt": "outbox", "b.pdf": "errors"}), timeout=60,
               what="a.txt sealed and b.pdf in errors")
    status = folderseal("status", "--json", "-c", str(layout.config), timeout=60)
    report = json.loads(status.stdout)
    assert report["daemon"]["running"] and "heartbeat" in report["daemon"], status.stdout
    assert report["folders"]["scans"]["files"].get("DONE") == 1, status.stdout
    assert daemon.stop() == 0
    assert not (layout.state / "folderseal.sqlite").exists()
    with psycopg.connect(postgres_url) as conn:
        states = dict(conn.execute(
            "SELECT convert_from(source, 'UTF8'), state FROM files").fetchall())
        node = conn.execute("SELECT node, version FROM nodes").fetchall()
    assert states == {"a.txt": "DONE", "b.pdf": "FAILED"}
    assert [n[0] for n in node] == ["test-node"]
    shown = daemon.log_path.read_text() + status.stdout + status.stderr + "".join(
        p.read_text() for p in sidecars(layout.outbox))
    assert PASSWORD not in shown


def test_without_auto_migrate_a_node_waits_for_folderseal_migrate(
        tmp_path: Path, postgres_url: str) -> None:
    """A database without the schema: `run` exits 78 naming `folderseal migrate`, which
    applies every migration once; then the node starts."""
    layout = _layout(tmp_path, postgres_url, auto_migrate=False)
    check = folderseal("check", "-c", str(layout.config), timeout=60)
    assert check.returncode == CONFIG_ERROR, check.stdout + check.stderr
    assert "problem: store:" in check.stdout and "folderseal migrate" in check.stdout
    refused = folderseal("run", "-c", str(layout.config), timeout=60)
    assert refused.returncode == CONFIG_ERROR, refused.stdout + refused.stderr
    assert "folderseal migrate" in refused.stderr
    first = folderseal("migrate", "-c", str(layout.config), timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    every = ", ".join(str(number) for number, _ in migrations())
    assert f"applied migration{'s' if len(migrations()) > 1 else ''} {every}" in first.stdout
    assert "PostgreSQL 127.0.0.1/test" in first.stdout
    again = folderseal("migrate", "-c", str(layout.config), timeout=60)
    assert "the schema is current" in again.stdout, again.stdout + again.stderr
    check = folderseal("check", "-c", str(layout.config), timeout=60)
    assert "ok: store: PostgreSQL 127.0.0.1/test answers" in check.stdout, check.stdout
    daemon = Daemon(layout).started()
    assert daemon.stop() == 0


def test_a_database_that_does_not_answer_is_named_by_check_and_run(tmp_path: Path) -> None:
    """No server at the URL: `check` says the store could not be reached (exit 1, never
    the password), and `run` exits non-zero with what to do."""
    layout = _layout(tmp_path, f"postgresql://fs:{PASSWORD}@127.0.0.1:9/folderseal")
    check = folderseal("check", "-c", str(layout.config), timeout=60)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "problem: store:" in check.stdout
    run = folderseal("run", "-c", str(layout.config), timeout=60)
    assert run.returncode != 0
    assert "127.0.0.1" in run.stderr + run.stdout
    assert PASSWORD not in check.stdout + check.stderr + run.stdout + run.stderr


def test_a_second_daemon_with_the_same_node_name_is_refused(
        tmp_path: Path, postgres_url: str) -> None:
    """Two daemons named alike on one store (two hosts given the same `node`): the second
    exits 78 naming the node, and the first goes on."""
    first, second, daemon, refused = _second_beside_first(tmp_path, postgres_url, "scan-1")
    assert "another folderseal runs as node 'scan-1'" in refused.stderr
    (first.inbox / "a.txt").write_bytes(b"alpha\n")
    wait_until(lambda: settled(first, {"a.txt": "outbox"}), timeout=60, what="a.txt sealed")
    assert daemon.stop() == 0


def test_a_second_node_starts_beside_the_first_and_recover_waits_for_both(
        tmp_path: Path, postgres_url: str) -> None:
    """Another node alive on the store: a second node of another name starts beside it
    (a fleet), and `recover` (from a third host) exits 78 saying which nodes run."""
    first = _layout(tmp_path / "one", postgres_url, node="scan-1")
    second = _layout(tmp_path / "two", postgres_url, node="scan-2")
    third = _layout(tmp_path / "three", postgres_url, node="scan-3")
    one = Daemon(first).started()
    two = Daemon(second).started()
    recover = folderseal("recover", "-c", str(third.config), timeout=60)
    assert recover.returncode == CONFIG_ERROR, recover.stdout + recover.stderr
    assert "node(s) scan-1, scan-2 run on this store" in recover.stderr
    assert "before `folderseal recover`" in recover.stderr
    assert one.stop() == 0 and two.stop() == 0


def _second_beside_first(root: Path, url: str, second_node: str
                         ) -> tuple[Layout, Layout, Daemon, subprocess.CompletedProcess[str]]:
    """Node scan-1 running on the store, and `run` of a second daemon (named
    ``second_node``, another state folder) beside it, which must exit 78."""
    first = _layout(root / "one", url, node="scan-1")
    second = _layout(root / "two", url, node=second_node)
    daemon = Daemon(first).started()
    refused = folderseal("run", "-c", str(second.config), timeout=60)
    assert refused.returncode == CONFIG_ERROR, refused.stdout + refused.stderr
    return first, second, daemon, refused


def test_status_shows_each_node_with_its_clock_offset_and_alarms_over_two_seconds(
        tmp_path: Path, postgres_url: str) -> None:
    """A node runs on PostgreSQL; another node's row is written straight into the
    database, beating now on the database's clock with its own clock 300 s ahead (the
    daemon has no clock hook): `status --json` lists both, this node about on time and
    the other 300 s off with an alarm naming its time sync, and exits 1; the table too."""
    layout = _layout(tmp_path, postgres_url, node="scan-1")
    # Long enough that the row written below stays alive while status runs.
    layout.config.write_text(layout.config.read_text().replace("lease_seconds = 6",
                                                               "lease_seconds = 120"))
    daemon = Daemon(layout).started()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        wait_until(lambda: conn.execute("SELECT notes FROM nodes WHERE node = 'scan-1'")
                   .fetchone()[0] != "{}", timeout=30, what="scan-1's first heartbeat")
        conn.execute(
            "INSERT INTO nodes (node, pid, started_at, heartbeat_at, notes, instance, "
            "version, schema_version) SELECT 'scan-2', 4242, t - 60, t, "
            "json_build_object('clock', t + 300)::text, 'elsewhere', '0.0.0', 2 FROM "
            "(SELECT extract(epoch FROM clock_timestamp())::double precision AS t) AS db")
    status = folderseal("status", "--json", "-c", str(layout.config), timeout=60)
    assert status.returncode == 1, status.stdout + status.stderr
    report = json.loads(status.stdout)
    found = {n["node"]: n for n in report["nodes"]}
    assert sorted(found) == ["scan-1", "scan-2"], status.stdout
    assert found["scan-1"]["this_node"] and found["scan-1"]["alive"]
    assert abs(found["scan-1"]["clock_offset_seconds"]) < 2, status.stdout
    assert found["scan-2"]["alive"] and not found["scan-2"]["this_node"]
    assert 299 < found["scan-2"]["clock_offset_seconds"] < 301, status.stdout
    assert report["alarms"] == [
        "node scan-2's clock is +300.0 s off the database's: fix its time sync (chrony/ntp) "
        "on that host"], status.stdout
    table = folderseal("status", "-c", str(layout.config), timeout=60)
    assert table.returncode == 1 and "2 node(s) on the store" in table.stdout, table.stdout
    assert "+300.0 s" in table.stdout
    assert daemon.stop() == 0


def test_moving_from_sqlite_needs_the_node_drained_first(tmp_path: Path,
                                                          postgres_url: str) -> None:
    """A node on SQLite leaves a claim behind (killed right after claiming); pointed at
    PostgreSQL it exits 78 saying to drain it first. Drained (run on SQLite until the
    claim is sealed), it moves: the work folder is handed to the new store and new files
    are sealed there."""
    layout = Layout(tmp_path)
    layout.write()
    crashed = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": "claimed"}).started()
    (layout.inbox / "left.txt").write_bytes(b"claimed on SQLite\n")
    assert crashed.process.wait(timeout=30) == -9
    sqlite_config = layout.config.read_text()
    moved = _layout(tmp_path, postgres_url)
    refused = folderseal("run", "-c", str(moved.config), timeout=60)
    assert refused.returncode == CONFIG_ERROR, refused.stdout + refused.stderr
    assert "drain the node" in refused.stderr and "folderseal status" in refused.stderr
    layout.config.write_text(sqlite_config)
    draining = Daemon(layout).started()
    wait_until(lambda: settled(layout, {"left.txt": "outbox"}), timeout=60,
               what="the claim sealed on SQLite")
    # Drained: `status` shows nothing in flight, its batch cleaned up too.
    wait_until(lambda: not json.loads(folderseal("status", "--json", "-c", str(layout.config),
                                                 timeout=60).stdout)["folders"]["scans"]
               ["batches"], timeout=60, what="no batch left in flight")
    assert not list((layout.work / "batches").iterdir())
    assert draining.stop() == 0
    moved.write()
    daemon = Daemon(moved).started()
    handed = daemon.wait_for_event("work.handed_over")
    assert handed["work"] == str(moved.work)
    (moved.inbox / "new.txt").write_bytes(b"sealed on PostgreSQL\n")
    wait_until(lambda: settled(moved, {"left.txt": "outbox", "new.txt": "outbox"}),
               timeout=60, what="new.txt sealed on PostgreSQL")
    assert daemon.stop() == 0


def test_status_says_when_the_database_cannot_be_reached(tmp_path: Path) -> None:
    """A store URL nobody answers: `status` still reports (exit 1), its alarm says the
    store cannot be reached and what to check, and the password is not in it."""
    layout = _layout(tmp_path, f"postgresql://folderseal:{PASSWORD}@127.0.0.1:1/fleet")
    shown = folderseal("status", "--json", "-c", str(layout.config), timeout=60)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    report = json.loads(shown.stdout)
    assert report["alarms"][0].startswith("the store cannot be reached")
    assert "check that the database server is running" in report["alarms"][0]
    assert "the daemon is not running" in report["alarms"]
    assert PASSWORD not in shown.stdout + shown.stderr
