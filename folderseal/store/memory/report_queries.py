"""The in-memory store's answers to what status reads (never a write): each answers the
query of its name in ``sql/queries.sql``."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from folderseal.store.memory.tables import (
    DELIVERED,
    FINISHED_BATCHES,
    IN_FLIGHT,
    Result,
    Tables,
    answer,
    counts,
    one_value,
    query,
)


@query
def count_batches_by_state(t: Tables) -> Result:
    return counts(((j["folder"], j["state"]) for j in t.batches.values()), ("folder", "state"))


@query
def claims_by_node(t: Tables) -> Result:
    waiting = Counter(f["node"] for f in t.files.values()
                      if f["batch_id"] is None and f["state"] in ("CLAIMED", "REJECTED"))
    return answer({"node": node, "n": n} for node, n in waiting.items())


@query
def active_batches(t: Tables, *, folder: str) -> Result:
    held = Counter(f["batch_id"] for f in t.files.values())
    return answer({**j, "files": held[j["id"]]} for j in sorted(
        (j for j in t.batches.values() if j["folder"] == folder and (
            j["state"] not in FINISHED_BATCHES or j["next_attempt_at"] is not None)),
        key=lambda j: j["created_at"]))


def _latest_first(found: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    return sorted(found, key=lambda f: f["updated_at"], reverse=True)[:limit]


@query
def last_changed(t: Tables, *, folder: str, state: str, limit: int) -> Result:
    return answer(_latest_first([f for f in t.files.values()
                                 if f["folder"] == folder and f["state"] == state], limit))


def _error_count(result: str | None) -> Any:
    """json_extract(result, '$.provider_block.report.errorCount')."""
    found: Any = json.loads(result) if result else None
    for key in ("provider_block", "report", "errorCount"):
        found = found.get(key) if isinstance(found, dict) else None
    return found


def _positive(value: Any) -> bool:
    """``value > 0`` as SQLite compares: NULL never, text (or JSON text) always."""
    if value is None:
        return False
    if isinstance(value, bool | int | float):
        return value > 0
    return True


@query
def records_failed(t: Tables, *, folder: str, limit: int) -> Result:
    found = [{"id": f["id"], "source": f["source"], "updated_at": f["updated_at"], "bad": bad}
             for f in t.files.values() if f["folder"] == folder and f["state"] in DELIVERED
             and _positive(bad := _error_count(f["result"]))]
    return answer(_latest_first(found, limit))


@query
def oldest_in_flight(t: Tables, *, folder: str) -> Result:
    return one_value(min((f["claimed_at"] for f in t.files.values()
                          if f["folder"] == folder and f["state"] in IN_FLIGHT), default=None))


@query
def suspected_fragments(t: Tables, *, folder: str, since: float) -> Result:
    found = [{"file_id": e["file_id"], "source": t.files[e["file_id"]]["source"], "at": e["at"],
              "detail": e["detail"]}
             for e in t.events if e["kind"] == "file.fragment_suspected" and e["at"] > since
             and e["file_id"] in t.files and t.files[e["file_id"]]["folder"] == folder]
    return answer(sorted(found, key=lambda f: f["at"], reverse=True))


@query
def outputs_in_state(t: Tables, *, folder: str, state: str) -> Result:
    return answer({"outputs": f["outputs"]} for f in t.files.values()
                  if f["folder"] == folder and f["state"] == state)


@query
def changes_per_minute(t: Tables, *, folder: str, state: str, until: float,
                       since: float) -> Result:
    ago = Counter(int((until - f["updated_at"]) / 60) for f in t.files.values()
                  if f["folder"] == folder and f["state"] == state and f["updated_at"] > since)
    return answer({"ago": minute, "count(*)": n} for minute, n in sorted(ago.items()))


@query
def count_stale(t: Tables, *, folder: str, state: str, before: float) -> Result:
    return one_value(sum(1 for f in t.files.values() if f["folder"] == folder
                         and f["state"] == state and f["updated_at"] < before))


@query
def events(t: Tables, *, batch_id: str | None, file_id: str | None, kind: str | None) -> Result:
    return answer(e for e in t.events if (batch_id is None or e["batch_id"] == batch_id)
                  and (file_id is None or e["file_id"] == file_id)
                  and (kind is None or e["kind"] == kind))
