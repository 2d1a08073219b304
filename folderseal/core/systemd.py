"""systemd integration without a dependency: sd_notify and the journal's level prefix.

With ``Type=notify`` the daemon says ``READY=1`` once its store is open and every
reachable inbox was scanned once, keeps ``STATUS=`` current with a one-line summary,
and pings ``WATCHDOG=1`` only while nothing a restart would mend is wrong: a main loop
that hangs, a thread that died or a dead watcher stops the pings, and systemd restarts
the daemon after ``WatchdogSec=``. A folder whose share hangs is reported, not restarted
for: its intake runs on a thread of its own, and a restart would hang on it too.
"""

from __future__ import annotations

import os
import socket
from typing import TextIO

MAX_STATUS = 200  # characters of STATUS=: systemctl shows one line


def notify(message: str) -> bool:
    """Send one sd_notify message; False when not run by systemd (no NOTIFY_SOCKET)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract socket namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of ``WatchdogSec=``); None without one."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


def on_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journal's stream (systemd sets JOURNAL_STREAM to its
    device and inode; stdout and stderr share it), so each line may carry a ``<N>`` level
    prefix."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class Notifier:
    """READY, STATUS and watchdog pings; STATUS is sent when it changes."""

    def __init__(self) -> None:
        self.interval = watchdog_interval()
        self.status = ""
        self.pinged_at = float("-inf")

    def ready(self, status: str) -> None:
        self.status = status[:MAX_STATUS]
        notify(f"READY=1\nSTATUS={self.status}")

    def beat(self, now: float, status: str, healthy: bool) -> None:
        """From the main loop: a new STATUS when it changed, a ping when healthy and due."""
        lines = []
        if status[:MAX_STATUS] != self.status:
            self.status = status[:MAX_STATUS]
            lines.append(f"STATUS={self.status}")
        if healthy and self.interval is not None and now - self.pinged_at >= self.interval:
            lines.append("WATCHDOG=1")
            self.pinged_at = now
        if lines:
            notify("\n".join(lines))

    def stopping(self) -> None:
        notify("STOPPING=1\nSTATUS=stopping: finishing the current step")
