"""folderseal.core.systemd on a real unix datagram socket: what is sent, and when."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from folderseal.core import systemd


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    folder = Path(tempfile.mkdtemp(prefix="fs-sd-", dir="/tmp"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(folder / "notify"))
    sock.settimeout(0.05)
    monkeypatch.setenv("NOTIFY_SOCKET", str(folder / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()
    (folder / "notify").unlink()
    folder.rmdir()


def _received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            return messages


def test_status_is_sent_when_it_changes_and_pings_only_when_healthy(
        notify_socket: socket.socket) -> None:
    notifier = systemd.Notifier()
    assert notifier.interval == 2.0  # half of WatchdogSec
    notifier.ready("2 waiting")
    assert _received(notify_socket) == ["READY=1\nSTATUS=2 waiting"]
    notifier.beat(100.0, "2 waiting", healthy=True)
    notifier.beat(101.0, "2 waiting", healthy=True)  # too soon for another ping
    notifier.beat(102.5, "1 waiting", healthy=False)  # a new status, but no ping
    notifier.beat(103.0, "1 waiting", healthy=True)
    assert _received(notify_socket) == ["WATCHDOG=1", "STATUS=1 waiting", "WATCHDOG=1"]
    notifier.stopping()
    assert _received(notify_socket)[0].startswith("STOPPING=1\n")


def test_no_watchdog_for_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """WATCHDOG_PID names the process systemd watches: a child must not ping for it."""
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 5.0


def test_without_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_the_journal_stream_is_known_by_device_and_inode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out"
    with path.open("w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert systemd.on_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not systemd.on_journal(stream)
