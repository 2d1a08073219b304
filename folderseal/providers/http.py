"""What the HTTP providers share: their TLS context and how answers are read for
retry and for messages (a ``Retry-After``; a redirect's target fit to print)."""

from __future__ import annotations

import email.utils
import ssl
import time

from folderseal.configbase import HttpProvider


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
