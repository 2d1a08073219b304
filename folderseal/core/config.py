"""Configuration: a TOML file plus ``FOLDERSEAL_…`` environment overrides.

Folders and providers are tables keyed by name, so every key has an environment
name (``FOLDERSEAL_FOLDERS__SCANS__SETTLE_SECONDS``). Environment variables are
matched case-insensitively, so table names are too: they are folded to lower case.
Relative paths are taken relative to the configuration file's folder.

A bad configuration raises :class:`ConfigError` naming each key and what to do.
Pydantic's own messages quote the offending input, which may be a password, so
errors are rebuilt here from their location and message only, and passed through
the redactor as well.

Each provider kind's table model lives in its provider's folder and is registered here
by :mod:`folderseal.providers.registry` (:func:`register_provider_kinds`), so this bottom
layer imports no provider; what the models share is in :mod:`folderseal.core.configbase`.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    ByteSize,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from folderseal.core.configbase import (
    OptionalPath,
    ProviderSection,
    Section,
    credential,
)
from folderseal.core.errors import ConfigError
from folderseal.core.keyfiles import names_credential
from folderseal.core.redact import REDACTOR
from folderseal.core.storeconfig import StoreConfig

DEFAULT_CONFIG = Path("/etc/folderseal/config.toml")
ENV_PREFIX = "FOLDERSEAL_"
NAME_PATTERN = r"^[a-z0-9_]+$"
NODE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$"


class LogConfig(Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsConfig(Section):
    """The HTTP listener for /metrics, /healthz and the status page ("" = off)."""

    listen: str = ""

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        if value:
            listen_address(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        return listen_address(self.listen) if self.listen else None


def listen_address(value: str) -> tuple[str, int]:
    """("127.0.0.1", 9464) from "127.0.0.1:9464"; "[::1]:9464" for IPv6; port 0 takes any
    free port (the daemon logs which, in web.listening)."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f'{value!r} is not "host:port", e.g. "127.0.0.1:9464"')
    return host, int(port)


# A [providers.<name>] table: the model of its kind, told apart by `kind`. The union of
# the registered models is given to Settings when the kinds are registered.
if TYPE_CHECKING:
    ProviderConfig = ProviderSection
_KINDS: dict[str, type[ProviderSection]] = {}
PATH_KEYS = ("certificate", "key", "password_file", "api_key_file", "api_token_file",
             "client_certificate", "client_key", "ca_bundle", "s3_secret_access_key_file",
             "publish_dir")


class FolderConfig(Section):
    inbox: Path
    outbox: Path
    errors: Path
    archive: OptionalPath
    work_dir: OptionalPath
    provider: str
    include: list[str] = ["*"]
    exclude: list[str] = []
    recursive: bool = True
    watch: Literal["auto", "events", "polling"] = "auto"
    poll_interval_seconds: float = Field(default=10.0, gt=0)
    rescan_seconds: float = Field(default=300.0, gt=0)
    settle_seconds: float = Field(default=5.0, ge=0)
    stuck_after_seconds: float = Field(default=86400.0, gt=0)
    batch_max_files: int = Field(default=100, ge=1)
    batch_max_bytes: ByteSize = ByteSize(200_000_000)
    batch_max_wait_seconds: float = Field(default=5.0, ge=0)
    max_in_flight_files: int = Field(default=1000, ge=1)
    min_free_bytes: ByteSize = ByteSize(1_000_000_000)
    duplicates: Literal["sign", "skip"] = "sign"
    file_mode: int = 0o644

    @field_validator("provider")
    @classmethod
    def _fold_provider(cls, value: str) -> str:
        return value.lower()

    @field_validator("file_mode", mode="before")
    @classmethod
    def _octal(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = int(value, 8)
            except ValueError:
                raise ValueError('must be an octal mode such as "0644"') from None
        if isinstance(value, int) and not 0 <= value <= 0o777:
            raise ValueError('must be an octal mode between "0000" and "0777"')
        return value

    @property
    def work_folder(self) -> Path:
        """Where claimed files wait: ``work_dir``, or ``<inbox>/.folderseal/work``."""
        return self.work_dir or self.inbox / ".folderseal" / "work"


class Settings(BaseSettings):
    """The whole configuration, as validated."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    state_dir: Path = Path("/var/lib/folderseal")
    node: str = ""
    store: StoreConfig = StoreConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    providers: dict[str, ProviderConfig] = {}
    folders: dict[str, FolderConfig] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (which arrives as init arguments).
        return (env_settings, init_settings)

    @model_validator(mode="before")
    @classmethod
    def _check_kinds(cls, data: Any) -> Any:
        # A clearer message than pydantic's "Input should be 'local'" for a kind that
        # a later version adds.
        if isinstance(data, dict):
            for name, provider in (data.get("providers") or {}).items():
                kind = provider.get("kind") if isinstance(provider, dict) else None
                if kind is not None and kind not in _KINDS:
                    raise ValueError(
                        f"providers.{name}.kind: unknown provider kind {kind!r}; "
                        "this version offers: " + ", ".join(_KINDS)
                    )
        return data

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        for kind, names in (("folders", self.folders), ("providers", self.providers)):
            for name in names:
                if not re.match(NAME_PATTERN, name):
                    raise ValueError(
                        f"{kind}.{name}: names may hold only letters, digits and _"
                    )
        for name, folder in self.folders.items():
            if folder.provider not in self.providers:
                raise ValueError(
                    f"folders.{name}.provider: no provider named {folder.provider!r}; "
                    f"add a [providers.{folder.provider}] table or name one of: "
                    + (", ".join(sorted(self.providers)) or "(none configured)")
                )
        return self

    @field_validator("node")
    @classmethod
    def _node_is_a_folder_name(cls, value: str) -> str:
        # Each node claims into <work>/nodes/<node>/: a name that is one safe folder name.
        if value and not re.match(NODE_PATTERN, value):
            raise ValueError("may hold only letters, digits, '.', '-' and '_' (at most 64, "
                             "not starting with '.' or '-')")
        return value

    @property
    def node_name(self) -> str:
        return self.node or socket.gethostname()

    @property
    def database(self) -> Path:
        return self.state_dir / "folderseal.sqlite"


def default_config_path() -> Path:
    return Path(os.environ.get("FOLDERSEAL_CONFIG") or DEFAULT_CONFIG)


def register_provider_kinds(models: dict[str, type[ProviderSection]]) -> None:
    """Make each kind's table model known (called by :mod:`folderseal.providers.registry`
    when it is imported): ``[providers.<name>]`` tables are read with them from then on."""
    _KINDS.update(models)
    union: Any = Annotated[Union[tuple(_KINDS.values())],  # noqa: UP007
                           Field(discriminator="kind")]
    Settings.model_rebuild(force=True, _types_namespace={"ProviderConfig": union})


def known_kinds() -> tuple[str, ...]:
    """The provider kinds this version offers."""
    return tuple(_KINDS)


def load(path: Path | None = None) -> Settings:
    """Read, merge and validate the configuration; raise ConfigError if it cannot be used."""
    if not _KINDS:
        raise RuntimeError("no provider kinds are registered: import "
                           "folderseal.providers.registry before loading a configuration")
    path = path or default_config_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration at {path}; run 'folderseal init DIR' for a starter one, "
            "or pass -c CONFIG (or set FOLDERSEAL_CONFIG)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix the line it names") from None
    _register_secrets(raw)
    for key, value in os.environ.items():
        if key.upper().startswith(ENV_PREFIX) and _is_secret_name(key):
            REDACTOR.add(value)
    try:
        settings = Settings(**_env_secrets_win(_fold_names(raw)))
    except ValidationError as exc:
        raise ConfigError(_explain(path, exc)) from None
    except SettingsError as exc:
        # An environment value pydantic-settings could not parse (a list or table that
        # is not JSON). Its message names the variable, not the value.
        raise ConfigError(REDACTOR.text(
            f"{exc}; lists and tables given in FOLDERSEAL_… variables must be JSON, "
            'e.g. FOLDERSEAL_FOLDERS__SCANS__INCLUDE=\'["*.pdf"]\'')) from None
    return _resolve_paths(settings, path.parent.absolute())


def _is_secret_name(key: str) -> bool:
    return any(part in key.upper() for part in ("PASSWORD", "API_KEY", "SECRET", "TOKEN"))


def _register_secrets(raw: dict[str, Any]) -> None:
    for provider in (raw.get("providers") or {}).values():
        if isinstance(provider, dict):
            for key in ("password", "api_key", "api_token", "s3_secret_access_key"):
                value = provider.get(key)
                if isinstance(value, str):
                    REDACTOR.add(value)


# A secret given two ways; the environment overriding either one replaces both in the file.
SECRET_PAIRS = (("password", "password_file"), ("api_key", "api_key_file"),
                ("api_token", "api_token_file"),
                ("s3_secret_access_key", "s3_secret_access_key_file"))


def _env_secrets_win(raw: dict[str, Any]) -> dict[str, Any]:
    """Drop a secret from the file when the environment gives it (either way).

    The environment overrides the file key by key, but ``api_key`` and ``api_key_file``
    are one secret: FOLDERSEAL_PROVIDERS__X__API_KEY beside a file's api_key_file would
    otherwise reach the model as "both set". Two sources within one layer (both in the
    file, or both in the environment) are still a conflict. An empty variable means
    "not set", as an empty value in the file does.
    """
    given = {key.upper() for key, value in os.environ.items() if value}

    def trimmed(table: Any, prefix: str, pairs: tuple[tuple[str, str], ...]) -> Any:
        if not isinstance(table, dict):
            return table
        for pair in pairs:
            if any(prefix + key.upper() in given for key in pair):
                table = {k: v for k, v in table.items() if k not in pair}
        return table

    out = dict(raw)
    if "store" in raw:
        out["store"] = trimmed(raw["store"], f"{ENV_PREFIX}STORE__", (("url", "url_file"),))
    providers = raw.get("providers")
    if isinstance(providers, dict):
        out["providers"] = {
            name: trimmed(table, f"{ENV_PREFIX}PROVIDERS__{name.upper()}__", SECRET_PAIRS)
            for name, table in providers.items()}
    return out


def _fold_names(raw: dict[str, Any]) -> dict[str, Any]:
    folded = dict(raw)
    for table in ("folders", "providers"):
        entries = raw.get(table)
        if isinstance(entries, dict):
            lowered = {str(name).lower(): value for name, value in entries.items()}
            if len(lowered) != len(entries):
                raise ConfigError(
                    f"[{table}] has two names that differ only in case; names are "
                    "case-insensitive (like their environment variables): rename one"
                )
            folded[table] = lowered
    return folded


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    def absolute(p: Path | None) -> Path | None:
        if p is None or p.is_absolute():
            return p
        if names_credential(p):  # resolved now if the service has credentials, else on read
            return credential(p, "") if os.environ.get("CREDENTIALS_DIRECTORY") else p
        return base / p

    folders = {
        name: folder.model_copy(
            update={
                key: absolute(getattr(folder, key))
                for key in ("inbox", "outbox", "errors", "archive", "work_dir")
            }
        )
        for name, folder in settings.folders.items()
    }
    providers = {
        name: provider.model_copy(
            update={
                key: absolute(getattr(provider, key))
                for key in PATH_KEYS if key in type(provider).model_fields
            }
        )
        for name, provider in settings.providers.items()
    }
    store = settings.store.model_copy(update={"url_file": absolute(settings.store.url_file)})
    return settings.model_copy(
        update={"state_dir": absolute(settings.state_dir), "folders": folders,
                "providers": providers, "store": store}
    )


_FRIENDLY = {
    "extra_forbidden": "unknown key; check its spelling against config.example.toml",
    "missing": "required; set it",
}


def _explain(path: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = tuple(str(part) for part in error["loc"])
        if len(loc) > 2 and loc[0] == "providers" and loc[2] in _KINDS:
            loc = loc[:2] + loc[3:]  # pydantic names the kind (the union's tag) as a level
        lines.append((loc, _FRIENDLY.get(error["type"], error["msg"])))
    return _explain_lines(path, lines)


def _explain_lines(path: Path, problems: list[tuple[tuple[str, ...], str]]) -> str:
    out = [f"the configuration in {path} cannot be used:"]
    for loc, message in problems:
        message = message.removeprefix("Value error, ")
        if loc:
            env = ENV_PREFIX + "__".join(loc).upper()
            out.append(f"  {'.'.join(loc)}: {message} (in the file, or {env})")
        else:
            out.append(f"  {message}")
    return REDACTOR.text("\n".join(out))
