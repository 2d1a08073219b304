"""The HTTP side of Centrapay: one httpx client and one request budget per provider.

Every call waits its turn at the provider's budget (its
:class:`~folderseal.providers.http.RateLimiter`, or in a fleet the budget every node
shares through the store): request starts at least 60/max_requests_per_minute seconds
apart, across all its batches and threads (and nodes); a turn more than a second away is
:class:`Throttled`; so polls of many batches are spread out and the account's limit is
never reached by folderseal alone. Every call goes through
:meth:`CentrapayClient._call`, where foreign errors become folderseal's: 429 is
:class:`Throttled` with its ``Retry-After``, and the budget holds every call of the
account until then; a request that could not be built, or no
connection made, is :class:`NotSent` (the create surely never reached Centrapay); any
other network error, a 5xx or an answer that cannot be read is a plain
:class:`TransientError` (for the create: it may have been done). A 4xx refusal of the
create is :class:`NotSent` too (Centrapay did nothing) with what to fix. The create's
body holds a pre-signed URL, a read key to the records: no message built here quotes a
URL's query (:func:`~folderseal.core.redact.without_secrets`).
"""

from __future__ import annotations

from typing import Any

import httpx

from folderseal.core.errors import NotSent, Throttled, TransientError
from folderseal.core.redact import without_secrets
from folderseal.providers import http
from folderseal.providers.centrapay import parse
from folderseal.providers.centrapay.config import CentrapayProviderConfig
from folderseal.providers.http import RequestBudget, client, retry_after, without_query

THROTTLED_WAIT = 10.0    # seconds every call waits after a 429 without Retry-After


class CentrapayClient:
    def __init__(self, cfg: CentrapayProviderConfig, provider: str, budget: RequestBudget,
                 transport: httpx.BaseTransport | None = None,
                 timeout: float | None = None) -> None:
        self.cfg = cfg
        self.provider = provider
        self.budget = budget
        headers = {"Accept": "application/json", "X-Api-Key": cfg.read_api_key().decode()}
        self.http = client(cfg, headers, None, transport, timeout)

    def close(self) -> None:
        self.http.close()

    @property
    def _key_variable(self) -> str:
        return f"FOLDERSEAL_PROVIDERS__{self.provider.upper()}__API_KEY"

    # -- the calls -------------------------------------------------------------------------

    def create(self, batch_type: str, url: str, account_id: str, test: bool,
               hide: tuple[str, str] = ("", "")) -> parse.Batch:
        """``POST /api/batches``: Centrapay fetches the file at ``url`` and loads it.
        Creating is starting: an answer that is lost leaves it unknown whether it did.
        ``hide``: (a read key in ``url``, what messages show instead), for an answer
        that quotes the URL (a served folder's name is the key)."""
        body = {"type": batch_type, "url": url, "accountId": account_id, "test": test}
        secret, shown = hide
        try:
            response = self._call("POST", "/api/batches", "create", holder=without_query(url),
                                  json=body)
        except TransientError as exc:
            if not secret or secret not in str(exc):
                raise
            raise type(exc)(str(exc).replace(secret, shown),
                            retry_after=exc.retry_after) from None
        try:
            found = parse.batch(self._json(response, "create"))
        except parse.PayloadError as exc:
            raise TransientError(f"Centrapay answered the create unreadably ({exc}); it may "
                                 "have created the batch") from None
        if not found.id:
            raise TransientError("Centrapay answered the create without a batch id; it may "
                                 "have created the batch")
        return found

    def status(self, batch_id: str) -> parse.Batch | None:
        """The batch as Centrapay sees it; None when it answers 403 (its answer for a
        batch it does not know)."""
        response = self._call("GET", f"/api/batches/{batch_id}", "status", batch_id)
        if response.status_code == 403:
            return None
        try:
            return parse.batch(self._json(response, "status", batch_id))
        except parse.PayloadError as exc:
            raise TransientError(f"Centrapay answered the status of batch {batch_id} "
                                 f"unreadably ({exc}); asking again later") from None

    def probe(self, batch_id: str) -> tuple[int, str, str]:
        """The HTTP status, Location and message of a GET of ``batch_id``: it tests the
        address and the key (a batch that does not exist answers 403, a refused key 401)."""
        self.budget.wait()
        try:
            response = self.http.get(f"/api/batches/{batch_id}")
        except httpx.HTTPError as exc:
            raise http.failed(exc, "Centrapay check") from None
        return response.status_code, response.headers.get("Location", ""), \
            self._said(response)

    # -- the boundary ----------------------------------------------------------------------

    def _call(self, method: str, path: str, operation: str, batch: str = "",
              holder: str = "", **kwargs: Any) -> httpx.Response:
        """One request; everything up to its sending raises :class:`NotSent` (a
        :class:`Throttled` turn, kept for ``holder`` (else ``batch``), a request that
        cannot be built)."""
        self.budget.wait(f"{operation} {holder or batch}")
        response = http.send(self.http, method, path,
                             self._where(operation, batch), may_act=operation == "create", **kwargs)
        self._check(response, operation, batch)
        return response

    def _where(self, operation: str, batch: str) -> str:
        return http.where("Centrapay", operation, batch)

    def _check(self, response: httpx.Response, operation: str, batch: str) -> None:
        status = response.status_code
        if status < 300 or (operation == "status" and status == 403):
            return
        where = self._where(operation, batch)
        if status == 429:
            told = retry_after(response.headers.get("Retry-After"))
            wait = max(1.0, told if told is not None else THROTTLED_WAIT)
            # Every call of this account waits: the next ones would be refused too.
            self.budget.hold_for(wait)
            raise Throttled(f"{where} answered HTTP 429 (too many requests: another client "
                            "shares the account's limit, or max_requests_per_minute is above "
                            f"it); every call waits {wait:.0f} s", retry_after=wait)
        if status >= 500:
            raise TransientError(f"{where} answered HTTP {status}; retrying later")
        said = self._said(response)
        if status < 400:
            target = without_query(response.headers.get("Location", "?"))
            fix = (f"answered a redirect (HTTP {status} to {target}): set base_url to "
                   "Centrapay's host root, e.g. https://service.centrapay.com")
        elif status == 401 or (status == 403 and operation == "create"):
            fix = (f"refused the API key (HTTP {status}{': ' + said if said else ''}): "
                   f"check api_key_file, api_key or {self._key_variable}, and that the key "
                   f"may create batches for account_id {self.cfg.account_id}")
        elif status == 404:
            fix = (f"answered HTTP 404{' (' + said + ')' if said else ''}: set base_url to "
                   "Centrapay's host root (the paths start with /api/)")
        else:
            fix = (f"refused it (HTTP {status}{': ' + said if said else ''}): check "
                   f"batch_type {self.cfg.batch_type!r} and account_id "
                   f"{self.cfg.account_id!r}")
        if operation == "create":
            # Refused: Centrapay created nothing, so the create may be sent again.
            raise NotSent(f"{where} {fix}; nothing was created, and it is sent again later")
        # A poll refused: asked again until max_wait_seconds (the batch may be loading).
        raise TransientError(f"{where} {fix}; asking again later")

    @staticmethod
    def _said(response: httpx.Response) -> str:
        """What an answer says, URLs' queries and secrets masked: its message, else the
        start of its body."""
        response.read()
        try:
            said = parse.message(parse.decode(response.text))
        except (parse.PayloadError, UnicodeDecodeError):
            said = ""
        said = said or response.content[:parse.MESSAGE_MAX].decode("utf-8", "replace")
        return without_secrets(" ".join(said.split()))

    def _json(self, response: httpx.Response, operation: str, batch: str = "") -> Any:
        try:
            return parse.decode(response.text)
        except (parse.PayloadError, UnicodeDecodeError) as exc:
            raise parse.PayloadError(without_secrets(str(exc))[:200]) from None
