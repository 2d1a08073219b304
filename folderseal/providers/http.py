"""What the HTTP providers share: their client (TLS, timeouts, no redirects), Basic
authentication with its secret masked, and how answers are read for retry and for
messages (a ``Retry-After``; a redirect's target fit to print)."""

from __future__ import annotations

import base64
import email.utils
import ssl
import time

import httpx

from folderseal.configbase import HttpProvider
from folderseal.redact import REDACTOR


def client(cfg: HttpProvider, headers: dict[str, str], auth: httpx.Auth | None,
           transport: httpx.BaseTransport | None, timeout: float | None) -> httpx.Client:
    """A client for ``cfg.base_url``: its TLS settings, ``timeout`` (else the configured
    one), and no redirects followed (one means base_url is wrong, and would carry the
    credentials elsewhere)."""
    return httpx.Client(
        base_url=cfg.base_url, headers=headers, auth=auth, transport=transport,
        verify=tls_context(cfg), timeout=httpx.Timeout(timeout or cfg.timeout_seconds),
        follow_redirects=False)


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
