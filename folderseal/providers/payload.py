"""Reading providers' JSON answers, tolerantly: what every provider's ``parse`` module
shares. Each ``parse`` is pure functions over decoded JSON and raises
:class:`PayloadError` for what cannot be read as the API documents; its client turns
that into a transient failure."""

from __future__ import annotations

import json
import re
from typing import Any

_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


class PayloadError(ValueError):
    """An answer that cannot be read as what the API documents."""


def decode(text: str) -> Any:
    """JSON, forgiving a trailing comma before ``}`` or ``]`` (published examples of
    provider APIs have them)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return json.loads(_TRAILING_COMMA.sub(r"\1", text))
    except ValueError as exc:
        raise PayloadError(f"not JSON: {exc}") from None


def text(value: Any) -> str:
    """A string field as text ("" when absent or not a scalar)."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() if isinstance(value, str | int | float) else ""
