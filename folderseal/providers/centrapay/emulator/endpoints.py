"""The emulator's HTTP side: Centrapay's two endpoints, its API key, its rate limit (429
with Retry-After), and the journal line of a request fault that hit a create."""

from __future__ import annotations

import hmac
import json
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from folderseal.providers.centrapay.emulator.batches import Registry
from folderseal.providers.centrapay.emulator.fetcher import Fetcher
from folderseal.providers.centrapay.emulator.report import BATCH_TYPES
from folderseal.providers.emulation.faults import RequestFaults
from folderseal.providers.emulation.httpd import ApiError, EmulatorApp, EmulatorHandler, Reply
from folderseal.providers.http import without_query

MAX_CREATE_BODY = 64 * 1024
RATE_WINDOW = 60.0


class RateLimit:
    """At most ``per_minute`` admitted calls in any 60 seconds (0: no limit)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self) -> float | None:
        """None when the call is admitted (and counted), else the seconds to wait."""
        if not self.per_minute:
            return None
        now = time.monotonic()
        with self._lock:
            while self._calls and now - self._calls[0] >= RATE_WINDOW:
                self._calls.popleft()
            if len(self._calls) >= self.per_minute:
                return self._calls[0] + RATE_WINDOW - now
            self._calls.append(now)
            return None


@dataclass(kw_only=True)
class CentrapayApp(EmulatorApp):
    """What the Centrapay request handlers share."""

    registry: Registry
    fetcher: Fetcher
    limit: RateLimit


class CentrapayHandler(EmulatorHandler):
    """Centrapay's endpoints."""

    server_version = "CentrapayEmulator/1.0"
    _create_url: str | None = None  # the url of this request's create (for create_fault)

    @property
    def app(self) -> CentrapayApp:
        app: CentrapayApp = self.server.app  # type: ignore[assignment]
        return app

    def error(self, status: int, message: str, **headers: str) -> Reply:
        return Reply(status, {"message": message}, dict(headers))

    def authorized(self) -> bool:
        key = self.app.api_key
        return key is None or hmac.compare_digest(
            (self.headers.get("X-Api-Key") or "").strip().encode("utf-8"), key.encode("utf-8"))

    def unauthorized(self) -> Reply:
        return self.error(401, "Unauthorized: send the API key as X-Api-Key")

    def admit(self, route: str) -> Reply | None:
        wait = self.app.limit.admit()
        if wait is None:
            return None
        retry_after = max(1, math.ceil(wait))
        self.app.registry.journal.append({"event": "rate_limited", "route": route,
                                          "retry_after": retry_after, "at": time.time()})
        return self.error(429, f"more than {self.app.limit.per_minute} requests a minute; "
                               f"retry after {retry_after} s", **{"Retry-After": str(retry_after)})

    def faulted(self, route: str, faults: RequestFaults, done: Reply | None) -> None:
        if route != "create_batch":
            return
        batch = None
        kinds = ([faults.outcome] if faults.outcome else []) + (["slow"] if faults.slow else [])
        if done is None:  # not served: the body (unread) names the file all the same
            self._create_url = None
            self._read_create_url()
        elif done.status == 200:
            batch = str(done.payload["id"])
        self.app.registry.journal.append({
            "event": "create_fault",
            "kind": "+".join(kinds),
            "created": batch is not None, "batch": batch, "url": self._create_url,
            "at": time.time()})

    def _read_create_url(self) -> None:
        try:
            body = json.loads(self.body.read_all(MAX_CREATE_BODY))
        except (ValueError, ConnectionError, TimeoutError):
            return
        url = body.get("url") if isinstance(body, dict) else None
        if isinstance(url, str):
            self._create_url = without_query(url)

    def answer(self, view: dict[str, Any]) -> Reply:
        """A Batch; under the ``quirky`` fault with ``totalCount`` and extra fields."""
        if self.app.faults.draw("quirky"):
            self.note_fault("quirky")
            view = {("totalCount" if k == "count" else k): v for k, v in view.items()}
            view |= self.app.registry.quirky_extras(view["id"])
        return Reply(200, view)

    # --- endpoints --------------------------------------------------------------

    def create_batch(self, arg: str | None, query: dict[str, str]) -> Reply:
        self._create_url = None
        try:
            body = json.loads(self.body.read_all(MAX_CREATE_BODY))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object {type, url, accountId, test?}")
        missing = [k for k in ("type", "url", "accountId")
                   if not isinstance(body.get(k), str) or not body[k]]
        if missing:
            raise ApiError(400, f"missing or empty field(s): {', '.join(missing)}; send "
                                f"{{type, url, accountId, test?}}")
        batch_type, url = body["type"], body["url"]
        self._create_url = without_query(url)
        if batch_type not in BATCH_TYPES:
            raise ApiError(400, f"unknown batch type {batch_type[:80]!r}; known types: "
                                f"{', '.join(BATCH_TYPES)}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ApiError(400, "url must be an absolute http or https URL")
        test = body.get("test", False)
        if not isinstance(test, bool):
            raise ApiError(400, "test must be true or false")
        batch = self.app.registry.create(batch_type, url, body["accountId"], test)
        view = batch.view()  # before the fetch can change it: a create shows "created"
        self.app.fetcher.submit(batch)
        return self.answer(view)

    def get_batch(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.answer(self.app.registry.poll(arg))


CentrapayHandler.routes = [
    ("POST", re.compile(r"/api/batches"), CentrapayHandler.create_batch),
    ("GET", re.compile(r"/api/batches/([^/]+)"), CentrapayHandler.get_batch),
]
