"""The in-memory store's queries of batches, their leases and the daemons' heartbeats: each
answers the query of its name in ``sql/queries.sql``."""

from __future__ import annotations

import json
from typing import Any

from folderseal.store.memory.tables import (
    BATCH_COLUMNS,
    Result,
    Tables,
    answer,
    batch_if,
    free,
    held,
    one_value,
    query,
    real,
    unique,
    update,
)

# -- batches and their leases -----------------------------------------------------------

@query
def insert_batch(t: Tables, *, id: str, folder: str, provider: str, now: float) -> Result:
    unique(id in t.batches, "batches.id")
    row = dict.fromkeys(BATCH_COLUMNS)
    row.update(id=id, folder=folder, provider=provider, state="BATCHED",
               next_attempt_at=real(now), attempts=0, created_at=real(now),
               updated_at=real(now), abandoned_lost=0, abandoned_mismatch=0, epoch=0,
               takeovers=0)
    t.batches[id] = row
    return Result(rowcount=1)


@query
def get_batch(t: Tables, *, id: str) -> Result:
    return answer(batch_if(t, id, lambda j: True))


@query
def all_batch_ids(t: Tables) -> Result:
    return answer({"id": i} for i in t.batches)


@query
def open_batch_owners(t: Tables) -> Result:
    owners: dict[tuple[str, str], int] = {}
    for j in t.batches.values():
        if j["next_attempt_at"] is not None:
            key = (j["folder"], j["provider"])
            owners[key] = owners.get(key, 0) + 1
    return answer({"folder": f, "provider": p, "count(*)": n}
                  for (f, p), n in sorted(owners.items()))


@query
def resume_batch(t: Tables, *, id: str, from_state: str, state: str, now: float) -> Result:
    return update(batch_if(t, id, lambda j: j["state"] == from_state), state=state,
                  next_attempt_at=real(now), attempts=0, claimed_by=None, lease_until=None,
                  updated_at=real(now))


@query
def restore_batch(t: Tables, *, id: str, state: str, remote_id: str | None,
                publish_key: str | None, now: float) -> Result:
    return update(batch_if(t, id, lambda j: j["state"] == "BATCHED"), state=state,
                  remote_id=remote_id, publish_key=publish_key, updated_at=real(now))


def _due(batch: dict[str, Any], now: float) -> bool:
    due = batch["next_attempt_at"]
    return due is not None and due <= now and free(batch, now)


@query
def acquire_batch(t: Tables, *, holder: str, now: float, busy: str, seconds: float) -> Result:
    skipped = set(json.loads(busy))
    due = sorted((j for j in t.batches.values() if _due(j, now) and j["id"] not in skipped),
                 key=lambda j: (j["next_attempt_at"], j["created_at"]))
    found = due[:1]
    for row in found:
        row["epoch"] = row["epoch"] + 1
        row["takeovers"] += row["claimed_by"] is not None  # another holder's lease lapsed
    update(found, claimed_by=holder, lease_until=real(now + seconds))
    return answer(found)  # RETURNING *


@query
def next_due(t: Tables, *, now: float) -> Result:
    times = [j["next_attempt_at"] for j in t.batches.values()
             if j["next_attempt_at"] is not None and free(j, now)]
    return one_value(min(times, default=None))


@query
def hold_batch(t: Tables, *, id: str, holder: str) -> Result:
    return answer({"id": j["id"]} for j in batch_if(t, id, lambda j: j["claimed_by"] == holder))


@query
def try_lock_batch(t: Tables, *, id: str) -> Result:
    return answer({"id": j["id"]} for j in batch_if(t, id, lambda j: True))


@query
def renew_lease(t: Tables, *, id: str, holder: str, now: float, seconds: float) -> Result:
    # A lapsed lease may be renewed by its holder as long as nobody took it over.
    found = batch_if(t, id, lambda j: j["claimed_by"] == holder)
    update(found, lease_until=real(now + seconds))
    return answer({"lease_until": j["lease_until"]} for j in found)  # RETURNING


@query
def release_batch(t: Tables, *, id: str, holder: str, now: float,
                next_attempt_at: float | None) -> Result:
    return update(batch_if(t, id, lambda j: j["claimed_by"] == holder), claimed_by=None,
                  lease_until=None, next_attempt_at=real(next_attempt_at), updated_at=real(now))


@query
def release_node_leases(t: Tables, *, node: str, every: bool, now: float) -> Result:
    return update([j for j in t.batches.values()
                   if (j["claimed_by"] == node or (j["claimed_by"] or "").startswith(f"{node}/"))
                   and (every or j["lease_until"] <= now)],
                  claimed_by=None, lease_until=None)


@query
def node_instance(t: Tables, *, node: str) -> Result:
    row = t.nodes.get(node)
    return answer([] if row is None else [{"instance": row["instance"]}])


@query
def transition_batch(t: Tables, *, id: str, from_state: str, to_state: str, holder: str,
                   remote_id: str | None, now: float) -> Result:
    found = held(t, id, holder, now, from_state)
    for j in found:
        j.update(state=to_state, attempts=0, error_code=None, error_message=None,
                 remote_id=j["remote_id"] if remote_id is None else remote_id,
                 updated_at=real(now))
    return Result(rowcount=len(found))


@query
def set_package(t: Tables, *, id: str, holder: str, now: float, package_sha256: str,
                package_bytes: int) -> Result:
    return update(held(t, id, holder, now, "BATCHED"), package_sha256=package_sha256,
                  package_bytes=package_bytes, updated_at=real(now))


@query
def fail_batch(t: Tables, *, id: str, holder: str, now: float, from_state: str,
             error_code: str, error_message: str) -> Result:
    return update(held(t, id, holder, now, from_state), state="FAILED", failed_step=from_state,
                  error_code=error_code, error_message=error_message, updated_at=real(now))


@query
def postpone_batch(t: Tables, *, id: str, holder: str, now: float, delay: float,
                 attempts: int, error_code: str, error_message: str) -> Result:
    found = held(t, id, holder, now)
    update(found, claimed_by=None, lease_until=None, next_attempt_at=real(now + delay),
           attempts=attempts, error_code=error_code, error_message=error_message,
           updated_at=real(now))
    return answer({"next_attempt_at": j["next_attempt_at"]} for j in found)  # RETURNING


# -- what a batch went through with its provider ------------------------------------------

@query
def note_upload(t: Tables, *, id: str, holder: str, now: float, remote_id: str) -> Result:
    found = held(t, id, holder, now, "CREATED")
    for j in found:
        if j["upload_sent_remote"] != remote_id:  # IS: None matches None
            j["upload_sent_at"] = real(now)
        j.update(upload_sent_remote=remote_id, updated_at=real(now))
    return Result(rowcount=len(found))


@query
def upload_sent(t: Tables, *, batch_id: str, remote_id: str) -> Result:
    return answer({"upload_sent_at": j["upload_sent_at"]} for j in batch_if(
        t, batch_id, lambda j: j["upload_sent_remote"] is not None
        and j["upload_sent_remote"] == remote_id))


@query
def abandon_batch(t: Tables, *, id: str, holder: str, now: float, from_state: str,
                remote_id: str, lost: int, mismatch: int, keep_attempts: int) -> Result:
    found = held(t, id, holder, now, from_state)
    for j in found:
        j.update(state="CREATED", remote_id=remote_id, error_code=None,
                 attempts=j["attempts"] if keep_attempts else 0,
                 error_message=None, abandoned_lost=j["abandoned_lost"] + lost,
                 abandoned_mismatch=j["abandoned_mismatch"] + mismatch, updated_at=real(now))
    return Result(rowcount=len(found))


@query
def abandons(t: Tables, *, batch_id: str) -> Result:
    return answer({"abandoned_lost": j["abandoned_lost"],
                   "abandoned_mismatch": j["abandoned_mismatch"]}
                  for j in batch_if(t, batch_id, lambda j: True))


@query
def set_progress(t: Tables, *, id: str, holder: str, now: float, progress: float) -> Result:
    return update(held(t, id, holder, now), progress=real(progress))


@query
def progress(t: Tables, *, batch_id: str) -> Result:
    return answer({"progress": j["progress"]} for j in batch_if(t, batch_id, lambda j: True))


@query
def set_publish_key(t: Tables, *, id: str, holder: str, now: float,
                    publish_key: str | None) -> Result:
    return update(held(t, id, holder, now), publish_key=publish_key, updated_at=real(now))


@query
def set_remote_id(t: Tables, *, id: str, holder: str, now: float, remote_id: str) -> Result:
    return update(held(t, id, holder, now), remote_id=remote_id, updated_at=real(now))


@query
def publish_keys(t: Tables) -> Result:
    return answer({"publish_key": j["publish_key"]} for j in t.batches.values()
                  if j["publish_key"] is not None)


# -- folderseal retry ----------------------------------------------------------------------

@query
def reopen_batch(t: Tables, *, id: str, from_state: str, to_state: str, now: float) -> Result:
    return update(batch_if(t, id, lambda j: j["state"] == from_state
                           and j["state"] in ("FAILED", "CLEANED") and j["claimed_by"] is None),
                   state=to_state, next_attempt_at=real(now), attempts=0, failed_step=None,
                   error_code=None, error_message=None, updated_at=real(now))


@query
def wake_batch(t: Tables, *, id: str, now: float) -> Result:
    def waiting(j: dict[str, Any]) -> bool:
        due = j["next_attempt_at"]
        return j["state"] != "FAILED" and due is not None and due > now and free(j, now)
    return update(batch_if(t, id, waiting), next_attempt_at=real(now), updated_at=real(now))



# -- its history, and the daemons -------------------------------------------------------

@query
def batch_transitions(t: Tables, *, batch_id: str) -> Result:
    return answer({"to_state": e["to_state"], "at": e["at"]} for e in t.events
                  if e["batch_id"] == batch_id and e["kind"] == "batch.state")


@query
def batch_history(t: Tables, *, batch_id: str) -> Result:
    members = {f["id"] for f in t.files.values() if f["batch_id"] == batch_id}
    return answer({"kind": e["kind"], "file_id": e["file_id"], "to_state": e["to_state"],
                   "at": e["at"]} for e in t.events
                  if (e["batch_id"] == batch_id and e["kind"] == "batch.state")
                  or (e["kind"] in ("file.batched", "file.state") and e["file_id"] in members))


@query
def register_node(t: Tables, *, node: str, pid: int, started_at: float, now: float,
                  instance: str, version: str, schema_version: int,
                  alive_seconds: float) -> Result:
    owner = t.nodes.get(node)
    if owner is not None and owner["instance"] not in (instance, "") \
            and owner["heartbeat_at"] > now - alive_seconds:
        return Result(rowcount=0)
    t.nodes[node] = {"node": node, "pid": pid, "started_at": real(started_at),
                     "heartbeat_at": real(now), "notes": "{}", "instance": instance,
                     "version": version, "schema_version": schema_version}
    return Result(rowcount=1)


@query
def heartbeat(t: Tables, *, node: str, instance: str, now: float, notes: str) -> Result:
    row = t.nodes.get(node)
    if row is None or row["instance"] != instance:
        return Result(rowcount=0)
    t.nodes[node] = {**row, "heartbeat_at": real(now), "notes": notes}
    return Result(rowcount=1)


@query
def nodes(t: Tables) -> Result:
    return answer(row for _, row in sorted(t.nodes.items()))
