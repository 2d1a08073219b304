"""Test-wide fixtures: no daemon outlives the test that started it; a folder tree for a
daemon run as an unprivileged user; the log of a daemon run in the test's process."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from folderseal import logs
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
