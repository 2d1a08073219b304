"""Reading Centrapay's answers: pure functions over decoded JSON.

A batch is ``{id, status, type, count, errorCount, errors: [{message, externalId?,
index?}]}``. Counters are BigNumber strings (``"160000"``); the model calls the count
``totalCount``, the examples ``count``: both are read. Status names are kept as they
came (lower case); :func:`remote_state` maps the documented ones, and callers treat an
unknown one as "still working". What cannot be read as a batch raises
:class:`PayloadError`, which the client turns into a transient failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from folderseal.providers import Remote
from folderseal.providers.payload import PayloadError as PayloadError
from folderseal.providers.payload import decode as decode
from folderseal.providers.payload import text as text

MAX_ERRORS = 1000        # errors kept in a report (the counts stay exact)
MESSAGE_MAX = 500        # characters kept of one message
STATES = {"created": Remote.RUNNING,    # creating is starting: it fetches the file next
          "copied": Remote.RUNNING,
          "chunked": Remote.RUNNING,
          "complete": Remote.CLOSED,    # final; may carry per-record errors
          "error": Remote.FAILED}       # final: the file could not be read
FINAL = ("complete", "error")
_DIGITS = re.compile(r"^[+-]?\d+$")



@dataclass(frozen=True, slots=True)
class Batch:
    id: str                          # "" when the answer left it out
    status: str                      # lower case, as Centrapay named it ("" when absent)
    type: str = ""
    count: int | None = None         # records in the file (None: not said, or not a number)
    error_count: int | None = None   # records that failed (None: not said)
    errors: tuple[dict[str, Any], ...] = ()   # at most MAX_ERRORS, normalised
    errors_listed: int = 0           # how many errors the answer listed

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def reported(self) -> bool:
        """The answer carries a report (a count or an errorCount); a final status
        without one is asked again."""
        return self.count is not None or self.error_count is not None

    def report(self, test: bool) -> dict[str, Any]:
        """The sidecar's ``report``: counts exact (the number of errors listed when
        Centrapay gave no errorCount), the errors capped at MAX_ERRORS."""
        errors = self.error_count if self.error_count is not None else self.errors_listed
        return {"status": self.status, "count": self.count, "errorCount": errors,
                "errors": [dict(e) for e in self.errors], "test": test}








def number(value: Any) -> int | None:
    """A BigNumber (``"160000"``, ``160000``, ``"1.6e5"``) as an integer; None when
    absent or not a whole number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = value.strip()
        if _DIGITS.match(value):
            return int(value)
    try:
        found = float(value)
    except (TypeError, ValueError):
        return None
    return int(found) if found.is_integer() else None


def message(data: Any) -> str:
    """What an error answer says (``message``, ``error``, ``errors``…); "" when nothing."""
    if not isinstance(data, dict):
        return ""
    for key in ("message", "error", "errors", "detail", "code"):
        value = data.get(key)
        if isinstance(value, list):
            value = "; ".join(text(v) or text(v.get("message")) if isinstance(v, dict)
                              else text(v) for v in value)
        elif isinstance(value, dict):
            value = value.get("message")
        if found := text(value):
            return found[:MESSAGE_MAX]
    return ""


def batch(data: Any) -> Batch:
    """A batch as create and status return it (or inside a ``data`` envelope)."""
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and "id" not in data:
        data = data["data"]
    if not isinstance(data, dict):
        raise PayloadError(f"the batch is not a JSON object but {type(data).__name__}")
    raw = data.get("errors")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise PayloadError(f"the batch's errors are not a list but {type(raw).__name__}")
    counters = {}
    for key in ("count", "totalCount", "errorCount"):
        value = data.get(key)
        counters[key] = number(value)
        if value is not None and value != "" and counters[key] is None:
            raise PayloadError(f"its {key} is not a whole number")
    count = counters["count"] if counters["count"] is not None else counters["totalCount"]
    return Batch(id=text(data.get("id")), status=text(data.get("status")).lower(),
                 type=text(data.get("type")), count=count,
                 error_count=counters["errorCount"],
                 errors=tuple(_error(item) for item in raw[:MAX_ERRORS]),
                 errors_listed=len(raw))


def _error(item: Any) -> dict[str, Any]:
    """One per-record error as the report shows it: ``{index, externalId, message}``
    (index as a number where Centrapay gave a whole one; None where it gave none)."""
    if not isinstance(item, dict):
        return {"index": None, "externalId": None, "message": text(item)[:MESSAGE_MAX]}
    index = item.get("index")
    external = text(item.get("externalId"))
    return {"index": number(index) if number(index) is not None else (text(index) or None),
            "externalId": external or None, "message": text(item.get("message"))[:MESSAGE_MAX]}


def remote_state(status: str) -> Remote | None:
    """Our state for a Centrapay status name; None for one Centrapay does not document."""
    return STATES.get(status.strip().lower())


def checked_report(found: Batch, test: bool) -> dict[str, Any]:
    """The report of a final batch; PayloadError when it has none (neither count nor
    errorCount), or when a complete batch does not say how many records it loaded (a
    report without its count proves nothing)."""
    if not found.reported:
        raise PayloadError(f"a batch {found.status or 'final'} without its report (no count "
                           "or errorCount)")
    if found.status == "complete" and found.count is None:
        raise PayloadError("a complete batch without a count (or totalCount)")
    return found.report(test)
