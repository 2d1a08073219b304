"""A daemon's providers built by a test, the way the daemon asks for them.

A test hands the daemon its own provider class through ``Daemon(build_provider=…)``
rather than swapping a provider into a built daemon: the daemon checks, starts, wraps
(``MeasuredProvider``) and closes it like any other, and the test keeps the provider as
built, typed, to script it and read what it saw.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from folderseal.core.configbase import ProviderSection
from folderseal.providers import Provider

P = TypeVar("P", bound=Provider)


class Built(Generic[P]):
    """A ``build_provider`` that makes each provider with ``make`` and keeps it by name."""

    def __init__(self, make: Callable[[str, ProviderSection, Path], P]) -> None:
        self.make = make
        self.providers: dict[str, P] = {}

    def __call__(self, name: str, cfg: ProviderSection, state_dir: Path) -> P:
        provider = self.providers[name] = self.make(name, cfg, state_dir)
        return provider

    def only(self) -> P:
        """The provider built, for a configuration with one."""
        [provider] = self.providers.values()
        return provider
