"""The HTTP side of Clevver: one httpx client per provider, errors translated once.

Every call goes through :meth:`ClevverClient._call`, the one boundary where foreign
errors become folderseal's: network errors, timeouts and 5xx are
:class:`TransientError`; 429 is :class:`Throttled` (carrying ``Retry-After``: Clevver
did nothing, and the batch waits its turn without an attempt counted); a request that
could not be built or a connection never made is :class:`NotSent` (the same call may be
made again without doubt, even the start); 401/403 and payment or quota refusals are
:class:`ProviderError` that say what to do; another 4xx is :class:`Refused`. An answer
that cannot be read is transient too (a proxy's error page, a half-written response).
An attach streams the file from its descriptor 64 KiB at a time (httpx's multipart
reads a file object in ``FileField.CHUNK_SIZE`` pieces and takes Content-Length from
``fstat``), so memory does not grow with the file.
"""

from __future__ import annotations

import io
import os
import re
from typing import IO, Any, cast

import httpx

from folderseal.core import crashpoints
from folderseal.core.errors import ProviderError, Throttled, TransientError
from folderseal.core.redact import without_secrets
from folderseal.providers import http
from folderseal.providers.clevver import parse
from folderseal.providers.clevver.config import ClevverProviderConfig
from folderseal.providers.http import basic_auth, client, retry_after, without_query

THROTTLED_WAIT = 10.0    # seconds a call waits after a 429 without Retry-After
# A refusal whose message says the account ran out of money or limits is the account's,
# not the file's (HTTP 402 always is). Whole phrases only: a refusal that names a file
# such as credit_note.pdf or balance-2026.xlsx is that file's.
QUOTA = re.compile(
    r"\bquota (?:exceeded|reached|exhausted|limit)|\b(?:exceeded|over) (?:the |your |its )?"
    r"quota\b|\bpayment (?:required|failed|declined|overdue)\b|\binsufficient "
    r"(?:funds|credits?|balance)\b|\bout of credits?\b|\bno credits? (?:left|remaining)\b|"
    r"\b(?:subscription|plan|trial) (?:has )?(?:expired|ended|inactive|cancell?ed)\b|"
    r"\bcredit limit (?:reached|exceeded)\b", re.IGNORECASE)


class Refused(ProviderError):
    """A 4xx other than the account's (not 401/403, not payment or quota): Clevver
    refused this request, e.g. one file it will not take."""


class _Body(io.RawIOBase):
    """A document's open file as httpx's multipart reads it; the crash point
    ``clevver:attaching`` fires once its first chunk is on its way."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.sent = 0

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd   # httpx takes Content-Length from fstat (no chunked encoding)

    def readinto(self, buffer: Any) -> int:
        if self.sent:
            crashpoints.reached("clevver:attaching")
        count = os.readv(self.fd, [buffer])
        self.sent += count
        return count


class ClevverClient:
    def __init__(self, cfg: ClevverProviderConfig, provider: str,
                 transport: httpx.BaseTransport | None = None,
                 timeout: float | None = None) -> None:
        self.cfg = cfg
        self.provider = provider
        token = cfg.read_api_token()
        headers: dict[str, str] = {"Accept": "application/json"}
        auth: httpx.Auth | None = None
        if token is not None and cfg.auth == "bearer":
            headers["Authorization"] = f"Bearer {token.decode()}"
        elif token is not None and cfg.auth == "header":
            headers[cfg.api_token_header] = token.decode()
        elif token is not None and cfg.auth == "basic":
            auth = basic_auth(cfg.username, token)
        self.http = client(cfg, headers, auth, transport, timeout)

    def close(self) -> None:
        self.http.close()

    # -- the calls -----------------------------------------------------------------

    def create(self) -> parse.BatchInfo:
        info = parse.batch(self._json(self._call("POST", "/api/batches", "create"), "create"))
        if not info.id:
            raise TransientError("Clevver create answered without a batch id; retrying later")
        return info

    def attach(self, batch_id: str, name: str, fd: int) -> parse.Asset:
        """Send one file (open at ``fd``) as the multipart field ``file``; its asset."""
        body = cast(IO[bytes], _Body(fd))
        response = self._call("POST", f"/api/batches/{batch_id}/files", "attach", batch_id,
                              files={"file": (name, body)})
        try:
            return parse.asset(self._json(response, "attach", batch_id))
        except parse.PayloadError as exc:
            raise TransientError(f"Clevver attach to batch {batch_id} answered without a "
                                 f"readable asset ({exc}); retrying later") from None

    def start(self, batch_id: str) -> parse.BatchInfo:
        response = self._call("POST", f"/api/batches/{batch_id}/start", "start", batch_id)
        return parse.batch(self._json(response, "start", batch_id))

    def status(self, batch_id: str) -> parse.BatchInfo | None:
        """The batch as Clevver sees it; None if Clevver does not know it (404, 410)."""
        response = self._call("GET", f"/api/batches/{batch_id}", "status", batch_id,
                              missing_ok=True)
        if response.status_code in (404, 410):
            return None
        return parse.batch(self._json(response, "status", batch_id))

    def asset(self, asset_id: str) -> parse.Asset | None:
        """A stored file's receipt; None if Clevver does not know the asset (404, 410)."""
        response = self._call("GET", f"/api/files/{asset_id}", "receipt", missing_ok=True)
        if response.status_code in (404, 410):
            return None
        try:
            return parse.asset(self._json(response, "receipt"))
        except parse.PayloadError as exc:
            raise TransientError(f"Clevver answered the receipt of asset {asset_id} "
                                 f"unreadably ({exc}); retrying later") from None

    def probe(self) -> tuple[int, str, str]:
        """The HTTP status, Location and message of the list of active batches: it tests
        the address and the token."""
        try:
            response = self.http.get("/api/batches")
        except httpx.HTTPError as exc:
            raise http.failed(exc, "Clevver check") from None
        return response.status_code, response.headers.get("Location", ""), \
            self._said(response)

    # -- the boundary ----------------------------------------------------------------

    def _call(self, method: str, path: str, operation: str, batch: str = "",
              missing_ok: bool = False, **kwargs: Any) -> httpx.Response:
        response = http.send(self.http, method, path,
                             http.where("Clevver", operation, batch), may_act=False, **kwargs)
        if not (missing_ok and response.status_code in (404, 410)):
            self._check(response, operation, batch)
        return response

    def _check(self, response: httpx.Response, operation: str, batch: str) -> None:
        status = response.status_code
        if status < 300:
            return
        where = http.where("Clevver", operation, batch)
        if status == 429:
            wait = retry_after(response.headers.get("Retry-After"))
            raise Throttled(f"{where} answered HTTP 429 (too many requests); nothing was "
                            "done, and it is sent again "
                            f"{'after ' + format(wait, '.0f') + ' s' if wait else 'later'}",
                            retry_after=max(1.0, wait if wait is not None else THROTTLED_WAIT))
        if status >= 500:
            raise TransientError(f"{where} answered HTTP {status}; retrying later")
        kw: dict[str, Any] = {"provider": self.provider, "operation": operation, "batch": batch}
        if status < 400:
            target = without_query(response.headers.get("Location", "?"))
            raise ProviderError(f"http_{status}", f"{where} answered a redirect (HTTP {status} "
                                f"to {target}); set base_url to Clevver's host root, e.g. "
                                "https://clevver.org", **kw)
        said = self._said(response)
        if status in (401, 403):
            variable = f"FOLDERSEAL_PROVIDERS__{self.provider.upper()}__API_TOKEN"
            raise ProviderError(f"http_{status}", f"{where} refused the API token (HTTP "
                                f"{status}{': ' + said if said else ''}): check api_token, "
                                f"api_token_file or {variable}, and auth", **kw)
        if status == 402 or QUOTA.search(said):
            raise ProviderError("quota", f"{where} was refused for payment or quota (HTTP "
                                f"{status}: {said or 'no message'}): top up or raise the "
                                "Clevver account's limit, then run `folderseal retry`", **kw)
        raise Refused(f"http_{status}", f"{where} answered HTTP {status}"
                      f"{': ' + said if said else ''}", **kw)

    @staticmethod
    def _said(response: httpx.Response) -> str:
        """What an answer says, secrets masked: its message, else the start of its body."""
        response.read()
        try:
            said = parse.message(parse.decode(response.text))
        except (parse.PayloadError, UnicodeDecodeError):
            said = ""
        said = said or response.content[:parse.MESSAGE_MAX].decode("utf-8", "replace").strip()
        return without_secrets(said)

    def _json(self, response: httpx.Response, operation: str, batch: str = "") -> Any:
        try:
            return parse.decode(response.text)
        except (parse.PayloadError, UnicodeDecodeError) as exc:
            where = http.where("Clevver", operation, batch)
            raise TransientError(f"{where} answered something unreadable "
                                 f"({without_secrets(str(exc))[:200]}); retrying later") from None
