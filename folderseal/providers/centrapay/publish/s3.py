"""Publishing to an S3-compatible bucket (``publish = "s3"``): a streamed upload, then a
pre-signed GET URL made at the create."""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from folderseal.providers.centrapay.config import CentrapayProviderConfig
from folderseal.providers.centrapay.publish.interface import PublishError

PART = 8 << 20                  # S3 multipart part size (and the single-PUT threshold)
S3_CONCURRENCY = 2              # parts in flight across all uploads (and read ahead)
S3_CONNECTIONS = 4              # the client's connection pool
S3_CONNECT = 10.0               # seconds to connect (a start's tidy must not hang long)
CONTENT_TYPES = {".jsonl": "application/x-ndjson", ".ndjson": "application/x-ndjson",
                 ".csv": "text/csv"}


class S3Publisher:
    """Uploads to ``<s3_prefix><batch id>/<entry>`` with boto3: one PUT up to PART bytes,
    a multipart upload above (PART-sized parts, an upload that fails aborted).

    One client and one transfer manager per publisher, built at first use (so loading
    the configuration and ``check --offline`` import no boto3) and shared by every
    thread (both are thread-safe): across all the uploads at once, at most
    S3_CONCURRENCY parts are in flight and as many read ahead (memory stays about
    PART × 2 × S3_CONCURRENCY whatever the number of batches), over at most
    S3_CONNECTIONS connections.

    Its methods are the publisher interface plus the lazily built client and transfer manager
    they share."""

    def __init__(self, cfg: CentrapayProviderConfig) -> None:
        self.cfg = cfg
        self.bucket = cfg.s3_bucket
        self.prefix = cfg.s3_prefix
        endpoint = cfg.s3_endpoint_url or "AWS"
        self.where = f"bucket {self.bucket} at {endpoint}"
        # What tidy may remove: everything under a prefix of folderseal's own (the
        # configuration says so); at the bucket's root (no prefix) only keys of the form
        # folderseal gives them (<24 hex digits>/<NNNN_entry>, a check's probe).
        self._mine = re.compile(re.escape(self.prefix) + r".+\Z" if self.prefix else
                                r"(?:[0-9a-f]{24}/\d{4,}_[^/]+|probe-[0-9a-f]{32}\.txt)\Z",
                                re.DOTALL)
        self._client: Any = None
        self._transfers: Any = None
        self._lock = threading.Lock()

    @property
    def s3(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    @property
    def transfers(self) -> Any:
        """The transfer manager every upload goes through (its bounds are shared)."""
        client = self.s3
        with self._lock:
            if self._transfers is None:
                from boto3.s3.transfer import TransferConfig, create_transfer_manager

                config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART,
                                        max_concurrency=S3_CONCURRENCY, use_threads=True,
                                        preferred_transfer_client="classic")
                config.max_in_memory_upload_chunks = S3_CONCURRENCY  # bounds reading ahead
                self._transfers = create_transfer_manager(client, config)
            return self._transfers

    def close(self) -> None:
        """Let the transfer manager's threads go (built again at the next upload)."""
        with self._lock:
            transfers, self._transfers = self._transfers, None
        if transfers is not None:
            transfers.shutdown()

    def _build(self) -> Any:
        import boto3
        from botocore.config import Config

        cfg = self.cfg
        kwargs: dict[str, Any] = {}
        if cfg.s3_access_key_id:
            secret = cfg.read_s3_secret()
            assert secret is not None  # the configuration requires it with the key id
            kwargs = {"aws_access_key_id": cfg.s3_access_key_id,
                      "aws_secret_access_key": secret.decode()}
        config = Config(
            signature_version="s3v4", connect_timeout=min(cfg.timeout_seconds, S3_CONNECT),
            read_timeout=cfg.timeout_seconds, retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=S3_CONNECTIONS,
            # Another endpoint (MinIO, Ceph, a local server) may have no DNS per bucket.
            s3={"addressing_style": "path" if cfg.s3_endpoint_url else "auto"})
        return boto3.session.Session().client(
            "s3", region_name=cfg.s3_region or None,
            endpoint_url=cfg.s3_endpoint_url or None, config=config, **kwargs)

    def key_for(self, batch_id: str, entry: str, recorded: str = "") -> str:
        return f"{self.prefix}{batch_id}/{entry}"   # the same each time

    def probe_key(self) -> str:
        return f"{self.prefix}probe-{secrets.token_hex(16)}.txt"

    def shown(self, key: str) -> str:
        """The object key: reading it needs a signed URL (or the bucket's credentials)."""
        return key

    def publish(self, key: str, fd: int, size: int, reached: Callable[[], None]) -> None:
        from boto3.s3.transfer import ProgressCallbackInvoker

        sent = [False]
        lock = threading.Lock()

        def progress(amount: int) -> None:
            with lock:
                first = amount > 0 and not sent[0]
                sent[0] = sent[0] or amount > 0
            if first:
                reached()

        extra = {"ContentType": CONTENT_TYPES.get(PurePath(key).suffix.lower(),
                                                  "application/octet-stream")}
        stream = os.fdopen(os.dup(fd), "rb", closefd=True)
        try:
            stream.seek(0)
            self.transfers.upload(stream, self.bucket, key, extra_args=extra,
                                  subscribers=[ProgressCallbackInvoker(progress)]).result()
        except Exception as exc:
            self._abort_uploads(key)
            raise self._error("uploading", key, exc) from None
        finally:
            stream.close()
        if not self.present(key, size):
            raise PublishError(f"{self.where} does not show {key} with its {size} bytes after "
                               "the upload; uploading again later")

    def url(self, key: str) -> str:
        try:
            url: str = self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self.cfg.url_expiry_seconds)
        except Exception as exc:
            raise self._error("signing a URL for", key, exc) from None
        return url

    def present(self, key: str, size: int) -> bool:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error("looking for", key, exc) from None
        return int(head.get("ContentLength", -1)) == size

    def remove(self, key: str) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return
            raise self._error("removing", key, exc) from None

    def tidy(self, keep: Callable[[], set[str]]) -> int:
        """Objects under s3_prefix, and unfinished multipart uploads there, that
        ``keep()`` (called once both are listed) does not name. With no prefix (the
        bucket's root), only keys of the form folderseal gives them; anything else in the
        bucket is never touched."""
        removed = 0
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            listed = [item["Key"] for page in pages for item in page.get("Contents", [])
                      if self._mine.match(item["Key"])]
            uploads = self._uploads(None)
            kept = keep()   # after the listings: a key recorded since is in it
            stale = [key for key in listed if key not in kept]
            for start in range(0, len(stale), 1000):
                answer = self.s3.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in stale[start:start + 1000]],
                    "Quiet": True})
                failed = answer.get("Errors") or []
                removed += min(1000, len(stale) - start) - len(failed)
                if failed:
                    raise PublishError(f"{self.where} refused to remove "
                                       f"{failed[0].get('Key')} ({failed[0].get('Code')}); "
                                       "give folderseal's credentials s3:DeleteObject there")
            for name, upload_id in uploads:
                if name not in kept:
                    self.s3.abort_multipart_upload(Bucket=self.bucket, Key=name,
                                                   UploadId=upload_id)
                    removed += 1
        except PublishError:
            raise
        except Exception as exc:
            raise self._error("tidying", self.prefix or "(the whole bucket)", exc) from None
        return removed

    def _uploads(self, key: str | None) -> list[tuple[str, str]]:
        """The unfinished multipart uploads (key, upload id) of ``key`` (None: every one
        of folderseal's under the prefix)."""
        pages = self.s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=key or self.prefix)
        return [(upload["Key"], upload["UploadId"]) for page in pages
                for upload in page.get("Uploads", [])
                if ((upload["Key"] == key) if key else bool(self._mine.match(upload["Key"])))]

    def _abort_uploads(self, key: str) -> None:
        """Abort the unfinished multipart uploads of ``key``; best effort (tidy finds
        what is left)."""
        try:
            for name, upload_id in self._uploads(key):
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=name,
                                               UploadId=upload_id)
        except Exception:  # noqa: BLE001 - best effort: the upload's own error is raised
            pass

    def _error(self, doing: str, key: str, exc: Exception) -> PublishError:
        code = _code(exc)
        where = f"{doing} {key} in {self.where}"
        if code in ("NoSuchBucket",):
            return PublishError(f"{where}: the bucket does not exist; create it, or fix "
                                "s3_bucket and s3_endpoint_url", config=True)
        if code in ("AccessDenied", "AllAccessDisabled", "Forbidden", "403"):
            return PublishError(f"{where}: access denied; give folderseal's credentials "
                                "s3:PutObject, s3:GetObject, s3:DeleteObject, s3:ListBucket, "
                                "s3:ListBucketMultipartUploads and s3:AbortMultipartUpload "
                                "on the bucket and prefix", config=True)
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                    "InvalidToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed"):
            return PublishError(f"{where}: the S3 credentials were refused ({code}); check "
                                "s3_access_key_id and s3_secret_access_key_file (or the AWS "
                                "credential chain) and s3_region", config=True)
        name = type(exc).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return PublishError(f"{where}: no S3 credentials were found; set "
                                "s3_access_key_id and s3_secret_access_key_file, or provide "
                                "the usual AWS chain (environment, ~/.aws, an instance role)",
                                config=True)
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError",
                    "ReadTimeoutError", "ProxyConnectionError", "SSLError"):
            return PublishError(f"{where}: the S3 endpoint cannot be reached ({name}); check "
                                "s3_endpoint_url and the network; retrying later")
        said = f"{code}: {exc}" if code else f"{name}: {exc}"
        return PublishError(f"{where} failed ({said}); retrying later")


def _code(exc: BaseException) -> str:
    """The S3 error code of a botocore ClientError (or of the one an S3UploadFailedError
    wraps); "" for anything else."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        response = getattr(candidate, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
    found = re.search(r"An error occurred \((\w+)\)", str(exc))
    return found.group(1) if found else ""
