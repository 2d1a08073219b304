"""The ``[store]`` table: SQLite in ``state_dir`` (one node), or a PostgreSQL database
several nodes share (fleet mode, docs/fleet.md). The URL may hold a password: it is read
like every other secret (given directly or in a file, registered with the redactor)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from folderseal.core.configbase import Section, read_secret
from folderseal.core.errors import ConfigError
from folderseal.core.redact import REDACTOR

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StoreConfig(Section):
    """Where the store lives: SQLite in ``state_dir`` (``url = ""``), or a PostgreSQL
    database several nodes share (fleet mode)."""

    url: SecretStr | None = None       # may hold a password: never logged or shown
    url_file: Path | None = None        # the URL in a file (first line), a secret
    lease_seconds: float = Field(default=30.0, ge=5.0, le=3600.0)
    auto_migrate: bool = False          # PostgreSQL: migrate at start (else `folderseal migrate`)

    @field_validator("url")
    @classmethod
    def _postgresql_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(POSTGRES_SCHEMES):
            raise ValueError('must be "" (SQLite in state_dir) or "postgresql://…"')
        return value

    @model_validator(mode="after")
    def _one_source(self) -> StoreConfig:
        if self.url is not None and self.url_file is not None:
            raise ValueError("give url or url_file, not both")
        return self

    def database_url(self) -> str | None:
        """The PostgreSQL URL (its password registered with the redactor), or None for
        SQLite in ``state_dir``."""
        secret = read_secret(self.url, self.url_file, "store.url_file")
        if secret is None:
            return None
        url = secret.decode()
        if not url.startswith(POSTGRES_SCHEMES):
            raise ConfigError(f"store.url_file {self.url_file}: the first line must be a "
                              '"postgresql://…" URL')
        password = urlsplit(url).password
        if password:
            REDACTOR.add(password.encode())
            REDACTOR.add(unquote(password).encode())
        return url

