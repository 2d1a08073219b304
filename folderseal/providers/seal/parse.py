"""Reading SEAL's answers, tolerantly: pure functions over decoded JSON.

SEAL's documentation contradicts itself, so the parsers accept every form seen:
ids, counters and statuses as numbers or strings (``"2123"``, ``2123``); booleans as
``"true"``/``"false"`` or real booleans; a document's name as ``fileName`` or
``name``; dates with or without a zone. Status *names* are trusted; numeric codes
are mapped through a table (two tables were published, numbering differently), so a
decision is never made from a number when a name is available. An unknown status is
kept as it came, and callers treat it as "still running".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from folderseal.providers.payload import PayloadError as PayloadError
from folderseal.providers.seal.config import SEAL_STATUS_CODES


@dataclass(frozen=True, slots=True)
class RemoteDocument:
    id: str
    name: str
    signed: bool | None
    success: bool | None        # signingResult_Success; None when absent
    reason: str = ""            # why SEAL did not sign it, if it said ("field: text")


@dataclass(frozen=True, slots=True)
class RemoteBatchInfo:
    id: str
    status: str                 # an upper-case name ("CLOSED"), or "UNKNOWN(<raw>)"
    created: datetime | None
    documents: tuple[RemoteDocument, ...]
    named: bool = True          # the status came as a name (numbers are a guess)


def text_id(value: Any, what: str = "id") -> str:
    """An id as text: ``2123``, ``"2123"`` and ``" 2123 "`` are all ``"2123"``."""
    if isinstance(value, bool) or value is None:
        raise PayloadError(f"{what} is missing or not an id: {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text:
        raise PayloadError(f"{what} is empty")
    return text


def boolean(value: Any) -> bool | None:
    """``true``/``"true"``/``"True"``/``1`` → True; the same for false; else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
    return None


def status_name(value: Any, codes: list[str] | None = None) -> str:
    """A status name from a name or a numeric code (mapped through ``codes``)."""
    table = codes or SEAL_STATUS_CODES
    if isinstance(value, str) and value.strip() and not value.strip().lstrip("-").isdigit():
        return value.strip().upper().replace(" ", "_")
    try:
        code = int(str(value).strip())
    except (TypeError, ValueError):
        return f"UNKNOWN({value!r})"
    if 0 <= code < len(table):
        return table[code].upper()
    return f"UNKNOWN({value!r})"


def timestamp(value: Any) -> datetime | None:
    """``"2023-01-01 12:00:00"`` (taken as UTC) or ISO 8601 with a zone; None if absent."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# SEAL documents no field giving why a document was not signed; these names, seen or
# likely, are taken as its reason. An allow-list: a field such as "resultUrl" may hold a
# pre-signed link (a read key), which must never reach a record or the log.
REASON_FIELDS = ("signingResult_Message", "signingResult_Error", "signingResult_Reason",
                 "errorMessage", "errorReason", "failureReason", "error", "message", "reason")
REASON_MAX = 500
_URL_WITH_QUERY = re.compile(r"[a-z][a-z0-9+.-]*://\S*[?#]", re.IGNORECASE)


def reason(data: dict[str, Any]) -> str:
    """SEAL's own word on a document, if it gives one: the first text field of
    :data:`REASON_FIELDS` ("field: text"), unless it holds a link with a query."""
    for key in REASON_FIELDS:
        value = data.get(key)
        if isinstance(value, str) and value.strip() and not _URL_WITH_QUERY.search(value):
            return f"{key}: {value.strip()[:REASON_MAX]}"
    return ""


def document(data: Any) -> RemoteDocument:
    """A document; one without a name is kept nameless (it matches no file we sent)."""
    if not isinstance(data, dict):
        raise PayloadError(f"a document is not an object: {type(data).__name__}")
    name = data.get("fileName", data.get("name"))
    if not isinstance(name, str):
        name = ""
    return RemoteDocument(id=text_id(data.get("id"), "document id"), name=name,
                          signed=boolean(data.get("signed")),
                          success=boolean(data.get("signingResult_Success")),
                          reason=reason(data))


def batch(data: Any, codes: list[str] | None = None) -> RemoteBatchInfo:
    """A batch as CreateBatch, AcceptBatch, BatchStatus or BatchDeleteCache return it."""
    if not isinstance(data, dict):
        raise PayloadError(f"the answer is not a JSON object: {type(data).__name__}")
    documents = data.get("documents") or []
    if not isinstance(documents, list):
        raise PayloadError("documents is not a list")
    raw = data.get("status")
    return RemoteBatchInfo(id=text_id(data.get("id"), "batch id"),
                           status=status_name(raw, codes),
                           created=timestamp(data.get("creationDate")),
                           documents=tuple(document(d) for d in documents),
                           named=isinstance(raw, str) and not raw.strip().lstrip("-").isdigit())
