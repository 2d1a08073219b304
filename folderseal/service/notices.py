"""What the running daemon warns about now: the providers' checks and a configuration
file whose secret other accounts may read.

At start each provider is checked with the network (a ConfigError there stops the
start). While the daemon runs they are checked again every minute, and every 10 s while
a provider cannot be reached: a SEAL that was down at start and answers now loses its
"cannot be reached"; one that now refuses the key gains a warning (never a stop). The
daemon puts the current warnings in its heartbeat, so ``folderseal status`` (run by
anyone, without the service's credentials) and the status page show what the service
itself found; each warning is logged when it appears and when it clears.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from folderseal.core.errors import ConfigError
from folderseal.core.keyfiles import inline_secrets, service_accounts
from folderseal.providers import Provider

REFRESH_SECONDS = 60.0
UNREACHABLE_REFRESH_SECONDS = 10.0  # a provider that is down: notice soon that it is back


@dataclass(frozen=True, slots=True)
class Notice:
    """One warning: about a provider (by name) or the configuration file (by path)."""

    area: str   # "provider" or "config"
    name: str
    text: str

    def __str__(self) -> str:
        return f"provider {self.name}: {self.text}" if self.area == "provider" else self.text


class Notices:
    """The daemon's current warnings; :meth:`texts` as ``status`` shows them."""

    def __init__(self, config_path: Path | None, state_dir: Path, log: Any) -> None:
        self.config_path = config_path
        self.state_dir = state_dir
        self.log = log
        self.current: tuple[Notice, ...] = ()
        self.unreachable = False  # a provider could not be asked at the last check

    def texts(self) -> list[str]:
        return [str(notice) for notice in self.current]

    def start(self, providers: Mapping[str, Provider]) -> None:
        """The first check; a provider's ConfigError (a refused key, an expired seal) is
        raised, naming the provider."""
        self._publish(self._gather(providers, at_start=True))

    def keep_checking(self, providers: Mapping[str, Provider], stop: threading.Event) -> None:
        """Check again until ``stop`` is set (the body of a thread)."""
        while not stop.wait(UNREACHABLE_REFRESH_SECONDS if self.unreachable
                            else REFRESH_SECONDS):
            self._publish(self._gather(providers, at_start=False))

    def _gather(self, providers: Mapping[str, Provider], at_start: bool) -> tuple[Notice, ...]:
        found = [Notice("config", str(self.config_path), text) for text in inline_secrets(
            self.config_path, service_accounts(self.state_dir))] if self.config_path else []
        unreachable = False
        for name, provider in sorted(providers.items()):
            try:
                health = provider.check()
            except ConfigError as exc:
                if at_start:
                    raise ConfigError(f"provider {name}: {exc}") from None
                found.append(Notice("provider", name, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - a later check must not stop the daemon
                if at_start:
                    raise
                self.log.exception("provider.check_failed", provider=name)
                found.append(Notice("provider", name, f"its check failed ({type(exc).__name__}"
                                                      "); see the log"))
                continue
            # Out of reach is no reason to stay down: its batches wait until it answers.
            found += [Notice("provider", name, text)
                      for text in (*health.warnings, health.unreachable) if text]
            unreachable = unreachable or bool(health.unreachable)
        self.unreachable = unreachable
        return tuple(found)

    def _publish(self, found: tuple[Notice, ...]) -> None:
        for notice in found:
            if notice not in self.current:
                self.log.warning(f"{notice.area}.warning", warning=notice.text,
                                 **{notice.area: notice.name})
        for notice in self.current:
            if notice not in found:
                self.log.info(f"{notice.area}.warning_cleared", warning=notice.text,
                              **{notice.area: notice.name})
        self.current = found
