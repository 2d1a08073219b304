"""What the HTTP providers share: their client (TLS, timeouts, no redirects), Basic
authentication with its secret masked, a request limiter and the seam through which a
fleet shares it (:class:`RequestBudget`, :class:`Limited`), sending one request with
what its failure means (:func:`send`), and how answers are read for retry and for
messages (a ``Retry-After``; a redirect's target fit to print)."""

from __future__ import annotations

import base64
import email.utils
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx

from folderseal.core import fencing
from folderseal.core.configbase import HttpProvider
from folderseal.core.errors import NotSent, Throttled, TransientError
from folderseal.core.redact import REDACTOR, without_secrets

# Failures before a connection was made (or while none was free): nothing was sent.
NOT_CONNECTED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                 httpx.UnsupportedProtocol)


def client(cfg: HttpProvider, headers: dict[str, str], auth: httpx.Auth | None,
           transport: httpx.BaseTransport | None, timeout: float | None) -> httpx.Client:
    """A client for ``cfg.base_url``: its TLS settings, ``timeout`` (else the configured
    one), and no redirects followed (one means base_url is wrong, and would carry the
    credentials elsewhere)."""
    return httpx.Client(
        base_url=cfg.base_url, headers=headers, auth=auth, transport=transport,
        verify=tls_context(cfg), timeout=httpx.Timeout(timeout or cfg.timeout_seconds),
        follow_redirects=False)


def where(provider: str, operation: str, batch: str = "") -> str:
    """How a message names a call: ``Clevver start of batch 42``."""
    return f"{provider} {operation}{' of batch ' + batch if batch else ''}"


def send(http: httpx.Client, method: str, path: str, what: str, *, may_act: bool,
         **options: Any) -> httpx.Response:
    """Send one request; ``what`` names it in messages.

    A request that cannot be built, or a connection that was never made, raises
    :class:`NotSent`: nothing reached the provider, so even an irrevocable call may be
    made again. Any other transport failure raises :class:`TransientError`, which says
    the call may have been done when ``may_act``."""
    try:
        request = http.build_request(method, path, **options)
    except Exception as exc:  # noqa: BLE001 - whatever it is, nothing was sent
        raise NotSent(without_secrets(f"{what} could not be made ({type(exc).__name__}: "
                                      f"{exc}); nothing was sent, and it is tried again "
                                      "later")) from None
    fencing.confirm_before_sending()  # a budget's wait or a pause may outlast the lease
    try:
        return http.send(request)
    except httpx.HTTPError as exc:
        raise failed(exc, what, may_act) from None


def failed(exc: httpx.HTTPError, what: str, may_act: bool = False) -> TransientError:
    """The error for a call that failed in transport: NotSent when no connection was made."""
    if isinstance(exc, NOT_CONNECTED):
        return NotSent(without_secrets(f"{what} failed: {type(exc).__name__}: {exc}"))
    after = "; it may have been done" if may_act else ""
    return TransientError(without_secrets(f"{what} failed: {type(exc).__name__}: {exc}{after}"))


def basic_auth(username: str, secret: bytes) -> httpx.BasicAuth:
    """HTTP Basic with ``secret`` as the password. The header carries it in base64: that
    form is masked too, so an echo of the header shows neither."""
    REDACTOR.add(base64.b64encode(username.encode() + b":" + secret))
    return httpx.BasicAuth(username, secret.decode())


def tls_context(cfg: HttpProvider) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cfg.ca_bundle) if cfg.ca_bundle else None)
    if cfg.client_certificate is not None and cfg.client_key is not None:
        context.load_cert_chain(str(cfg.client_certificate), str(cfg.client_key))
    if not cfg.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def without_query(url: str) -> str:
    """A redirect's target fit to print: its query and fragment may hold a key (a
    pre-signed link), and its user information a password, so they are left out."""
    head = url.split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = head.partition("://")
    if not sep:
        return head  # a relative link has no user information
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RequestBudget(Protocol):
    """Where a provider's calls take their turns: :class:`RateLimiter` in this process,
    or, in a fleet on PostgreSQL, the store's budget shared by every node (the daemon
    hands it over through :class:`Limited`; providers never import the store)."""

    def wait(self, holder: str = "") -> float:
        """Wait for this call's turn (the seconds waited). A turn far off raises
        :class:`Throttled` with the seconds until it, kept for ``holder``; a turn that
        cannot be had raises :class:`NotSent`: no call ever goes out without one."""

    def hold_for(self, seconds: float) -> None:
        """No call starts for ``seconds`` from now (a 429's Retry-After)."""

    def close(self) -> None:
        """Let go of what it holds (a shared budget's connection)."""


@dataclass(frozen=True, slots=True)
class RequestLimit:
    """A provider's request limit, as the daemon asks for a budget shared by the fleet."""

    key: str            # the same on every node: "<kind>:<provider name>"
    per_minute: float
    what: str           # how messages name the provider: "Centrapay (loads)"


@runtime_checkable
class Limited(Protocol):
    """A provider whose calls wait at a request budget. The daemon of a fleet (a
    PostgreSQL store) swaps in the budget every node shares, before the provider
    starts; without it the provider keeps its own :class:`RateLimiter`."""

    request_limit: RequestLimit

    def use_budget(self, budget: RequestBudget) -> None: ...


class RateLimiter:
    """Spaces request starts ``60 / per_minute`` seconds apart, whichever thread makes
    them, so that the account's limit is never reached by folderseal alone.

    Every caller reserves the next free start under the lock, first come first served.
    A turn within :data:`MAX_SLEEP` seconds is slept until. A turn further away is kept
    as a ticket for its ``holder`` (a batch) and the caller gets :class:`Throttled`
    with the seconds until it (the state machine releases the batch until then, rather than
    holding a batch thread); when the holder asks again, its ticket is its turn, so later
    callers never overtake it and no reserved start is wasted. :meth:`hold_until` holds
    every call until a time (a 429's Retry-After)."""

    MAX_SLEEP = 1.0
    MAX_TICKETS = 10_000   # holders that never came back (their batch ended elsewhere)

    def __init__(self, per_minute: float, what: str = "the provider",
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.per_minute = per_minute
        self.spacing = 60.0 / per_minute
        self.what = what
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0       # the first start not reserved
        self._tickets: OrderedDict[str, float] = OrderedDict()

    def wait(self, holder: str = "") -> float:
        """Wait for this request's turn (the seconds waited), or raise :class:`Throttled`
        when it is more than MAX_SLEEP seconds away (kept for ``holder``)."""
        with self._lock:
            now = self.clock()
            start = self._tickets.pop(holder, None) if holder else None
            # A ticket is used even when its holder comes back a little late (the
            # state machine wakes batches at its own pace); one a minute old is void.
            if start is None or start < now - 60.0:
                start = max(now, self._next)
                self._next = start + self.spacing
            if start - now > self.MAX_SLEEP:
                if holder:
                    self._tickets[holder] = start
                    if len(self._tickets) > self.MAX_TICKETS:
                        self._tickets.popitem(last=False)
                raise Throttled(f"{self.what}'s request budget (max_requests_per_minute = "
                                f"{self.per_minute:g}) is spent for now; this call waits "
                                f"{start - now:.0f} s for its turn", retry_after=start - now)
        if start > now:
            self.sleep(start - now)
        return max(0.0, start - now)

    def hold_for(self, seconds: float) -> None:
        """No call starts for ``seconds`` from now (:meth:`hold_until`)."""
        self.hold_until(self.clock() + seconds)

    def close(self) -> None:
        """Nothing to let go of: the limiter is this process's memory."""

    def hold_until(self, when: float) -> None:
        """No call starts before ``when`` (on this limiter's clock). Tickets before it
        move past it in their order, still ahead of every later caller."""
        with self._lock:
            turn = when
            for holder, start in sorted(self._tickets.items(), key=lambda item: item[1]):
                self._tickets[holder] = max(start, turn)
                turn = self._tickets[holder] + self.spacing
            self._next = max(self._next, turn)
