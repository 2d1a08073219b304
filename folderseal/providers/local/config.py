"""The ``[providers.<name>]`` table of ``kind = "local"`` (apart from the signer, which
imports folderseal.signing: loading the configuration must not)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from folderseal.core.configbase import OptionalPath, ProviderSection, read_secret
from folderseal.core.keyfiles import SecretFile


class LocalProviderConfig(ProviderSection):
    """The embedded signer: PAdES for PDFs, a detached CAdES signature for the rest."""

    kind: Literal["local"]
    certificate: Path
    key: OptionalPath
    password: SecretStr | None = None
    password_file: OptionalPath
    timestamp_url: str = ""
    workers: int = Field(default=0, ge=0)
    sign_timeout_seconds: float = Field(default=120.0, gt=0)
    worker_max_tasks: int = Field(default=5000, ge=1)
    sign_attempts: int = Field(default=3, ge=1)
    retry_max_seconds: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _one_password_source(self) -> LocalProviderConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both (a FOLDERSEAL_… "
                             "variable for either replaces both from the file)")
        return self

    def read_password(self) -> bytes | None:
        """The certificate password, registered with the redactor before it is returned."""
        return read_secret(self.password, self.password_file, "password_file")

    def secret_files(self) -> list[SecretFile]:
        """The password file, and the key: a PEM key file, or the PKCS#12 (which its
        password protects, when it has one)."""
        found = [SecretFile("password_file", self.password_file)] if self.password_file else []
        if self.key is not None:
            return [*found, SecretFile("key", self.key)]
        has_password = self.password is not None or self.password_file is not None
        return [*found, SecretFile("certificate", self.certificate, group_may_read=has_password)]
