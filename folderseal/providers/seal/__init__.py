"""The ``seal`` provider: Signius SEAL's batch API (the adapter is in :mod:`.provider`).

Loading the configuration imports :mod:`.config` and so this package, but not the
adapter, which imports httpx and folderseal.signing: it is imported when first named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from folderseal.providers.seal.provider import SealProvider

__all__ = ["SealProvider"]


def __getattr__(name: str) -> Any:
    if name == "SealProvider":
        from folderseal.providers.seal.provider import SealProvider
        return SealProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
