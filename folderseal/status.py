"""``folderseal status``: what is waiting, in flight, failed, and why.

Reads the store (never writes it) and the daemon's last heartbeat, which carries what
only the running daemon knows: files still settling in each inbox and why they wait,
claims paused for disk space or the in-flight limit, a share in an outage.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from folderseal import statelock
from folderseal.config import Settings
from folderseal.errors import ExitCode, FolderSealError
from folderseal.model import FileState, JobState
from folderseal.providers import build
from folderseal.redact import REDACTOR
from folderseal.sidecar import iso

HEARTBEAT_STALE = 30.0


def _rows(db: sqlite3.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute(sql, args)]


def collect(settings: Settings) -> dict[str, Any]:
    report: dict[str, Any] = {"node": settings.node_name, "daemon": {"running": False},
                              "folders": {}, "warnings": []}
    for name in sorted({f.provider for f in settings.folders.values()}):
        try:
            provider = build(name, settings.providers[name], settings.state_dir)
            report["warnings"] += provider.check(network=False)
        except FolderSealError as exc:
            report["warnings"].append(f"provider {name}: {exc}")
    if not settings.database.exists():
        report["warnings"].append(f"no store at {settings.database} yet: the daemon never ran")
        report["folders"] = {name: _empty() for name in settings.folders}
        return report
    db = sqlite3.connect(f"file:{settings.database}?mode=ro", uri=True, timeout=10)
    db.row_factory = sqlite3.Row
    try:
        now = time.time()
        beats = {r["node"]: r for r in _rows(db, "SELECT * FROM nodes")}
        beat = beats.get(settings.node_name)
        notes: dict[str, Any] = {}
        pid = statelock.holder(settings.state_dir)
        if pid is not None:
            report["daemon"] = {"running": True, "pid": pid}
            if beat is not None and beat["pid"] == pid:
                report["daemon"].update(heartbeat=iso(beat["heartbeat_at"]),
                                        started=iso(beat["started_at"]))
                if now - beat["heartbeat_at"] < HEARTBEAT_STALE:
                    notes = json.loads(beat["notes"]).get("folders", {})
        for name in settings.folders:
            report["folders"][name] = _folder(db, name, notes.get(name, {}), now)
    finally:
        db.close()
    return report


def _folder(db: sqlite3.Connection, name: str, notes: dict[str, Any],
            now: float) -> dict[str, Any]:
    counts = {r["state"]: r["n"] for r in _rows(
        db, "SELECT state, count(*) AS n FROM files WHERE folder = ? GROUP BY state", name)}
    jobs = []
    for job in _rows(db, "SELECT j.*, (SELECT count(*) FROM files f WHERE f.batch_id = j.id) "
                         "AS files FROM jobs j WHERE folder = ? AND (state NOT IN (?, ?) OR "
                         "next_attempt_at IS NOT NULL) ORDER BY created_at", name,
                     JobState.CLEANED, JobState.FAILED):
        due = job["next_attempt_at"]
        jobs.append({"batch": job["id"], "state": job["state"], "files": job["files"],
                     "remote": job["remote_id"], "attempts": job["attempts"],
                     "next_attempt_in": None if due is None else max(0.0, round(due - now, 1)),
                     "last_error": job["error_message"]})
    failed = [{"file": r["id"], "source": bytes(r["source"]).decode("utf-8", "backslashreplace"),
               "code": r["error_code"], "reason": r["error_message"], "attempts": r["attempts"]}
              for r in _rows(db, "SELECT * FROM files WHERE folder = ? AND state = ? "
                                 "ORDER BY updated_at DESC LIMIT 100", name, FileState.FAILED)]
    return {"watch": notes.get("mode", ""), "outage": notes.get("outage", ""),
            "paused": notes.get("paused", ""), "settling": notes.get("candidates", 0),
            "waiting": notes.get("waiting", []), "files": counts, "batches": jobs,
            "failed": failed}


def _empty() -> dict[str, Any]:
    return {"watch": "", "outage": "", "paused": "", "settling": 0, "waiting": [], "files": {},
            "batches": [], "failed": []}


def show(settings: Settings, as_json: bool = False) -> int:
    report = REDACTOR.data(collect(settings))
    if as_json:
        print(json.dumps(report, indent=2))
        return ExitCode.OK
    daemon = report["daemon"]
    beat = f", last heartbeat {daemon['heartbeat']}" if daemon.get("heartbeat") else ""
    print(f"folderseal on {report['node']}: daemon "
          + (f"running (pid {daemon['pid']}{beat})" if daemon["running"] else "not running"))
    for warning in report["warnings"]:
        print(f"  warning: {warning}")
    for name, folder in report["folders"].items():
        files = folder["files"]
        in_flight = sum(files.get(s, 0) for s in ("CLAIMED", "BATCHED", "READY", "REJECTED",
                                                   "PUBLISHED"))
        print(f"\nfolder {name}: watch {folder['watch'] or '-'}, {folder['settling']} settling, "
              f"{in_flight} in flight, {files.get('DONE', 0)} delivered, "
              f"{files.get('FAILED', 0)} failed")
        for key in ("outage", "paused"):
            if folder[key]:
                print(f"  {key}: {folder[key]}")
        for item in folder["waiting"]:
            print(f"  waiting  {item['source']}: {item['why']}")
        for job in folder["batches"]:
            due = ("" if job["next_attempt_in"] is None
                   else f", next step in {job['next_attempt_in']} s")
            error = f"; last error: {job['last_error']}" if job["last_error"] else ""
            print(f"  batch {job['batch']}: {job['state']}, {job['files']} files{due}{error}")
        for item in folder["failed"]:
            print(f"  failed   {item['file']} {item['source']}: [{item['code']}] {item['reason']}")
    return ExitCode.OK
