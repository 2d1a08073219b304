"""The fixtures every store contract test takes: each test runs once on the SQLite store,
once on the PostgreSQL one and once on the in-memory one, so none can drift from the
others."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from folderseal.store import Store
from tests.store_backends import BACKENDS, Backend, Clock, opened


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else ""
    yield from opened(request.param, tmp_path, server)


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open("node-a")


@pytest.fixture
def clock(backend: Backend) -> Clock:
    return backend.clock
