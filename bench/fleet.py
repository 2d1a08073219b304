"""folderseal's fleet benchmark: 1, 2 and 3 nodes on one share and one PostgreSQL.

    .venv/bin/python bench/fleet.py            # the full run (a few minutes)
    .venv/bin/python bench/fleet.py --quick    # small counts, to check the script

Measures, against the SEAL emulator with a latency on every call (200 ms by default:
a provider far away, ``start_seal(latency=…)``), on a PostgreSQL cluster of its own
(``initdb``, with ``pg_stat_statements`` preloaded):

  (a) throughput: N files dropped at once, from the drop to the last sidecar, with 1, 2
      and 3 ``folderseal run`` nodes (each its own name and state folder, 2 provider
      workers each), the host's CPU use meanwhile, and where adding a node stops
      paying (on this machine's cores);
  (b) takeover: a node killed (kill -9, at ``state:ACCEPTED``: its batch accepted and
      leased), another node running: from the lease's expiry (``lease_until`` as the
      dead node left it) to the first event of the next holder on that batch (the first
      resumed step), both on the database's clock (the events table);
  (c) database load per file during (a): statements per file from
      ``pg_stat_statements`` (every statement the nodes sent, heartbeats and idle polls
      included; and without BEGIN/COMMIT/SET), and transactions and rows per file from
      ``pg_stat_database`` (its counters are flushed by each backend about once a
      second, so they are read after a pause).

Each run ends with the fleet invariants (tests/fleet/invariants.py). The emulator runs
in this process, so its signing shares the machine's cores with the nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from tests.fleet.cluster import Cluster  # noqa: E402
from tests.fleet.invariants import check_fleet, status_of  # noqa: E402
from tests.fleet.nodes import Fleet  # noqa: E402

UTILITY = ("BEGIN", "COMMIT", "ROLLBACK", "SET", "SHOW", "LISTEN")


# -- the database ------------------------------------------------------------------------

def cluster_with_statements() -> Cluster:
    """A cluster of the benchmark's own with pg_stat_statements loaded and created (in
    a temp folder of its own: the server's user must enter it)."""
    cluster = Cluster.create()
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write("\nshared_preload_libraries = 'pg_stat_statements'\n"
                   "pg_stat_statements.track = all\n")
    cluster.start()
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return cluster


def reset_counters(url: str) -> dict[str, int]:
    """Zero pg_stat_statements; pg_stat_database's counters as they are now."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT public.pg_stat_statements_reset()")
        return database_counters(conn)


def database_counters(conn: psycopg.Connection[Any]) -> dict[str, int]:
    row = conn.execute(
        "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, "
        "tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    names = ("commits", "rollbacks", "returned", "fetched", "inserted", "updated", "deleted")
    return dict(zip(names, (int(v) for v in row), strict=True))


def load_since(url: str, before: dict[str, int], files: int) -> dict[str, float]:
    """Statements, transactions and rows per file since :func:`reset_counters`."""
    time.sleep(2.0)  # each backend flushes its pg_stat_database counters ~once a second
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query, calls FROM public.pg_stat_statements WHERE dbid = (SELECT oid FROM "
            "pg_database WHERE datname = current_database()) AND query NOT LIKE "
            "'%pg_stat%'").fetchall()
        after = database_counters(conn)
    total = sum(int(calls) for _, calls in rows)
    plain = sum(int(calls) for query, calls in rows
                if not query.lstrip().upper().startswith(UTILITY))
    delta = {k: after[k] - before[k] for k in after}
    return {"statements_per_file": total / files,
            "statements_per_file_without_utility": plain / files,
            "transactions_per_file": delta["commits"] / files,
            "rows_read_per_file": (delta["returned"] + delta["fetched"]) / files,
            "rows_written_per_file": (delta["inserted"] + delta["updated"]
                                      + delta["deleted"]) / files}


# -- the host ----------------------------------------------------------------------------

def cpu_times() -> tuple[float, float]:
    """Busy and total jiffies of all cores, from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


# -- (a) and (c) -------------------------------------------------------------------------

def sidecars(fleet: Fleet) -> int:
    return sum(1 for _ in fleet.world.layout.outbox.rglob("*.json"))


def throughput(root: Path, cluster: Cluster, nodes: int, files: int, latency: float,
               lease: float, seed: int) -> dict[str, Any]:
    """N files through ``nodes`` nodes; files/s, CPU use, database load, invariants."""
    rng = random.Random(seed)
    with Fleet.make(root, store_url=cluster.url(), provider="seal", lease_seconds=lease,
                    seed=seed, latency=latency, seal={"max_wait_seconds": 600.0}) as fleet:
        for i in range(nodes):
            fleet.node(f"node-{i + 1}").start()
        made = [fleet.world.next_file(rng) for _ in range(files)]
        before = reset_counters(cluster.url())
        busy0, total0 = cpu_times()
        started = time.monotonic()
        for source, data in made:
            fleet.world.drop(source, data)
        deadline = started + max(600.0, files * 5.0)
        while sidecars(fleet) < files and time.monotonic() < deadline:
            time.sleep(0.1)
        wall = time.monotonic() - started
        busy1, total1 = cpu_times()
        done = sidecars(fleet)
        load = load_since(cluster.url(), before, max(done, 1))
        status = status_of(fleet)
        fleet.stop_all()
        verdict = check_fleet(fleet, status)
        batches = len(fleet.world.emulator.accept_calls()) if fleet.world.emulator else 0
        return {"nodes": nodes, "files": files, "delivered": done, "wall_s": wall,
                "files_per_s": done / wall, "batches": batches,
                "cpu_busy": (busy1 - busy0) / max(total1 - total0, 1.0),
                "invariants": verdict.problems(), **load}


# -- (b) ---------------------------------------------------------------------------------

def takeover(root: Path, cluster: Cluster, latency: float, lease: float,
             seed: int) -> dict[str, Any]:
    """A node killed holding an accepted batch; another node takes it over. Seconds from
    the lease's expiry to the new holder's first event on the batch (database clock)."""
    rng = random.Random(seed)
    with Fleet.make(root, store_url=cluster.url(), provider="seal", lease_seconds=lease,
                    seed=seed, latency=latency, seal={"max_wait_seconds": 600.0}) as fleet:
        victim = fleet.node("victim").start(env={"FOLDERSEAL_CRASH_AT": "state:ACCEPTED"})
        victim.expect_exit(-9)
        for _ in range(4):
            fleet.world.drop(*fleet.world.next_file(rng))
        if victim.life.exited(timeout=120) != -9:
            raise RuntimeError(f"the victim never reached state:ACCEPTED: {victim.life.log}")
        with psycopg.connect(fleet.store_url, autocommit=True) as conn:
            killed_at = float(conn.execute(
                "SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])
            held = conn.execute("SELECT id, epoch, lease_until FROM batches WHERE "
                                "claimed_by LIKE 'victim/%'").fetchall()
        if len(held) != 1:
            raise RuntimeError(f"the victim died holding {len(held)} batches, not one")
        batch, epoch, lease_until = held[0]
        fleet.node("heir").start()
        deadline = time.monotonic() + 120
        first = None
        while first is None and time.monotonic() < deadline:
            time.sleep(0.1)
            with psycopg.connect(fleet.store_url, autocommit=True) as conn:
                row = conn.execute("SELECT min(at) FROM events WHERE batch_id = %s AND "
                                   "epoch > %s", (batch, epoch)).fetchone()
            first = None if row is None or row[0] is None else float(row[0])
        if first is None:
            raise RuntimeError(f"batch {batch} was never taken over")
        while sidecars(fleet) < len(fleet.world.dropped) and time.monotonic() < deadline:
            time.sleep(0.1)
        status = status_of(fleet)
        fleet.stop_all()
        verdict = check_fleet(fleet, status)
        return {"lease_s": lease, "after_expiry_s": first - float(lease_until),
                "after_kill_s": first - killed_at, "invariants": verdict.problems()}


# -- the report --------------------------------------------------------------------------

def scaling_note(runs: list[dict[str, Any]]) -> str:
    """Where one more node stops paying: the first node count that adds under 15 %."""
    for before, after in zip(runs, runs[1:], strict=False):
        gain = after["files_per_s"] / before["files_per_s"] - 1
        if gain < 0.15:
            return (f"scaling stops at {before['nodes']} node(s) on {os.cpu_count()} cores: "
                    f"{after['nodes']} nodes add {gain:+.0%} (CPU {after['cpu_busy']:.0%} "
                    "busy)")
    last = runs[-1]
    return (f"still scaling at {last['nodes']} nodes on {os.cpu_count()} cores (CPU "
            f"{last['cpu_busy']:.0%} busy)")


def table(runs: list[dict[str, Any]], takeovers: list[dict[str, Any]]) -> str:
    head = ["nodes", "files", "wall s", "files/s", "speed-up", "CPU busy", "statements/file",
            "without BEGIN/COMMIT/SET", "transactions/file", "rows read/file",
            "rows written/file"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = [r["nodes"], f"{r['delivered']}/{r['files']}", f"{r['wall_s']:.1f}",
                 f"{r['files_per_s']:.2f}", f"{r['files_per_s'] / runs[0]['files_per_s']:.2f}x",
                 f"{r['cpu_busy']:.0%}", f"{r['statements_per_file']:.1f}",
                 f"{r['statements_per_file_without_utility']:.1f}",
                 f"{r['transactions_per_file']:.1f}", f"{r['rows_read_per_file']:.0f}",
                 f"{r['rows_written_per_file']:.1f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    lines.append(scaling_note(runs))
    expiry = [t["after_expiry_s"] for t in takeovers]
    kill = [t["after_kill_s"] for t in takeovers]
    lines.append(f"takeover after kill -9 (lease {takeovers[0]['lease_s']:g} s, "
                 f"{len(takeovers)} run(s)): lease expiry → first resumed step "
                 f"median {statistics.median(expiry):.2f} s (min {min(expiry):.2f}, max "
                 f"{max(expiry):.2f}); kill → first step median "
                 f"{statistics.median(kill):.2f} s")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a test's run)")
    parser.add_argument("--files", type=int, default=None, help="files per throughput run")
    parser.add_argument("--nodes", default="1,2,3", help="node counts, comma-separated")
    parser.add_argument("--latency", type=float, default=0.2,
                        help="seconds every SEAL emulator call waits")
    parser.add_argument("--lease", type=float, default=5.0, help="[store] lease_seconds")
    parser.add_argument("--takeovers", type=int, default=None, help="takeover runs")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="the figures as one JSON object")
    args = parser.parse_args()
    files = args.files or (12 if args.quick else 240)
    takeover_runs = args.takeovers or (1 if args.quick else 3)
    counts = [int(n) for n in args.nodes.split(",") if n]
    workdir = Path(tempfile.mkdtemp(prefix="folderseal-fleetbench-", dir="/tmp"))
    cluster = cluster_with_statements()
    try:
        runs = []
        for n in counts:
            runs.append(throughput(workdir / f"nodes-{n}", cluster, n, files, args.latency,
                                   args.lease, args.seed + n))
            print(f"{n} node(s): {runs[-1]['files_per_s']:.2f} files/s", file=sys.stderr,
                  flush=True)
        takeovers = [takeover(workdir / f"takeover-{i}", cluster, args.latency, args.lease,
                              args.seed + 100 + i) for i in range(takeover_runs)]
    finally:
        cluster.remove()
        shutil.rmtree(workdir, ignore_errors=True)
    problems = [p for r in runs + takeovers for p in r["invariants"]]
    if args.json:
        print(json.dumps({"latency_s": args.latency, "cpus": os.cpu_count(), "runs": runs,
                          "takeovers": takeovers, "scaling": scaling_note(runs)}, indent=1))
    else:
        print(f"SEAL emulator latency {args.latency * 1000:.0f} ms per call; "
              f"{os.cpu_count()} cores; database load from pg_stat_statements (statements) "
              "and pg_stat_database (transactions, rows)")
        print(table(runs, takeovers))
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems or any(r["delivered"] < r["files"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
