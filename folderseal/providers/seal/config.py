"""The ``[providers.<name>]`` table of ``kind = "seal"``."""

from __future__ import annotations

from typing import Literal

from pydantic import ByteSize, Field, SecretStr, model_validator

from folderseal.core.configbase import HttpProvider, OptionalPath, read_secret
from folderseal.core.keyfiles import SecretFile

# SEAL's status codes as its newer table numbers them; names are what the API trusts.
SEAL_STATUS_CODES = ["NEW", "UPLOADED", "ACCEPTED", "READY", "IN_PROGRESS", "FINISHING",
                     "CLOSED", "DELETED"]


class SealProviderConfig(HttpProvider):
    """Signius SEAL, the electronic-seal server, through its batch API."""

    kind: Literal["seal"]
    process_id: int = Field(default=1, ge=0)
    auth: Literal["api-key", "basic", "none"] = "api-key"
    api_key: SecretStr | None = None
    api_key_file: OptionalPath
    api_key_header: str = "API-KEY"
    username: str = ""
    accept_batch_id: Literal["query", "json", "path"] = "query"
    status_codes: list[str] = SEAL_STATUS_CODES
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    max_wait_seconds: float = Field(default=3600.0, gt=0)
    status_grace_seconds: float = Field(default=30.0, ge=0)
    signature_suffixes: list[str] = [".p7s", ".p7m", ".asice", ".xml"]
    max_package_bytes: ByteSize = ByteSize(20_000_000_000)
    max_entry_bytes: ByteSize = ByteSize(5_000_000_000)

    @model_validator(mode="after")
    def _key_given(self) -> SealProviderConfig:
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("set api_key or api_key_file, not both (a FOLDERSEAL_… "
                             "variable for either replaces both from the file)")
        if self.auth != "none" and self.api_key is None and self.api_key_file is None:
            raise ValueError(f"auth = {self.auth!r} needs api_key, api_key_file or the "
                             "FOLDERSEAL_PROVIDERS__<NAME>__API_KEY environment variable")
        if self.auth == "basic" and not self.username:
            raise ValueError('auth = "basic" needs username (the key is the password)')
        self.check_transport()
        return self

    def read_api_key(self) -> bytes | None:
        """The API key (or Basic password), registered with the redactor."""
        return read_secret(self.api_key, self.api_key_file, "api_key_file")

    def secret_files(self) -> list[SecretFile]:
        return [SecretFile(key, path) for key, path in (("api_key_file", self.api_key_file),
                                                        ("client_key", self.client_key)) if path]
