"""The provider kinds: for each, its configuration model and its provider class.

A new provider is one folder under ``providers/`` and one line here. The configuration
models are imported now and registered with :mod:`folderseal.core.config` (which imports
no provider: the configuration is validated with what is registered); the provider
classes only when a provider is built, by their import path, because they import what
configuration loading must not (httpx, folderseal.signing).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from folderseal.core.config import register_provider_kinds
from folderseal.core.configbase import ProviderSection
from folderseal.providers.centrapay.config import CentrapayProviderConfig
from folderseal.providers.clevver.config import ClevverProviderConfig
from folderseal.providers.local.config import LocalProviderConfig
from folderseal.providers.seal.config import SealProviderConfig

if TYPE_CHECKING:
    from folderseal.providers import Steps


@dataclass(frozen=True, slots=True)
class Kind:
    config: type[ProviderSection]   # the model of its [providers.<name>] table
    provider: str                   # "module:Class", built as Class(name, cfg, state_dir)


P = "folderseal.providers."
KINDS: dict[str, Kind] = {
    "local": Kind(LocalProviderConfig, P + "local.provider:LocalProvider"),
    "seal": Kind(SealProviderConfig, P + "seal.provider:SealProvider"),
    "clevver": Kind(ClevverProviderConfig, P + "clevver.provider:ClevverProvider"),
    "centrapay": Kind(CentrapayProviderConfig, P + "centrapay.provider:CentrapayProvider"),
}
register_provider_kinds({kind: found.config for kind, found in KINDS.items()})


def provider_class(kind: str) -> Any:
    """The provider class of ``kind`` (imported now)."""
    module, _, name = KINDS[kind].provider.partition(":")
    return getattr(importlib.import_module(module), name)


def steps(kind: str) -> Steps:
    """What ``kind``'s lifecycle is (a class attribute: no provider is built)."""
    found: Steps = provider_class(kind).steps
    return found
