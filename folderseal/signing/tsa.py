"""RFC 3161 time-stamping shared by the PAdES and CAdES signers.

A time-stamp server that fails is not the file's fault, so its failures become
``TransientError`` (retry later) rather than ``FileRejected``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper, TimestampRequestError

from folderseal.core.errors import ConfigError, TransientError

__all__ = ["TSA_TIMEOUT_SECONDS", "TSA_TOKEN_ALLOWANCE", "run_with_tsa", "timestamper_for"]

TSA_TIMEOUT_SECONDS = 15
# Raw (DER) bytes reserved for a signature time-stamp token in a PDF. Real tokens are
# 2-8 KB (a CMS SignedData with the TSA's certificate and often its chain); 32 KiB
# leaves room for long chains. pades.sign_pdf still retries if a token is larger.
TSA_TOKEN_ALLOWANCE = 32 * 1024

T = TypeVar("T")


def timestamper_for(url: str) -> TimeStamper | None:
    """An HTTP time-stamp client for ``url``, or None when no URL is configured."""
    if not url:
        return None
    if urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"time-stamp URL {_redacted(url)!r} must start with http:// or https://")
    return HTTPTimeStamper(url, timeout=TSA_TIMEOUT_SECONDS)


def run_with_tsa(coro: Coroutine[Any, Any, T], url: str) -> T:
    """Run a signing coroutine to completion; a time-stamp failure becomes TransientError."""
    try:
        return asyncio.run(coro)
    except TimestampRequestError as exc:
        where = _redacted(url)
        raise TransientError(
            f"time-stamp server {where} failed ({exc.args[0] if exc.args else exc}); "
            "the file will be retried"
        ) from exc


def _redacted(url: str) -> str:
    """The URL without userinfo, query or fragment, which may carry credentials."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable URL)"
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
