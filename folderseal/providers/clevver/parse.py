"""Reading Clevver's answers, tolerantly: pure functions over decoded JSON.

Clevver's documentation is loose, so the parsers accept every form seen or likely: an
envelope ``{"status", "message", "data"}`` with ``message`` inside ``data`` or beside it,
or no envelope at all; ``progress`` as a number or a string (``"10.3"``, ``"97%"``);
ids as strings or numbers; unknown fields ignored; a trailing comma before ``}`` or
``]`` (the published examples have them). Status names are kept as they came (lower
case); :func:`remote_state` maps the known ones, and callers treat an unknown one as
"still working".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from folderseal.providers import Remote
from folderseal.providers.payload import PayloadError as PayloadError
from folderseal.providers.payload import decode as decode
from folderseal.providers.payload import text as text

# Clevver's batch statuses, as documented; it documents no failure status.
STATES = {"created": Remote.UPLOADED,    # open: files may be attached (its status does not
          #                               say whether any are: the ledger's notes do)
          "processing": Remote.RUNNING,   # started
          "delivered": Remote.CLOSED}
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MESSAGE_MAX = 500


@dataclass(frozen=True, slots=True)
class BatchInfo:
    id: str                  # "" when the answer left it out
    status: str              # lower case, as Clevver named it ("" when absent)
    progress: float | None   # 0–100
    message: str = ""


@dataclass(frozen=True, slots=True)
class Asset:
    """A file attached to a batch; once stored, its receipt (txid, urls)."""

    id: str
    checksum: str            # lower-case hex, "" when absent
    txid: str                # "" until Clevver has stored it
    url: str = ""
    forever_url: str = ""
    stored_on: str = ""
    updated_at: str = ""
    duplicate: bool | None = None
    status: str = ""
    name: str = ""
    file_size: int | None = None

    def receipt(self) -> dict[str, Any]:
        """The sidecar's ``receipt``, in Clevver's own field names."""
        return {"asset_id": self.id, "checksum": self.checksum, "txid": self.txid,
                "url": self.url, "forever_url": self.forever_url, "stored_on": self.stored_on,
                "updated_at": self.updated_at, "duplicate": self.duplicate}





def envelope(data: Any) -> tuple[Any, str]:
    """The payload of an answer and its message, wherever the message was put."""
    if isinstance(data, dict) and "data" in data:
        payload = data["data"]
        message = text(data.get("message"))
        if not message and isinstance(payload, dict):
            message = text(payload.get("message"))
        return payload, message
    return data, text(data.get("message")) if isinstance(data, dict) else ""


def message(data: Any) -> str:
    """What an error answer says: its message (inside or beside ``data``), else its
    ``error``/``errors``; "" when it says nothing readable."""
    payload, said = envelope(data)
    if said:
        return said[:MESSAGE_MAX]
    for source in (data, payload):
        if isinstance(source, dict):
            for key in ("error", "errors", "detail"):
                value = source.get(key)
                if isinstance(value, list):
                    value = "; ".join(text(v) or json.dumps(v) for v in value)
                if found := text(value):
                    return found[:MESSAGE_MAX]
    return ""





def progress(value: Any) -> float | None:
    """0–100 from ``10.3``, ``"10.3"``, ``"97%"``; None when absent or not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().removesuffix("%").strip()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number:  # NaN
        return None
    return min(100.0, max(0.0, number))


def boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int):
        return bool(value)
    return None


def _object(data: Any, what: str) -> tuple[dict[str, Any], str]:
    payload, said = envelope(data)
    if not isinstance(payload, dict):
        raise PayloadError(f"{what} is not a JSON object: {type(payload).__name__}")
    return payload, said


def batch(data: Any) -> BatchInfo:
    """A batch as create, start and status return it."""
    payload, said = _object(data, "the batch")
    return BatchInfo(id=text(payload.get("id")), status=text(payload.get("status")).lower(),
                     progress=progress(payload.get("progress")), message=said)


def batches(data: Any) -> list[BatchInfo]:
    """The active batches (``GET /api/batches``)."""
    payload, _ = envelope(data)
    if not isinstance(payload, list):
        raise PayloadError(f"the batch list is not a list: {type(payload).__name__}")
    return [batch(item) for item in payload if isinstance(item, dict)]


def asset(data: Any) -> Asset:
    """An asset as attach and ``GET /api/files/{id}`` return it; its id is required."""
    payload, _ = _object(data, "the asset")
    asset_id = text(payload.get("id"))
    if not asset_id:
        raise PayloadError("the asset has no id")
    size = payload.get("file_size")
    return Asset(id=asset_id, checksum=text(payload.get("checksum")).lower(),
                 txid=text(payload.get("txid")), url=text(payload.get("url")),
                 forever_url=text(payload.get("forever_url")),
                 stored_on=text(payload.get("stored_on")),
                 updated_at=text(payload.get("updated_at")),
                 duplicate=boolean(payload.get("duplicate")),
                 status=text(payload.get("status")).lower(), name=text(payload.get("name")),
                 file_size=size if isinstance(size, int) and not isinstance(size, bool)
                 else None)


def remote_state(status: str) -> Remote | None:
    """Our state for a Clevver status name; None for one Clevver does not document."""
    return STATES.get(status.strip().lower())
