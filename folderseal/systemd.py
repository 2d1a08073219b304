"""sd_notify without a dependency: READY, STOPPING and watchdog pings to systemd.

With ``Type=notify`` and ``WatchdogSec=`` in the unit, systemd restarts the daemon
when the pings stop. The daemon pings from its main loop, so a loop that hangs
stops the pings: the ping follows progress, not a timer.
"""

from __future__ import annotations

import os
import socket


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
