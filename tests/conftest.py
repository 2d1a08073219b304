"""Test-wide fixtures: no daemon outlives the test that started it; a folder tree for a
daemon run as an unprivileged user; the log of a daemon run in the test's process; the
PostgreSQL server and the S3 server of the session."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from folderseal.core import logs
from folderseal.providers import registry  # noqa: F401  the provider kinds, for config.load
from tests.helpers import Daemon


@pytest.fixture(autouse=True)
def _no_leftover_daemons() -> Iterator[None]:
    yield
    while Daemon.running:
        daemon = Daemon.running.pop()
        if daemon.process.poll() is None:
            daemon.kill()


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temp folder other users may enter, for commands run as `nobody` (pytest's
    tmp_path is root-only)."""
    root = Path(tempfile.mkdtemp(prefix="folderseal-open-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    subprocess.run(["chmod", "-R", "u+rwX", str(root)], check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Every event logged in this process, debug ones too, as JSON lines (another test may
    have configured the log before, at another level)."""
    stream = io.StringIO()
    logs.configure("json", "debug", stream)
    yield stream
    logs.configure("json", "info", io.StringIO())


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of the PostgreSQL server the store tests use, started if it was down (the
    test fails, never skips, if it cannot be reached); tests/postgres.py makes each test
    a schema of its own on it."""
    from tests.postgres import server

    return server()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections work in a schema of this test's own (empty, not migrated),
    dropped with all it holds afterwards."""
    from tests.postgres import own_schema

    with own_schema(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server (a real HTTP server on loopback, in a subprocess) for the session."""
    from tests.s3server import s3_server

    with s3_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    from tests.s3server import make_bucket

    return make_bucket(s3_endpoint)
