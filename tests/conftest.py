"""Test-wide fixtures: no daemon outlives the test that started it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import Daemon


@pytest.fixture(autouse=True)
def _no_leftover_daemons() -> Iterator[None]:
    yield
    while Daemon.running:
        daemon = Daemon.running.pop()
        if daemon.process.poll() is None:
            daemon.kill()
