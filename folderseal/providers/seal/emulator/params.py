"""Reading the request's parameters: batch and process ids, and a loggable path.

Ids arrive as path segments, query values or JSON (number or string, as the API's own
answers mix both); all of them end up as positive integers or an ApiError 400.
"""

from __future__ import annotations

import json
import re
from urllib.parse import SplitResult, parse_qsl

from folderseal.providers.emulation.httpd import ApiError

__all__ = ["INT32_MAX", "batch_id_in_json", "loggable", "parse_batch_id", "positive_int"]

INT32_MAX = 2**31 - 1  # processId is an int32 in the documentation


def positive_int(text: str | None) -> int | None:
    """``text`` as a positive integer (plain digits only), or None."""
    if text is None or not re.fullmatch(r"[0-9]{1,18}", text):
        return None
    value = int(text)
    return value if value > 0 else None


def parse_batch_id(text: str | None) -> int:
    """``text`` as a batch id, or ApiError 400."""
    value = positive_int(text)
    if value is None:
        raise ApiError(400, f"batchId {text!r} is not a positive integer")
    return value


def batch_id_in_json(raw: bytes) -> object:
    """The batchId of a JSON body: ``{"batchId": N}`` (any key case), or a bare N."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "the body is not JSON; send {\"batchId\": N}") from None
    if isinstance(body, dict):
        for key, value in body.items():
            if key.lower() == "batchid":
                body = value
                break
        else:
            raise ApiError(400, 'the JSON body has no "batchId"')
    # bool is an int in Python, but true is no batch id.
    if isinstance(body, bool) or not isinstance(body, int | str):
        raise ApiError(400, f"batchId {body!r} is not an integer")
    return body


def loggable(split: SplitResult) -> str:
    """The path for the log: query values are hidden, except the batch id."""
    if not split.query:
        return split.path
    shown = [
        f"{name}={value if name == 'batchId' else '***'}"
        for name, value in parse_qsl(split.query, keep_blank_values=True)
    ]
    return f"{split.path}?{'&'.join(shown)}"
