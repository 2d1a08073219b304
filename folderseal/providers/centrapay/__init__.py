"""The ``centrapay`` provider: each dropped file is a batch file loaded into a Centrapay
account, which fetches it from a URL folderseal publishes it at; the sidecar carries
the load report.

The adapter is in :mod:`.provider`, its HTTP calls in :mod:`.client`, the reading of
Centrapay's answers in :mod:`.parse`, the local check of a batch file in
:mod:`.validate`, publishing (S3 or a served folder) in :mod:`.publish`, what
``folderseal check`` proves in :mod:`.check`. Loading the
configuration imports :mod:`.config` and so this package, but not the adapter (it
imports httpx and boto3): that is imported when named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from folderseal.providers.centrapay.provider import CentrapayProvider

__all__ = ["CentrapayProvider"]


def __getattr__(name: str) -> Any:
    if name == "CentrapayProvider":
        from folderseal.providers.centrapay.provider import CentrapayProvider
        return CentrapayProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
