"""The folderseal unit inside the container, as systemctl and journalctl show it, and
the edits the checks make to it (drop-ins, config.toml), each undone afterwards."""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.system.container import Container, Result

UNIT = "folderseal.service"
CONFIG = "/etc/folderseal/config.toml"
DROPIN_DIR = "/etc/systemd/system/folderseal.service.d"


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal line: the daemon's own lines have identifier "folderseal",
    systemd's lines about the unit "systemd"."""

    priority: int
    identifier: str
    message: str

    def __str__(self) -> str:
        return f"<{self.priority}> {self.identifier}: {self.message}"


class Service:
    def __init__(self, container: Container) -> None:
        self.c = container

    def sh(self, script: str, timeout: float = 120.0) -> Result:
        return self.c.sh(script, timeout)

    def systemctl(self, *args: str, timeout: float = 120.0) -> Result:
        return self.sh(" ".join(["systemctl", *args]), timeout)

    def show(self, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {UNIT} " + " ".join(f"-p {p}" for p in props)).out
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def state(self) -> str:
        s = self.show("ActiveState", "SubState", "MainPID", "NRestarts", "Result",
                      "ExecMainStatus")
        return ", ".join(f"{k}={v}" for k, v in s.items())

    def main_pid(self) -> int:
        return int(self.show("MainPID").get("MainPID", "0") or 0)

    def restarts(self) -> int:
        return int(self.show("NRestarts").get("NRestarts", "0") or 0)

    def is_running(self) -> bool:
        s = self.show("ActiveState", "SubState")
        return (s.get("ActiveState"), s.get("SubState")) == ("active", "running")

    def cursor(self) -> str:
        """The journal's position now: later reads see only what happens after it."""
        last = self.sh("journalctl -n 1 -o json --no-pager").out.strip().splitlines()
        return str(json.loads(last[-1])["__CURSOR"]) if last else ""

    def journal(self, after: str = "", max_priority: int = 7) -> list[Entry]:
        """The unit's journal lines (the daemon's and systemd's about it), optionally
        only those after a cursor and at a level at least as severe as max_priority."""
        since = f"--after-cursor='{after}'" if after else ""
        out = self.sh(f"journalctl -u {UNIT} -o json --no-pager {since}").out
        entries = []
        for line in out.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            message = record.get("MESSAGE", "")
            if isinstance(message, list):  # journald's form for non-UTF-8 bytes
                message = bytes(message).decode(errors="replace")
            entry = Entry(int(record.get("PRIORITY", 6)),
                          str(record.get("SYSLOG_IDENTIFIER", "")), str(message))
            if entry.priority <= max_priority:
                entries.append(entry)
        return entries

    @staticmethod
    def wait(predicate: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(step)
        return True

    def restart_seconds(self) -> float:
        """RestartSec= in seconds (systemctl shows e.g. "5s" or "100ms")."""
        value = self.show("RestartUSec").get("RestartUSec", "5s")
        if value.endswith("ms"):
            return float(value[:-2]) / 1000
        return float(value.rstrip("s") or 0)

    @contextmanager
    def dropin(self, name: str, text: str) -> Iterator[None]:
        """A drop-in for the unit while the block runs; removed (and reloaded) after."""
        path = self.c.path(f"{DROPIN_DIR}/{name}.conf")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.systemctl("daemon-reload")
        try:
            yield
        finally:
            path.unlink()
            self.systemctl("daemon-reload")

    @contextmanager
    def config_edited(self, edit: Callable[[str], str]) -> Iterator[None]:
        """config.toml changed by ``edit`` while the block runs, then put back as it was."""
        path = self.c.path(CONFIG)
        original = path.read_text()
        path.write_text(edit(original))  # in place: owner and mode stay
        try:
            yield
        finally:
            path.write_text(original)

    def config(self) -> dict[str, object]:
        return tomllib.loads(self.c.path(CONFIG).read_text())

    def folder(self) -> dict[str, str]:
        """The first folder of config.toml: its inbox, outbox and errors."""
        folders = self.config().get("folders")
        assert isinstance(folders, dict) and folders, f"{CONFIG} has no [folders.…] table"
        first = next(iter(folders.values()))
        assert isinstance(first, dict)
        return {key: str(first[key]) for key in ("inbox", "outbox", "errors")}
