"""The nodes part of ``folderseal status``: every node of the store, alive or dead, its
last heartbeat, and its clock offset from the store's clock (issue 12, items 2 and 8).

A node is alive while its last heartbeat is younger than ``[store] lease_seconds`` on
the store's clock: past that, another node may take its batches over. Its clock offset
is its own clock, noted in each heartbeat, minus the time the store stamped on that
heartbeat (:func:`folderseal.service.node.clock_offset`); a node's clock is compared
with nothing else.

On SQLite the store belongs to one state folder, whose lock keeps every other daemon
out, so the list holds just this node: a row under another name there is this same
state folder under an earlier ``node`` name, not a node beside it.
"""

from __future__ import annotations

from typing import Any

from folderseal.core.config import Settings
from folderseal.publish.sidecar import iso
from folderseal.service import node

# Beyond this the offset is no round trip's error: the node's time sync is broken, and
# its logs and sidecars disagree with the database's times.
CLOCK_ALARM_SECONDS = 2.0
# A node that stopped beating this recently is an alarm; an older one is only listed.
DEAD_ALARM_SECONDS = 86400.0


def nodes(rows: list[dict[str, Any]], settings: Settings, now: float,
          claims: dict[str | None, int] | None = None,
          batches: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The nodes of ``rows`` (``Store.nodes()``), this one first, and their alarms;
    ``now`` is the store's clock, the clock their heartbeats were stamped with.
    ``claims`` (``Store.claims_by_node()``) and ``batches`` (the report's batches, with
    their holder and lease left) say what each node holds."""
    shared = settings.store.database_url() is not None
    lease = settings.store.lease_seconds
    found = [_node(row, row["node"] == settings.node_name, now, lease) for row in rows
             if shared or row["node"] == settings.node_name]
    for entry in found:
        entry.update(_holdings(entry["node"], claims or {}, batches or []))
    found.sort(key=lambda n: (not n["this_node"], n["node"]))
    return found, [alarm for n in found for alarm in _alarms(n, lease)]


def unowned_claims(found: list[dict[str, Any]], claims: dict[str | None, int]) -> list[str]:
    """A warning for claims no node of ``found`` (:func:`nodes`) holds: made before
    claims were per node, or under a node name not listed (on SQLite, an earlier name of
    this node). No node's line counts them."""
    listed = {n["node"] for n in found}
    count = sum(n for name, n in claims.items() if name is None or name not in listed)
    if not count:
        return []
    return [f"{count} claim(s) belong to no node listed here (made before claims were "
            "per node, or under a node name the store has no row for): the next scan of "
            "any live node takes them over; if none runs, start one"]


def _holdings(name: str, claims: dict[str | None, int],
              batches: list[dict[str, Any]]) -> dict[str, int]:
    """What a node holds: its claims not yet in a batch, the batches it holds a lease on,
    and those whose lease lapsed and no node took over yet (orphans)."""
    mine = [b["lease_left_seconds"] for b in batches if b.get("holder") == name]
    return {"claims": claims.get(name, 0),
            "batches_held": sum(1 for left in mine if left is not None and left > 0),
            "orphans": sum(1 for left in mine if left is not None and left <= 0)}


def _node(row: dict[str, Any], this: bool, now: float, lease: float) -> dict[str, Any]:
    """One node's part of the report."""
    alive = node.is_alive(row, now, lease)
    offset = node.clock_offset(row)
    # A beat stamped after ``now`` was read would look younger than new.
    age = max(0.0, now - float(row["heartbeat_at"]))
    return {"node": row["node"], "this_node": this, "alive": alive, "pid": row["pid"],
            "version": row["version"], "started": iso(row["started_at"]),
            "heartbeat": iso(row["heartbeat_at"]), "heartbeat_age_seconds": round(age, 1),
            "clock_offset_seconds": None if offset is None else round(offset, 1),
            # A dead node's last offset is shown, but it stamps nothing now: no alarm.
            "clock_off": alive and offset is not None and abs(offset) > CLOCK_ALARM_SECONDS}


def _alarms(found: dict[str, Any], lease: float) -> list[str]:
    """What needs a person about one node, each alarm saying what to do."""
    alarms = []
    if found["clock_off"]:
        alarms.append(f"node {found['node']}'s clock is {found['clock_offset_seconds']:+.1f} s "
                      "off the database's: fix its time sync (chrony/ntp) on that host")
    # Why a dead node is an alarm only if it is another node that stopped within a day:
    # this node's own daemon being down or hung already has its alarms (the daemon's
    # part of the report). A node that stopped lately needs a person: its work waits
    # for a takeover and the fleet is short of a node. But a node taken out of service
    # on purpose leaves its row behind (nothing forgets a node), and an alarm that never
    # ends teaches operators to ignore `status`: so after a day it is only listed.
    if not found["alive"] and not found["this_node"] \
            and found["heartbeat_age_seconds"] < DEAD_ALARM_SECONDS:
        left = ""
        if found["claims"] or found["orphans"]:
            left = (f"; it left {found['claims']} claim(s) and {found['orphans']} batch(es) "
                    "not yet taken over: a live node takes the claims at its next scan and "
                    "each batch as its lease lapses (none runs? start one)")
        alarms.append(f"node {found['node']} stopped: no heartbeat since {found['heartbeat']} "
                      f"(more than lease_seconds, {lease:g} s): start its daemon again "
                      "(`systemctl start folderseal` on its host; its log says why it "
                      f"stopped){left}; a node retired on purpose stops being an alarm a day "
                      "after its last heartbeat")
    return alarms


def worth_showing(found: list[dict[str, Any]]) -> bool:
    """Whether ``status`` and the page show a nodes part: several nodes, another node
    than this one, or a clock off. This node alone and on time says nothing the
    daemon's line does not, so the output of one node stays as it was."""
    return len(found) > 1 or any(not n["this_node"] or n["clock_off"] for n in found)


def state(found: dict[str, Any]) -> str:
    """A node's state as a person reads it: alive or dead, and this node."""
    return ("alive" if found["alive"] else "dead") + (" (this node)" if found["this_node"]
                                                      else "")


def holdings_text(found: dict[str, Any]) -> str:
    """What a node holds as a person reads it: claims, batches, orphans."""
    text = f"{found['claims']} claims, {found['batches_held']} batches"
    return text + (f", {found['orphans']} orphaned" if found["orphans"] else "")


def offset_text(found: dict[str, Any]) -> str:
    """A node's clock offset as a person reads it ("-" when it does not say)."""
    offset = found["clock_offset_seconds"]
    return "-" if offset is None else f"{offset:+.1f} s"
