"""The test's own PostgreSQL cluster: made, stopped, restarted, down a while, removed."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.fleet.cluster import Cluster, own_cluster


def test_a_cluster_of_its_own_answers_restarts_and_is_removed() -> None:
    with own_cluster() as cluster:
        assert cluster.port != 5432 and cluster.answers()
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (1)")
            before = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
        session = psycopg.connect(cluster.url(), autocommit=True)
        cluster.restart()
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")  # a restart drops every session
        session.close()
        with psycopg.connect(cluster.url()) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(1,)]
            after = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
        assert after != before
        root = cluster.root
    assert not root.exists() and not cluster.running()


def test_an_outage_keeps_the_database_away_that_long(pg_cluster: Cluster) -> None:
    """Down longer than a lease, then back with its data; an immediate stop (a crash of
    the server) recovers from the WAL."""
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    began = time.monotonic()
    pg_cluster.stop()
    assert not pg_cluster.answers() and not pg_cluster.running()
    time.sleep(1.5)
    pg_cluster.start()
    assert time.monotonic() - began >= 1.5
    pg_cluster.outage(0.5, mode="immediate")
    with psycopg.connect(pg_cluster.url()) as conn:
        assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
