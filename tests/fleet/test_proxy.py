"""The proxy the test controls, proven with psycopg against the test's own cluster: a
connection through it fails once it is cut, a new one works once it is restored."""

from __future__ import annotations

import os
import threading
import time

import psycopg
import pytest

from tests.fleet.cluster import Cluster
from tests.fleet.proxy import Proxy

# What the store sets (folderseal.store.postgres): keepalives that give up in about 3 s.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1,
              "keepalives_count": 2, "connect_timeout": 2}


def test_a_reset_breaks_open_connections_and_refuses_new_ones(pg_cluster: Cluster,
                                                              pg_proxy: Proxy) -> None:
    url = pg_proxy.url_of(pg_cluster.url())
    conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
    assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    assert pg_proxy.open_connections == 1
    pg_proxy.cut("reset")
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3)
    pg_proxy.restore()
    with psycopg.connect(url, connect_timeout=3) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)
    assert pg_cluster.answers()  # the cluster itself was never touched


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel-drop", "proxy-holds"])
def test_a_blackhole_answers_nothing_until_restored(pg_cluster: Cluster, pg_proxy: Proxy,
                                                    kernel: bool) -> None:
    """A query sent into the blackhole gets no answer (nor an error) while it lasts; a
    new connection times out; after restore the stuck query fails and new ones work."""
    url = pg_proxy.url_of(pg_cluster.url())
    conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
    pg_proxy.cut("blackhole", kernel=kernel)
    assert pg_proxy.kernel_blackhole == (kernel and os.geteuid() == 0), \
        "nft could not add the proxy's table (Debian package nftables)"
    outcome: list[BaseException | object] = []

    def query() -> None:
        try:
            outcome.append(conn.execute("SELECT 1").fetchone())
        except psycopg.Error as exc:
            outcome.append(exc)

    stuck = threading.Thread(target=query, daemon=True)
    stuck.start()
    stuck.join(1.5)
    assert stuck.is_alive() and outcome == [], "the blackhole answered"
    began = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    assert time.monotonic() - began >= 1.5, "a new connection was refused, not ignored"
    pg_proxy.restore()
    stuck.join(10)
    assert not stuck.is_alive() and isinstance(outcome[0], psycopg.OperationalError)
    conn.close()
    with psycopg.connect(url, connect_timeout=3) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)


def test_tcp_keepalives_find_a_blackholed_idle_connection(pg_cluster: Cluster,
                                                          pg_proxy: Proxy) -> None:
    """The kernel blackhole drops keepalive probes, so an idle connection with
    keepalives is found dead in seconds, without a query (a proxy holding bytes alone
    could not: its kernel would answer the probes)."""
    if os.geteuid() != 0:
        pytest.skip("the kernel blackhole adds an nftables table: needs root (CI is root)")
    url = pg_proxy.url_of(pg_cluster.url())
    conn = psycopg.connect(url, autocommit=True, **KEEPALIVES)  # type: ignore[arg-type]
    conn.execute("SELECT 1")
    pg_proxy.cut("blackhole")
    assert pg_proxy.kernel_blackhole, "nft could not add the proxy's table (package nftables)"
    time.sleep(4.5)  # idle 1 s + 2 probes 1 s apart, and a margin
    began = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    assert time.monotonic() - began < 1.0, "the dead connection was not already known dead"
    conn.close()
    pg_proxy.restore()
    with psycopg.connect(url, connect_timeout=3) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)
