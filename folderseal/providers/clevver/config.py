"""The ``[providers.<name>]`` table of ``kind = "clevver"``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from folderseal.core.configbase import HttpProvider, OptionalPath, read_secret
from folderseal.core.keyfiles import SecretFile


class ClevverProviderConfig(HttpProvider):
    """Clevver: each file stored on a blockchain, with a receipt (proof of existence)."""

    kind: Literal["clevver"]
    auth: Literal["bearer", "header", "basic", "none"] = "bearer"
    api_token: SecretStr | None = None
    api_token_file: OptionalPath
    api_token_header: str = "Authorization"
    username: str = ""
    poll_interval_seconds: float = Field(default=10.0, gt=0)
    status_grace_seconds: float = Field(default=30.0, ge=0)
    max_wait_seconds: float = Field(default=86400.0, gt=0)
    # Few files per remote batch: a lost attach answer abandons the whole remote batch.
    batch_max_files: int = Field(default=20, ge=1)

    @model_validator(mode="after")
    def _token_given(self) -> ClevverProviderConfig:
        if self.api_token is not None and self.api_token_file is not None:
            raise ValueError("set api_token or api_token_file, not both (a FOLDERSEAL_… "
                             "variable for either replaces both from the file)")
        if self.auth != "none" and self.api_token is None and self.api_token_file is None:
            raise ValueError(f"auth = {self.auth!r} needs api_token, api_token_file or the "
                             "FOLDERSEAL_PROVIDERS__<NAME>__API_TOKEN environment variable")
        if self.auth == "basic" and not self.username:
            raise ValueError('auth = "basic" needs username (the token is the password)')
        if self.auth == "header" and not self.api_token_header.strip():
            raise ValueError('auth = "header" needs api_token_header (the header to send)')
        self.check_transport()
        return self

    def read_api_token(self) -> bytes | None:
        """The API token (or Basic password), registered with the redactor."""
        return read_secret(self.api_token, self.api_token_file, "api_token_file")

    def secret_files(self) -> list[SecretFile]:
        return [SecretFile(key, path) for key, path in (("api_token_file", self.api_token_file),
                                                        ("client_key", self.client_key)) if path]
