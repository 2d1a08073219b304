"""One redactor for everything that leaves the process.

Secrets (certificate passwords, API keys) are registered here when the configuration
and the files it names are read. Log events, sidecars, error records, ``status``
output and exception messages printed by the command line all pass through
:data:`REDACTOR`, which replaces every registered secret by ``***`` and blanks the
values of keys whose names say they hold a secret. Registering the value, not only
the key, catches a secret that turns up somewhere unexpected (an error body that
echoes a header, a validation message that quotes its input).

Every provider's error messages are built through :func:`without_secrets`, the one
masker: registered secrets, and any URL's query and fragment (a pre-signed URL's is a
read key to what it names) or a signature parameter quoted alone.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(r"pass(word|phrase)?|api[_-]?key|secret|token|authorization", re.I)
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words
# The query of a pre-signed URL (S3's, and others like it) is a read key to what it
# names: masked whole wherever such a URL turns up, though none is ever logged knowingly.
_SIGNED_QUERY = re.compile(
    r"\?[^\s\"'<>]*(?:X-Amz-Signature|X-Amz-Credential|Signature|AWSAccessKeyId)="
    r"[^\s\"'<>]*?(?=[:;,.)\]]?(?:[\s\"'<>]|$))")


# Any URL's query and fragment, in a provider's message: never needed to act on it.
_URL_QUERY = re.compile(r"(https?://[^\s?#\"'<>]*)[?#][^\s\"'<>]*", re.IGNORECASE)
# Signature parameters outside a URL (an error that quotes the query alone).
_SIGNED_PARAM = re.compile(r"((?:X-Amz-(?:Signature|Credential|Security-Token)|Signature|"
                           r"AWSAccessKeyId)=)[^&\s\"'<>]+", re.IGNORECASE)


class Redactor:
    """Replaces registered secrets in text and in nested data."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, secret: str | bytes | None) -> None:
        """Remember a secret value so it is masked wherever it appears."""
        if secret is None:
            return
        if isinstance(secret, bytes):
            secret = secret.decode("utf-8", "replace")
        values = {secret, secret.strip()}
        with self._lock:
            known = set(self._secrets)
            known.update(v for v in values if len(v) >= _MIN_SECRET_LENGTH)
            # Longest first, so a secret that contains another is masked whole.
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def text(self, value: str) -> str:
        """Return ``value`` with every registered secret masked."""
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        if "Signature=" in value or "X-Amz-" in value or "AWSAccessKeyId=" in value:
            value = _SIGNED_QUERY.sub("?" + MASK, value)
        return value

    def data(self, value: Any) -> Any:
        """Return a copy of nested dicts, lists and strings with secrets masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                key: MASK
                if isinstance(key, str) and _secret_key(key) and item
                else self.data(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        return value


@functools.lru_cache(maxsize=1024)  # the same few keys, in every sidecar and log event
def _secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


REDACTOR = Redactor()


def without_secrets(text: str) -> str:
    """``text`` fit for a message: every registered secret (API keys, passwords), every
    URL's query and fragment (``https://host/path?…``) and every signature parameter
    quoted alone (``X-Amz-Signature=…``) masked."""
    return REDACTOR.text(_SIGNED_PARAM.sub(r"\1…", _URL_QUERY.sub(r"\1?…", text)))
