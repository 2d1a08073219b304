"""The ``[providers.<name>]`` table of ``kind = "centrapay"``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from folderseal.core.configbase import HttpProvider, OptionalPath, read_secret
from folderseal.core.keyfiles import SecretFile

# Centrapay's documented batch types and the format of their files. Another type is
# accepted (Centrapay adds types); its files' format is then told by their suffix.
BATCH_TYPES = {"farmlands-external-asset": "jsonl", "ticketek-ticket": "jsonl",
               "business-onboard": "csv"}
# About the requests a minute Centrapay allows an account: max_requests_per_minute may
# be set above it (check and start warn).
RATE_LIMIT = 200
# S3 signs a GET for at most seven days (SigV4).
MAX_URL_EXPIRY = 7 * 24 * 3600
# Keys of this table where "" means "not set", as for the shared secrets and paths.
_BLANK = ("s3_secret_access_key", "s3_secret_access_key_file", "publish_dir")


class CentrapayProviderConfig(HttpProvider):
    """Centrapay: the dropped file is a batch file of records, loaded into an account
    from a URL it is published at."""

    kind: Literal["centrapay"]
    api_key: SecretStr | None = None
    api_key_file: OptionalPath
    account_id: str = ""
    batch_type: str = ""
    test: bool = False
    publish: Literal["s3", "folder"] = "s3"
    s3_endpoint_url: str = ""
    s3_bucket: str = ""
    s3_prefix: str = "folderseal/"
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr | None = None
    s3_secret_access_key_file: OptionalPath
    url_expiry_seconds: int = Field(default=3600, ge=60, le=MAX_URL_EXPIRY)
    publish_dir: OptionalPath
    publish_url_prefix: str = ""
    max_requests_per_minute: float = Field(default=150.0, gt=0)
    status_grace_seconds: float = Field(default=30.0, ge=0)
    poll_interval_seconds: float = Field(default=5.0, gt=0)
    max_wait_seconds: float = Field(default=3600.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _blank_own(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: None if key in _BLANK and value == "" else value
                    for key, value in data.items()}
        return data

    @field_validator("account_id", "batch_type", "s3_bucket", "s3_access_key_id",
                     "s3_endpoint_url", "publish_url_prefix", "s3_region")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _complete(self) -> CentrapayProviderConfig:
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("set api_key or api_key_file, not both (a FOLDERSEAL_… "
                             "variable for either replaces both from the file)")
        if self.api_key is None and self.api_key_file is None:
            raise ValueError("the Centrapay API key is missing: set api_key_file (or api_key, "
                             "or the FOLDERSEAL_PROVIDERS__<NAME>__API_KEY environment "
                             "variable); it is sent as X-Api-Key")
        if not self.account_id:
            raise ValueError("account_id is missing: set the id of the Centrapay account "
                             "the records are loaded into (e.g. \"C4QnjXvj8At6SMsEN4LRi9\")")
        if not self.batch_type or any(c.isspace() for c in self.batch_type):
            raise ValueError("batch_type must name the Centrapay batch type of this "
                             "provider's files, e.g. " + ", ".join(BATCH_TYPES))
        if self.publish == "s3":
            self._check_s3()
        else:
            self._check_folder()
        self.check_transport()
        return self

    def _check_s3(self) -> None:
        if not self.s3_bucket:
            raise ValueError('publish = "s3" needs s3_bucket (the bucket the batch files are '
                             'uploaded to); or set publish = "folder" with publish_dir and '
                             "publish_url_prefix")
        if self.s3_endpoint_url and not self.s3_endpoint_url.startswith(("http://",
                                                                         "https://")):
            raise ValueError('s3_endpoint_url must start with https:// (or http://), or be "" '
                             "for AWS")
        if self.s3_prefix.startswith("/"):
            raise ValueError('s3_prefix must not start with "/" (S3 keys do not), e.g. '
                             '"folderseal/"')
        secret = self.s3_secret_access_key is not None or \
            self.s3_secret_access_key_file is not None
        if self.s3_secret_access_key is not None and self.s3_secret_access_key_file is not None:
            raise ValueError("set s3_secret_access_key_file or s3_secret_access_key, not both")
        if self.s3_access_key_id and not secret:
            raise ValueError("s3_access_key_id needs its secret: set s3_secret_access_key_file "
                             "(or FOLDERSEAL_PROVIDERS__<NAME>__S3_SECRET_ACCESS_KEY), or leave "
                             "s3_access_key_id empty to use the usual AWS credential chain")
        if secret and not self.s3_access_key_id:
            raise ValueError("an S3 secret access key is set without s3_access_key_id: set "
                             "both, or neither to use the usual AWS credential chain")

    def _check_folder(self) -> None:
        if self.publish_dir is None:
            raise ValueError('publish = "folder" needs publish_dir (a folder a web server '
                             "serves at publish_url_prefix)")
        if not self.publish_url_prefix.startswith(("http://", "https://")):
            raise ValueError('publish = "folder" needs publish_url_prefix, the https:// '
                             "address publish_dir is served at (the file's name is appended)")
        if not self.publish_url_prefix.endswith(("/", "=")):
            raise ValueError("publish_url_prefix must end with / (the file's name is appended "
                             f"to it): {self.publish_url_prefix}/")

    @property
    def format(self) -> str:
        """The format batch_type says its files have ("" for a type folderseal does not
        know: a file's suffix tells it)."""
        return BATCH_TYPES.get(self.batch_type, "")

    def read_api_key(self) -> bytes:
        """The API key, registered with the redactor."""
        key = read_secret(self.api_key, self.api_key_file, "api_key_file")
        assert key is not None  # the validator requires one
        return key

    def read_s3_secret(self) -> bytes | None:
        """The S3 secret access key (None: the AWS credential chain), registered with the
        redactor."""
        return read_secret(self.s3_secret_access_key, self.s3_secret_access_key_file,
                           "s3_secret_access_key_file")

    def secret_files(self) -> list[SecretFile]:
        return [SecretFile(key, path) for key, path in (
            ("api_key_file", self.api_key_file),
            ("s3_secret_access_key_file", self.s3_secret_access_key_file),
            ("client_key", self.client_key)) if path]
