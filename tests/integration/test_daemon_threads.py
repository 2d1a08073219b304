"""The daemon's own threads, in process: real folders, store and provider."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from threading import Event

import pytest

from folderseal.core import config
from folderseal.core.errors import ExitCode
from folderseal.providers import Provider
from folderseal.service.daemon import Daemon
from tests.helpers import Layout


def test_a_failure_in_the_provider_checks_thread_stops_the_daemon(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception escaping the thread that checks the providers again stops the daemon
    with exit 1 (so systemd restarts it), as one in any other thread does, instead of
    ending that thread unseen and leaving its warnings as they were for ever."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(config.load(layout.config), batch_threads=1)
    daemon.prepare()

    def broken(providers: Mapping[str, Provider], stop: Event) -> None:
        raise RuntimeError("a check that went wrong")

    monkeypatch.setattr(daemon.notices, "keep_checking", broken)
    unstopped = threading.Timer(30, daemon.stop.set)  # else a daemon that runs on
    unstopped.start()
    try:
        assert daemon.run() == ExitCode.FAILURE
    finally:
        unstopped.cancel()
    assert isinstance(daemon.fatal, RuntimeError)
