"""Fixtures of the fleet tests: a PostgreSQL cluster of the test's own (to stop, restart
or cut off without disturbing another test process) and a proxy in front of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet.cluster import Cluster, own_cluster
from tests.fleet.proxy import Proxy


@pytest.fixture
def pg_cluster() -> Iterator[Cluster]:
    """A started cluster of this test's own on a free port, removed afterwards."""
    with own_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_proxy(pg_cluster: Cluster) -> Iterator[Proxy]:
    """A proxy to ``pg_cluster`` the test can cut and restore (``url_of`` gives its URL)."""
    with Proxy("127.0.0.1", pg_cluster.port) as proxy:
        yield proxy
