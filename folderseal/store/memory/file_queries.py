"""The in-memory store's queries of files, of the meta record and events, and of
``folderseal retry``: each answers the query of its name in ``sql/queries.sql``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from folderseal.store.memory.tables import (
    DELIVERED,
    FILE_COLUMNS,
    IN_FLIGHT,
    Result,
    Row,
    Tables,
    answer,
    counts,
    file_if,
    one_value,
    query,
    real,
    unique,
    update,
)

# -- meta, events ----------------------------------------------------------------------

@query
def get_meta(t: Tables, *, key: str) -> Result:
    return one_value(t.meta[key]) if key in t.meta else Result()


@query
def set_meta(t: Tables, *, key: str, value: str) -> Result:
    t.meta[key] = value
    return Result(rowcount=1)


@query
def insert_event(t: Tables, *, now: float, node: str, batch_id: str | None, file_id: str | None,
                 kind: str, from_state: str | None, to_state: str | None,
                 detail: str | None, epoch: int | None) -> Result:
    t.events.append({"id": len(t.events) + 1, "at": real(now), "node": node, "batch_id": batch_id,
                     "file_id": file_id, "kind": kind, "from_state": from_state,
                     "to_state": to_state, "detail": detail, "epoch": epoch})
    return Result(rowcount=1)


@query
def answers(t: Tables) -> Result:
    return Result([Row({"count(*)": len(t.meta)})])


# -- files -----------------------------------------------------------------------------

@query
def insert_file(t: Tables, *, id: str, folder: str, source: bytes, dev: int, ino: int,
                size: int, mtime_ns: int, sha256: str | None, seen_at: float, node: str,
                now: float) -> Result:
    if id in t.files:  # ON CONFLICT (id) DO NOTHING
        return Result(rowcount=0)
    row = dict.fromkeys(FILE_COLUMNS)
    row.update(id=id, folder=folder, source=source, state="CLAIMED", dev=dev, ino=ino,
               size=size, mtime_ns=mtime_ns, sha256=sha256, attempts=0, seen_at=real(seen_at),
               claimed_at=real(now), updated_at=real(now), node=node)
    t.files[id] = row
    return Result(rowcount=1)


@query
def get_file(t: Tables, *, id: str) -> Result:
    return answer(file_if(t, id, lambda f: True))


@query
def files_in_state(t: Tables, *, folder: str, state: str) -> Result:
    return answer(sorted((f for f in t.files.values()
                         if f["folder"] == folder and f["state"] == state),
                        key=lambda f: (f["claimed_at"], f["id"])))


@query
def unfinished_claims(t: Tables, *, folder: str, node: str) -> Result:
    return answer(f for f in t.files.values() if f["folder"] == folder and f["node"] == node
                 and f["batch_id"] is None
                 and ((f["state"] == "CLAIMED" and f["sha256"] is None)
                      or f["state"] == "REJECTED"))


@query
def own_claims(t: Tables, *, folder: str, node: str, limit: int) -> Result:
    return answer(sorted((f for f in t.files.values()
                         if f["folder"] == folder and f["state"] == "CLAIMED"
                         and f["node"] == node and f["sha256"] is not None),
                        key=lambda f: (f["claimed_at"], f["id"]))[:limit])


@query
def adopt_claims(t: Tables, *, folder: str, node: str, alive_seconds: float,
                 now: float) -> Result:
    alive = {n for n, row in t.nodes.items() if row["heartbeat_at"] > now - alive_seconds}
    return update([f for f in t.files.values()
                   if f["folder"] == folder and f["batch_id"] is None
                   and f["state"] in ("CLAIMED", "REJECTED")
                   and (f["node"] is None or (f["node"] != node and f["node"] not in alive))],
                  node=node)


@query
def files_of_batch(t: Tables, *, batch_id: str) -> Result:
    # ORDER BY entry: NULL first
    return answer(sorted((f for f in t.files.values() if f["batch_id"] == batch_id),
                        key=lambda f: (f["entry"] is not None, f["entry"] or "")))


@query
def failed_files(t: Tables) -> Result:
    return answer(sorted((f for f in t.files.values() if f["state"] == "FAILED"),
                        key=lambda f: f["updated_at"]))


@query
def count_in_flight(t: Tables, *, folder: str) -> Result:
    return one_value(sum(1 for f in t.files.values()
                      if f["folder"] == folder and f["state"] in IN_FLIGHT))


@query
def count_by_state(t: Tables) -> Result:
    return counts(((f["folder"], f["state"]) for f in t.files.values()), ("folder", "state"))


@query
def recent_claims(t: Tables, *, folder: str, since: float, since_id: str) -> Result:
    return answer({"id": f["id"], "source": f["source"], "claimed_at": f["claimed_at"]}
                 for f in t.files.values() if f["id"] >= since_id and f["folder"] == folder
                 and f["claimed_at"] > since)


@query
def file_ids(t: Tables, *, folder: str) -> Result:
    return answer({"id": f["id"]} for f in t.files.values() if f["folder"] == folder)


@query
def known_file_ids(t: Tables, *, ids: str) -> Result:
    return answer({"id": i} for i in json.loads(ids) if i in t.files)


@query
def delivered_twin(t: Tables, *, folder: str, sha256: str | None, id: str) -> Result:
    twins = [{"id": f["id"], "source": f["source"]} for f in t.files.values()
             if f["folder"] == folder and sha256 is not None and f["sha256"] == sha256
             and f["state"] in DELIVERED and f["id"] != id]
    return answer(twins[:1])


@query
def batch_file(t: Tables, *, id: str, batch_id: str, entry: str, node: str,
               now: float) -> Result:
    return update(file_if(t, id, lambda f: f["state"] == "CLAIMED" and f["node"] == node),
                  state="BATCHED",
                   batch_id=batch_id, entry=entry, updated_at=real(now))


def _waiting_in(batch_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f["batch_id"] == batch_id and f["state"] == "BATCHED"


@query
def begin_attempt(t: Tables, *, id: str, batch_id: str, now: float) -> Result:
    found = file_if(t, id, _waiting_in(batch_id))
    for f in found:
        f.update(attempts=f["attempts"] + 1, updated_at=real(now))
    return Result([Row({"attempts": f["attempts"]}) for f in found], len(found))


@query
def forgive_attempt(t: Tables, *, id: str, batch_id: str, now: float) -> Result:
    found = file_if(t, id, _waiting_in(batch_id))
    for f in found:
        f.update(attempts=max(f["attempts"] - 1, 0), updated_at=real(now))
    return Result(rowcount=len(found))


@query
def set_file_state(t: Tables, *, id: str, from_state: str, to_state: str, now: float) -> Result:
    return update(file_if(t, id, lambda f: f["state"] == from_state), state=to_state,
                   updated_at=real(now))


@query
def set_file_result(t: Tables, *, id: str, from_state: str, to_state: str, result: str,
                    error_code: str | None, error_message: str | None, now: float) -> Result:
    return update(file_if(t, id, lambda f: f["state"] == from_state), state=to_state,
                   result=result, error_code=error_code, error_message=error_message,
                   updated_at=real(now))


@query
def name_taken(t: Tables, *, folder: str, area: str, path: bytes, file_id: str) -> Result:
    holder = t.output_names.get((folder, area, path))
    return one_value(1) if holder is not None and holder != file_id else Result()


@query
def reserve_name(t: Tables, *, folder: str, area: str, path: bytes, file_id: str) -> Result:
    key = (folder, area, path)
    unique(key in t.output_names,
            "output_names.folder, output_names.area, output_names.path")
    t.output_names[key] = file_id
    return Result(rowcount=1)


@query
def release_names(t: Tables, *, file_id: str) -> Result:
    mine = [key for key, holder in t.output_names.items() if holder == file_id]
    for key in mine:
        del t.output_names[key]
    return Result(rowcount=len(mine))


@query
def set_claim_hash(t: Tables, *, id: str, sha256: str, size: int, mtime_ns: int, node: str,
                   now: float) -> Result:
    return update(_claim_of(t, id, node), sha256=sha256, size=size, mtime_ns=mtime_ns,
                  updated_at=real(now))


@query
def reject_claim(t: Tables, *, id: str, result: str, error_code: str, error_message: str,
                 node: str, now: float) -> Result:
    return update(_claim_of(t, id, node), state="REJECTED", result=result,
                  error_code=error_code, error_message=error_message, updated_at=real(now))


def _claim_of(t: Tables, id: str, node: str) -> list[dict[str, Any]]:
    return file_if(t, id, lambda f: f["state"] == "CLAIMED" and f["node"] == node)


@query
def set_file_outputs(t: Tables, *, id: str, outputs: str, now: float) -> Result:
    return update(file_if(t, id, lambda f: f["state"] in ("READY", "REJECTED", "CLAIMED",
                                                             "BATCHED")),
                   outputs=outputs, updated_at=real(now))


@query
def set_remote_document(t: Tables, *, id: str, batch_id: str, remote_document: str,
                        now: float) -> Result:
    return update(file_if(t, id, _waiting_in(batch_id)), remote_document=remote_document,
                   updated_at=real(now))


@query
def remote_documents(t: Tables, *, batch_id: str) -> Result:
    return answer({"id": f["id"], "remote_document": f["remote_document"]}
                 for f in t.files.values()
                 if f["batch_id"] == batch_id and f["remote_document"] is not None)


# -- folderseal retry ----------------------------------------------------------------------

@query
def reopen_file(t: Tables, *, id: str, now: float) -> Result:
    return update(file_if(t, id, lambda f: f["state"] == "RETRYING"
                            and f["batch_id"] is not None),
                   state="BATCHED", result=None, outputs=None, error_code=None,
                   error_message=None, updated_at=real(now))


@query
def begin_retry(t: Tables, *, id: str, from_state: str, outputs: str, now: float) -> Result:
    return update(file_if(t, id, lambda f: f["state"] == from_state
                            and f["state"] in ("FAILED", "CLEARED")),
                   state="RETRYING", outputs=outputs, updated_at=real(now))


@query
def set_error_place(t: Tables, *, id: str, outputs: str) -> Result:
    return update(file_if(t, id, lambda f: f["state"] in ("FAILED", "CLEARED")),
                   outputs=outputs)
