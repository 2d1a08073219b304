"""config.example.toml documents every key, with its default and its environment name."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from folderseal.core.config import FolderConfig, LogConfig, MetricsConfig, Settings, StoreConfig
from folderseal.providers.centrapay.config import CentrapayProviderConfig
from folderseal.providers.clevver.config import ClevverProviderConfig
from folderseal.providers.local.config import LocalProviderConfig
from folderseal.providers.seal.config import SealProviderConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
TEXT = EXAMPLE.read_text(encoding="utf-8")
RAW = tomllib.loads(TEXT)
# Secrets are shown commented out, so nobody copies an empty password into a config.
COMMENTED = {"password", "api_key", "api_token", "s3_secret_access_key"}

SECTIONS: list[tuple[str, type[BaseModel], dict[str, Any]]] = [
    ("", Settings, {k: v for k, v in RAW.items() if not isinstance(v, dict)}),
    ("store", StoreConfig, RAW["store"]),
    ("log", LogConfig, RAW["log"]),
    ("metrics", MetricsConfig, RAW["metrics"]),
    ("providers.company_seal", LocalProviderConfig, RAW["providers"]["company_seal"]),
    ("providers.signius", SealProviderConfig, RAW["providers"]["signius"]),
    ("providers.proof", ClevverProviderConfig, RAW["providers"]["proof"]),
    ("providers.loads", CentrapayProviderConfig, RAW["providers"]["loads"]),
    ("folders.scans", FolderConfig, RAW["folders"]["scans"]),
]

IDS = [name or "top" for name, _, _ in SECTIONS]


@pytest.mark.parametrize(("name", "model", "table"), SECTIONS, ids=IDS)
def test_every_key_is_in_the_example(name: str, model: type[BaseModel],
                                     table: dict[str, Any]) -> None:
    """Each configuration key appears in config.example.toml (secrets commented out)."""
    fields = set(model.model_fields) - {"store", "log", "metrics", "providers", "folders"}
    missing = fields - set(table) - COMMENTED
    assert not missing, f"[{name}] lacks {sorted(missing)}"
    for secret in fields & COMMENTED:
        assert re.search(rf"^# {secret} = ", TEXT, re.M), f"{secret} is not shown commented"
    assert not set(table) - fields, f"[{name}] has keys the model does not know"


@pytest.mark.parametrize(("name", "model", "table"), SECTIONS, ids=IDS)
def test_every_key_names_its_environment_variable(name: str, model: type[BaseModel],
                                                  table: dict[str, Any]) -> None:
    """Each key's FOLDERSEAL_… environment name is written beside it."""
    prefix = "FOLDERSEAL_" + "".join(p.upper() + "__" for p in name.split(".") if p)
    for key in table:
        assert prefix + key.upper() in TEXT, f"no {prefix + key.upper()} in the example"


def test_documented_defaults_are_the_real_defaults() -> None:
    """Where the example shows a default, it is the value the code uses."""
    folder = FolderConfig.model_validate({"inbox": "/i", "outbox": "/o", "errors": "/e",
                                          "provider": "p"})
    shown = FolderConfig.model_validate(RAW["folders"]["scans"])
    for key in ("recursive", "watch", "poll_interval_seconds", "rescan_seconds",
                "settle_seconds", "stuck_after_seconds", "batch_max_files", "batch_max_bytes",
                "batch_max_wait_seconds", "max_in_flight_files", "min_free_bytes",
                "duplicates", "file_mode", "include", "exclude", "archive", "work_dir"):
        assert getattr(shown, key) == getattr(folder, key), key
    seal = SealProviderConfig.model_validate({"kind": "seal", "base_url": "https://x",
                                              "api_key": "k"})
    shown_seal = SealProviderConfig.model_validate({**RAW["providers"]["signius"],
                                                    "api_key_file": None, "api_key": "k"})
    for key in SealProviderConfig.model_fields:
        if key not in ("base_url", "api_key", "api_key_file"):
            assert getattr(shown_seal, key) == getattr(seal, key), key
    clevver = ClevverProviderConfig.model_validate({"kind": "clevver", "base_url": "https://x",
                                                   "api_token": "t"})
    shown_clevver = ClevverProviderConfig.model_validate({**RAW["providers"]["proof"],
                                                          "api_token_file": None,
                                                          "api_token": "t"})
    for key in ClevverProviderConfig.model_fields:
        if key not in ("base_url", "api_token", "api_token_file"):
            assert getattr(shown_clevver, key) == getattr(clevver, key), key
    centrapay = CentrapayProviderConfig.model_validate({
        "kind": "centrapay", "base_url": "https://x", "api_key": "k", "account_id": "a",
        "batch_type": "t", "s3_bucket": "b"})
    shown_centrapay = CentrapayProviderConfig.model_validate({**RAW["providers"]["loads"],
                                                              "api_key_file": None,
                                                              "api_key": "k"})
    for key in CentrapayProviderConfig.model_fields:
        if key not in ("base_url", "api_key", "api_key_file", "account_id", "batch_type",
                       "s3_bucket"):
            assert getattr(shown_centrapay, key) == getattr(centrapay, key), key
