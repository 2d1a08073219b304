"""The ``clevver`` provider: each file stored on a blockchain by Clevver, with a receipt.

The adapter is in :mod:`.provider`, its HTTP calls in :mod:`.client`, the reading of
Clevver's answers in :mod:`.parse`. Loading the configuration imports :mod:`.config` and
so this package, but not the adapter (it imports httpx): that is imported when named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from folderseal.providers.clevver.provider import ClevverProvider

__all__ = ["ClevverProvider"]


def __getattr__(name: str) -> Any:
    if name == "ClevverProvider":
        from folderseal.providers.clevver.provider import ClevverProvider
        return ClevverProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
