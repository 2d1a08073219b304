"""The HTTP side of SEAL: one httpx client per deployment, errors translated once.

Every call goes through :meth:`SealClient._call`, the one boundary where foreign
errors become folderseal's: network errors, timeouts, 5xx and 429 are
:class:`TransientError` (429 carries ``Retry-After``); other 4xx are
:class:`ProviderError` with the HTTP status and the first 2 KB of the body, secrets
masked; an answer that cannot be read is transient too (a proxy's error page, a
half-written response). Uploads and downloads stream from and to disk in 1 MiB
chunks, so memory does not grow with the package.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from folderseal.core import crashpoints, fencing, files
from folderseal.core.errors import ProviderError, TransientError
from folderseal.core.redact import without_secrets
from folderseal.providers.http import basic_auth, client, retry_after, without_query
from folderseal.providers.seal import parse
from folderseal.providers.seal.config import SealProviderConfig

BODY_IN_ERRORS = 2048
# No batch has the largest int32 id: a status call on it tests reachability and the key.
IMPOSSIBLE_BATCH = "2147483647"


class SealClient:
    def __init__(self, cfg: SealProviderConfig, provider: str,
                 transport: httpx.BaseTransport | None = None,
                 timeout: float | None = None) -> None:
        self.cfg = cfg
        self.provider = provider
        key = cfg.read_api_key()
        headers: dict[str, str] = {}
        auth: httpx.Auth | None = None
        if cfg.auth == "api-key" and key is not None:
            headers[cfg.api_key_header] = key.decode()
        elif cfg.auth == "basic" and key is not None:
            auth = basic_auth(cfg.username, key)
        self.http = client(cfg, headers, auth, transport, timeout)

    def close(self) -> None:
        self.http.close()

    # -- the calls -----------------------------------------------------------------

    def create(self) -> parse.RemoteBatchInfo:
        response = self._call("POST", f"/api/CreateBatch/{self.cfg.process_id}", "create")
        return self._batch(response, "create")

    def upload(self, batch_id: str, package: Path) -> None:
        size = package.stat().st_size
        self._call("POST", f"/api/upload/{batch_id}", "upload", batch_id,
                   content=_chunks(package),
                   headers={"Content-Type": "application/octet-stream",
                            "Content-Length": str(size)})

    def accept(self, batch_id: str) -> None:
        form = self.cfg.accept_batch_id
        number: Any = int(batch_id) if batch_id.isdigit() else batch_id
        if form == "query":
            self._call("POST", "/api/AcceptBatch", "accept", batch_id,
                       params={"batchId": batch_id})
        elif form == "json":
            self._call("POST", "/api/AcceptBatch", "accept", batch_id, json={"batchId": number})
        else:
            self._call("POST", f"/api/AcceptBatch/{batch_id}", "accept", batch_id)

    def status(self, batch_id: str) -> parse.RemoteBatchInfo | None:
        """The batch as SEAL sees it; None if SEAL does not know it (404)."""
        response = self._call("GET", f"/api/BatchStatus/{batch_id}", "status", batch_id,
                              allow_404=True)
        if response.status_code == 404:
            return None
        return self._batch(response, "status")

    def download(self, batch_id: str, dest: Path, max_bytes: int) -> int:
        """Stream the signed package to ``dest`` (fsynced); its size."""
        tmp = dest.with_name(dest.name + ".part")
        try:
            with self.http.stream("GET", f"/api/batchfile/{batch_id}") as response:
                self._check(response, "download", batch_id)
                # A length to check only when the bytes arrive as they were counted.
                expected = None if response.headers.get("Content-Encoding") \
                    else response.headers.get("Content-Length")
                size = 0
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                try:
                    for chunk in response.iter_bytes(files.CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise ProviderError(
                                "package_too_big", f"the package of batch {batch_id} is "
                                f"larger than max_package_bytes ({max_bytes} bytes)",
                                provider=self.provider, operation="download", batch=batch_id)
                        files.write_all(fd, chunk)
                        crashpoints.reached("seal:downloading")
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except httpx.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise self._transient(exc, "download", batch_id) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if expected is not None and expected.isdigit() and int(expected) != size:
            tmp.unlink(missing_ok=True)
            raise TransientError(f"the package download of batch {batch_id} broke off after "
                                 f"{size} of {expected} bytes; it is fetched again")
        os.replace(tmp, dest)
        return size

    def delete(self, batch_id: str) -> None:
        self._call("DELETE", f"/api/BatchDeleteCache/{batch_id}", "delete", batch_id,
                   allow_404=True)  # gone already: what we wanted

    def probe(self) -> tuple[int, str]:
        """The HTTP status (and Location, if any) of a status call on a batch that cannot
        exist: it tests the address and the key."""
        try:
            response = self.http.get(f"/api/BatchStatus/{IMPOSSIBLE_BATCH}")
            return response.status_code, response.headers.get("Location", "")
        except httpx.HTTPError as exc:
            raise self._transient(exc, "check", "") from None

    # -- the boundary ----------------------------------------------------------------

    def _call(self, method: str, path: str, operation: str, batch: str = "",
              allow_404: bool = False, **kwargs: Any) -> httpx.Response:
        fencing.confirm_before_sending()  # a pause since the step's lease check may be long
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._transient(exc, operation, batch) from None
        if not (allow_404 and response.status_code == 404):
            self._check(response, operation, batch)
        return response

    def _check(self, response: httpx.Response, operation: str, batch: str) -> None:
        status = response.status_code
        if status < 300:
            return
        where = f"SEAL {operation}{' of batch ' + batch if batch else ''}"
        if status == 429 or status >= 500:
            wait = retry_after(response.headers.get("Retry-After")) if status == 429 else None
            raise TransientError(f"{where} answered HTTP {status}; retrying later",
                                 retry_after=None if wait is None else max(1.0, wait))
        if status < 400:
            target = without_query(response.headers.get("Location", "?"))
            raise ProviderError(f"http_{status}", f"{where} answered a redirect (HTTP {status} "
                                f"to {target}); set base_url to the address SEAL really has",
                                provider=self.provider, operation=operation, batch=batch)
        response.read()
        body = without_secrets(response.content[:BODY_IN_ERRORS].decode("utf-8", "replace"))
        hint = " (the API key was refused: check api_key)" if status in (401, 403) else ""
        raise ProviderError(f"http_{status}", f"{where} answered HTTP {status}{hint}: {body}",
                            provider=self.provider, operation=operation, batch=batch)

    def _transient(self, exc: httpx.HTTPError, operation: str, batch: str) -> TransientError:
        where = f"SEAL {operation}{' of batch ' + batch if batch else ''}"
        return TransientError(without_secrets(f"{where} failed: {type(exc).__name__}: {exc}"))

    def _batch(self, response: httpx.Response, operation: str) -> parse.RemoteBatchInfo:
        try:
            return parse.batch(response.json(), self.cfg.status_codes)
        except (ValueError, parse.PayloadError) as exc:
            raise TransientError(f"SEAL {operation} answered something unreadable "
                                 f"({without_secrets(str(exc))[:200]}); retrying later") from None


def _chunks(path: Path) -> Iterator[bytes]:
    """The package, a chunk at a time, each sent only while the batch's lease holds:
    a node frozen mid-upload past its lease stops there, so SEAL gets a torn upload it
    drops, never the rest of one after another node took the batch over."""
    with path.open("rb") as handle:
        while chunk := handle.read(files.CHUNK):
            fencing.confirm_before_sending()
            yield chunk
            crashpoints.reached("seal:uploading")
