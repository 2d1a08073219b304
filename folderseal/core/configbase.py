"""What every configuration model shares, so a provider's model can live in its folder.

:class:`Section` is the base of every table (unknown keys refused, "" meaning "not set"
for optional paths and secrets); :func:`read_secret` reads a secret given directly or in
a file and registers it with the redactor; :class:`HttpProvider` holds the keys every
provider that speaks HTTP has (its address and the transport). This module imports no
provider: :mod:`folderseal.core.config` and the providers' own ``config`` modules import it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from folderseal.core.errors import ConfigError
from folderseal.core.keyfiles import CREDENTIALS, names_credential
from folderseal.core.redact import REDACTOR

# Optional paths and secrets: "" in the file (or an empty variable) means "not set".
BLANK_IS_UNSET = ("archive", "work_dir", "key", "password_file", "password", "api_key",
                  "api_key_file", "api_token", "api_token_file", "client_certificate",
                  "client_key", "ca_bundle", "url", "url_file")

OptionalPath = Annotated[Path | None, Field(default=None)]


def _empty_is_none(value: Any) -> Any:
    return None if value == "" else value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _blank_paths(cls, data: Any) -> Any:
        # "" means "not set" for optional paths, as in the documented defaults.
        if isinstance(data, dict):
            return {key: _empty_is_none(value) if key in BLANK_IS_UNSET else value
                    for key, value in data.items()}
        return data


class ProviderSection(Section):
    """A ``[providers.<name>]`` table; each kind narrows ``kind`` to its own name."""

    kind: str


def read_secret(value: SecretStr | None, file: Path | None, key: str) -> bytes | None:
    """A secret given directly or in a file (first line), registered with the redactor."""
    if value is not None:
        secret = value.get_secret_value().encode()
    elif file is not None:
        file = credential(file, key)
        try:
            secret = file.read_bytes().splitlines()[0] if file.stat().st_size else b""
        except OSError as exc:
            raise ConfigError(
                f"cannot read {key} {file}: {exc.strerror}; check the path and that "
                "folderseal's user may read it") from None
    else:
        return None
    REDACTOR.add(secret)
    return secret


def credential(file: Path, key: str) -> Path:
    """A path under ``$CREDENTIALS_DIRECTORY``, where systemd puts what ``LoadCredential=``
    loads (only the service sees the variable: ``check`` run by hand does not)."""
    if not names_credential(file):
        return file
    text = str(file).replace("${CREDENTIALS_DIRECTORY}", CREDENTIALS)
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(
            f"{key} {text} needs $CREDENTIALS_DIRECTORY, which systemd sets for a service "
            "with LoadCredential=; outside the service, run as "
            "'systemd-run -P -p LoadCredential=… folderseal …' or give a plain path")
    return Path(directory) / text[len(CREDENTIALS) + 1:]


class HttpProvider(ProviderSection):
    """The keys of a provider reached over HTTP: its address and the transport."""

    base_url: str
    client_certificate: OptionalPath
    client_key: OptionalPath
    ca_bundle: OptionalPath
    verify_tls: bool = True
    timeout_seconds: float = Field(default=60.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local emulator)")
        return value.rstrip("/")

    def check_transport(self) -> None:
        """Called by a subclass's own validator, after its secret checks (one message at a
        time, the secret's first)."""
        if (self.client_key is None) != (self.client_certificate is None):
            raise ValueError("client_certificate and client_key go together (mTLS)")
