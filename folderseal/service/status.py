"""``folderseal status``: what is waiting, in flight, failed, and why; and what needs a person.

Reads the store (never writes it) and the daemon's last heartbeat, which carries what
only the running daemon knows: files still settling in each inbox and why they wait,
claims paused for disk space or the in-flight limit, a share in an outage, a folder
that stopped making progress, and its warnings (the providers as the service sees them,
with the network and its credentials). Without a running daemon the providers are
checked here, without the network. The status page and the metrics read the same report.

Alarms are what needs a person now, and make ``status`` exit 1: the store that cannot
be reached (the report then holds what is known without it), the daemon down or hung,
a watcher down, a share out, an outbox, errors or archive folder missing or not
writable (claims stop), a disk under ``min_free_bytes``, a provider still failing after
many retries, a batch past ``max_wait_seconds``, a file older than
``stuck_after_seconds``, failures whose errors folder cannot be seen (another folder is
configured, or it is not mounted, or it does not answer), a ``folderseal retry`` left
unfinished, a node's clock more than 2 s off the database's, another node that stopped
within the last day (every node of the store is listed: :mod:`.nodes_report`), a batch
taken over ``TAKEOVER_ALARM`` times or more (its holder's lease lapsed each time). Files in
errors with a record are a normal outcome: listed, never an alarm.

Nothing here touches a share while the daemon runs: the daemon's main loop, its status
page and ``/metrics`` read this report too, and a share that hangs would hang them. The
daemon works out whether failures can be seen off its main loop and puts that in its
heartbeat. Without a daemon, ``status`` reads each errors folder's marker itself, in a
thread it waits for ``LOOK_SECONDS`` at most.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from folderseal.core import statelock
from folderseal.core.config import Settings
from folderseal.core.errors import FolderSealError, StateUnavailable
from folderseal.core.model import (
    DELIVERED,
    NOT_DELIVERED,
    BatchRecord,
    BatchState,
    FileState,
    path_text,
)
from folderseal.core.redact import REDACTOR
from folderseal.intake.fragments import SHOWN_SECONDS as FRAGMENTS_SHOWN_SECONDS
from folderseal.providers import NOT_QUALIFIED, build, steps_of
from folderseal.publish import errorfiles, retrying
from folderseal.publish.sidecar import iso
from folderseal.service import node, nodes_report
from folderseal.store import Store
from folderseal.store.opening import reading_store

HEARTBEAT_STALE = 30.0
ALARM_ATTEMPTS = 8  # consecutive failures of one step: about 4 minutes of backoff
# Once is a node that died or paused; again and again is a pattern a person must find.
TAKEOVER_ALARM = 3
FINISHED_BATCHES = (BatchState.CLEANED, BatchState.FAILED)
HOUR_MINUTES = 60
RETRY_STALE_SECONDS = 60.0  # RETRYING this long, with no retry at work: it was interrupted
LOOK_SECONDS = 5.0  # without a daemon: how long status waits for an errors folder


def provider_warnings(settings: Settings, last_beat: dict[str, Any] | None = None) -> list[str]:
    """What the providers in use warn about, checked here without the network (when no
    daemon runs to say what it found). A provider that cannot be checked here (its
    password is the service's credential, say) is named with why, and with the warnings
    the daemon published about it in its last heartbeat."""
    last = last_beat["notes"].get("warnings", []) if last_beat else []
    when = iso(last_beat["heartbeat_at"]) if last_beat else ""
    warnings: list[str] = []
    for name in sorted({f.provider for f in settings.folders.values()}):
        try:
            provider = build(name, settings.providers[name], settings.state_dir)
            warnings += [f"provider {name}: {w}" for w in provider.check(network=False).warnings]
        except FolderSealError as exc:
            warnings.append(f"provider {name}: cannot be checked here ({exc}), so its "
                            "certificate (qualified or not) is not known here; while the "
                            "daemon runs, `folderseal status` shows what the service found")
            warnings += [f"{w} (the daemon's finding when it last ran, {when})"
                         for w in last if w.startswith(f"provider {name}: ")]
    return warnings


def loud(warning: str) -> bool:
    """A warning shown as a banner: the seal proves nothing about who sealed."""
    return NOT_QUALIFIED in warning


def collect(settings: Settings, warnings: list[str] | None = None) -> dict[str, Any]:
    """The report: per folder what waits and why, batches, failures, signed per minute,
    and the alarms. Secrets are redacted."""
    now = time.time()
    report: dict[str, Any] = {
        "node": settings.node_name, "generated": iso(now), "daemon": {"running": False},
        "nodes": [], "folders": {}, "alarms": [], "warnings": []}
    try:
        return _collect(settings, report, warnings)
    except StateUnavailable as exc:  # the database is away: say so, with what is known here
        pid = statelock.holder(settings.state_dir)
        report.update(daemon={"running": pid is not None, **({"pid": pid} if pid else {})},
                      nodes=[], warnings=provider_warnings(settings) if warnings is None
                      else list(warnings),
                      folders={name: {**_empty(), "outcome": _outcome(settings, cfg.provider)}
                               for name, cfg in settings.folders.items()},
                      alarms=[f"the store cannot be reached, so nothing of the folders, "
                              f"batches and nodes is shown: {exc}"])
        if pid is None:
            report["alarms"].append("the daemon is not running")
        return _redacted(report)


def _collect(settings: Settings, report: dict[str, Any],
             warnings: list[str] | None) -> dict[str, Any]:
    """:func:`collect` on a store that answers (StateUnavailable if it stops)."""
    store = reading_store(settings)
    if store is None:
        report["warnings"] = provider_warnings(settings) if warnings is None else list(warnings)
        report["warnings"].append(f"no store at {settings.database} yet: the daemon never ran")
        report["folders"] = {name: {**_empty(), "outcome": _outcome(settings, cfg.provider)}
                             for name, cfg in settings.folders.items()}
        report["alarms"].append("the daemon is not running")
        return _redacted(report)
    try:
        now = store.clock()  # what the store's times are compared with: its own clock
        rows = store.nodes()
        beat = next((n for n in rows if n["node"] == settings.node_name), None)
        notes = _daemon(beat, settings, report, now)
        if warnings is None:  # the running daemon's own findings (the network, its credentials)
            warnings = notes["warnings"] if "warnings" in notes else \
                provider_warnings(settings, beat)
        report["warnings"] = list(warnings)
        retry_at_work = retrying.in_progress(settings.state_dir)
        folder_notes: dict[str, Any] = notes.get("folders", {})
        # While the daemon runs, its errors threads say this: no share is read here.
        unseen = {name: n.get("failures_unseen", "") for name, n in folder_notes.items()} \
            if report["daemon"]["running"] else _unseen_here(store, settings)
        files, batches = store.count_by_state(), store.count_batches_by_state()
        for name, cfg in settings.folders.items():
            folder = _folder(store, name, folder_notes.get(name, {}), now,
                             files.get(name, {}), batches.get(name, {}),
                             steps_of(settings.providers[cfg.provider].kind).reports_records)
            folder["outcome"] = _outcome(settings, cfg.provider)
            report["folders"][name] = folder
            max_wait = getattr(settings.providers[cfg.provider], "max_wait_seconds", None)
            report["alarms"] += _alarms(name, folder, max_wait, cfg.stuck_after_seconds)
            report["alarms"] += [f"folder {name}: {alarm}" for alarm in (
                unseen.get(name, ""), _retry_unfinished(store, name, now, retry_at_work)) if alarm]
        claims = store.claims_by_node()
        report["nodes"], alarms = nodes_report.nodes(
            rows, settings, now, claims,
            [b for f in report["folders"].values() for b in f["batches"]])
        report["alarms"] += alarms
        report["warnings"] += nodes_report.unowned_claims(report["nodes"], claims)
    finally:
        store.close()
    return _redacted(report)


def _redacted(report: dict[str, Any]) -> dict[str, Any]:
    redacted: dict[str, Any] = REDACTOR.data(report)
    return redacted


def _daemon(beat: dict[str, Any] | None, settings: Settings, report: dict[str, Any],
            now: float) -> dict[str, Any]:
    """Fill in the daemon's part; the notes of its last heartbeat, if it runs and that is
    fresh (else {})."""
    pid = statelock.holder(settings.state_dir)
    if pid is None:
        report["alarms"].append("the daemon is not running")
        return {}
    report["daemon"] = {"running": True, "pid": pid}
    if beat is None or beat["pid"] != pid:
        return {}
    age = now - beat["heartbeat_at"]
    report["daemon"].update(heartbeat=iso(beat["heartbeat_at"]), started=iso(beat["started_at"]),
                            heartbeat_age_seconds=round(age, 1))
    if age >= HEARTBEAT_STALE:
        report["alarms"].append(f"the daemon's last heartbeat is {age:.0f} s old: it is "
                                "frozen, or cannot write to the store (its log says why); "
                                "systemd's watchdog restarts a frozen one")
        return {}
    notes: dict[str, Any] = beat["notes"]
    # The beat has a thread of its own: the main loop's last round, noted in it, shows
    # a daemon that is stuck (the folders' notes are that round's). A folder hung on its
    # share is its own note's problem: the main loop never touches a share.
    loop_at, clock = notes.get("main_loop_at"), notes.get(node.CLOCK_NOTE)
    if isinstance(loop_at, int | float) and isinstance(clock, int | float) \
            and clock - loop_at >= HEARTBEAT_STALE:
        report["alarms"].append(f"the daemon's main loop has made no progress for "
                                f"{clock - loop_at:.0f} s: the daemon is stuck, and what it "
                                "shows of the folders is that old; systemd's watchdog "
                                "restarts it, and /healthz names the cause")
    return notes


def _holder(batch: BatchRecord, now: float) -> dict[str, Any]:
    """Which node works on a batch now (None: none), the epoch of its lease (each taking
    bumps it: one that grows fast means the batch is taken over again and again), and
    the seconds its lease has left (negative: it lapsed; another node may take it), and
    how many times it was taken over (taken while another holder's lease had lapsed)."""
    if batch.claimed_by is None or batch.lease_until is None:
        return {"holder": None, "epoch": batch.epoch, "lease_left_seconds": None,
                "takeovers": batch.takeovers}
    return {"holder": batch.claimed_by.partition("/")[0], "epoch": batch.epoch,
            "lease_left_seconds": round(batch.lease_until - now, 1),
            "takeovers": batch.takeovers}


def _folder(store: Store, name: str, notes: dict[str, Any], now: float,
            counts: dict[str, int], batch_states: dict[str, int],
            reports_records: bool) -> dict[str, Any]:
    """A folder's part of the report; ``counts`` and ``batch_states`` are its files and
    batches by state (read once for every folder); ``reports_records``: its provider's
    results say which records it could not load (else none are looked for: that reads
    every delivered file's result)."""
    batches = []
    for active in store.active_batches(name):
        batch, due = active.batch, active.batch.next_attempt_at
        batches.append({"batch": batch.id, "state": batch.state.value, "files": active.files,
                     "remote": batch.remote_id, "attempts": batch.attempts,
                     "progress": active.progress,
                     "age_seconds": round(now - batch.created_at, 1),
                     "in_state_seconds": round(now - batch.updated_at, 1),
                     "next_attempt_in": None if due is None else max(0.0, round(due - now, 1)),
                     "last_error": batch.error_message, **_holder(batch, now)})
    failed = [{"file": r.id,  # the retry id
               "source": r.source_text, "code": r.error_code, "reason": r.error_message,
               "attempts": r.attempts, "at": iso(at)}
              for r, at in store.last_changed(name, FileState.FAILED, 100)]
    # Delivered, but the provider reports records of it it could not load (Centrapay):
    # not an alarm (the file went through), but the operator must fix those records.
    partly = [{"file": file_id, "source": path_text(source), "records_failed": bad,
               "at": iso(at)} for file_id, source, bad, at in
              (store.records_failed(name, 100) if reports_records else [])]
    # A file of a batch that is delivered but not yet cleaned (PUBLISHED) is out: its
    # outputs and sidecar are durable, only its original waits to be removed.
    claimed = store.oldest_in_flight(name)
    waiting = notes.get("waiting", [])
    oldest = min([claimed or now, *(w["since"] for w in waiting)])
    fragments = _fragments(store, name, now)
    return {"watch": notes.get("mode", ""), "outage": notes.get("outage", ""),
            "paused": notes.get("paused", ""), "disk_full": notes.get("disk_full", ""),
            "blocked": notes.get("blocked", []),
            "problem": notes.get("problem", ""), "settling": notes.get("candidates", 0),
            "waiting": waiting, "in_flight": sum(counts.get(s, 0) for s in NOT_DELIVERED),
            "delivered": sum(counts.get(s, 0) for s in DELIVERED),
            "ignored": _ignored(notes.get("ignored"), now),
            "fragments_suspected": len(fragments), "fragments": fragments[:20],
            "oldest_waiting_seconds": round(now - oldest, 1), "files": counts,
            "batch_states": batch_states, "batches": batches, "failed": failed,
            "records_failed": partly,
            "signed_per_minute": store.changes_per_minute(name, FileState.DONE, now,
                                                          HOUR_MINUTES)}


def _unseen_here(store: Store, settings: Settings) -> dict[str, str]:
    """Without a daemon: :func:`errorfiles.failures_unseen` of each folder, read here, each errors
    folder in a thread of its own; one that has not answered within LOOK_SECONDS is
    reported so, and left to its thread (status ends without it)."""
    answers: dict[str, str] = {}

    def answer(name: str, errors: Path, went: list[str]) -> None:
        answers[name] = errorfiles.failures_unseen(errors, went)

    looks = []
    for name, cfg in settings.folders.items():
        went = [str(o["folder_id"]) for outputs in store.outputs_in_state(name, FileState.FAILED)
                for o in outputs if o.get("role") == "error" and o.get("folder_id")]
        if went:
            look = threading.Thread(target=answer, args=(name, cfg.errors, went),
                                    name=f"look-{name}", daemon=True)
            look.start()
            looks.append((name, cfg.errors, len(went), look))
    found = {}
    deadline = time.monotonic() + LOOK_SECONDS
    for name, errors, count, look in looks:
        look.join(max(0.0, deadline - time.monotonic()))
        found[name] = answers.get(name, "") if not look.is_alive() else (
            f"the errors folder {errors} does not answer (nothing within {LOOK_SECONDS:.0f} "
            f"s: a share whose server is gone?), so its {count} failed file(s) cannot be "
            "seen: check its share and the server behind it")
    return found


def _retry_unfinished(store: Store, name: str, now: float, retry_at_work: bool) -> str:
    """Files a `folderseal retry` left RETRYING (it was interrupted), if any; a retry at
    work (it holds the retry lock) is not interrupted however long it takes."""
    stale = store.count_stale(name, FileState.RETRYING, now - RETRY_STALE_SECONDS)
    if not stale or retry_at_work:
        return ""
    return (f"{stale} file(s) in a `folderseal retry` that was interrupted: the daemon "
            "finishes it at its next rescan; if this stays, run `folderseal retry` to see "
            "why it cannot")


def _fragments(store: Store, name: str, now: float) -> list[dict[str, Any]]:
    """The last day's suspected fragments (files found where one was claimed moments
    before), newest first."""
    return [{"source": path_text(source), "at": iso(at), "earlier_claim": earlier, "why": why}
            for earlier, source, at, why in store.suspected_fragments(
                name, now - FRAGMENTS_SHOWN_SECONDS)]


def _ignored(tally: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """Files the last scan passed over by name: how many, the oldest and its age."""
    tally = tally or {}
    mtime = tally.get("oldest_mtime")
    return {"count": tally.get("count", 0), "oldest": tally.get("oldest", ""),
            "oldest_age_seconds": None if mtime is None else round(now - mtime, 1)}


def _alarms(name: str, folder: dict[str, Any], max_wait: float | None,
            stuck_after: float) -> list[str]:
    found = []
    for key, what in (("problem", "not making progress"), ("outage", "share out"),
                      ("disk_full", "disk full")):
        if folder[key]:
            found.append(f"folder {name}: {what}: {folder[key]}")
    found += [f"folder {name}: {BLOCKED}: {b['message']}" for b in folder["blocked"]]
    for batch in folder["batches"]:
        if batch["attempts"] >= ALARM_ATTEMPTS and batch["state"] not in FINISHED_BATCHES:
            found.append(f"folder {name}: batch {batch['batch']} still failing in "
                         f"{batch['state']} after {batch['attempts']} attempts: "
                         f"{batch['last_error']}")
        if batch["takeovers"] >= TAKEOVER_ALARM:
            found.append(takeover_alarm(name, batch))
        if max_wait is not None and batch["age_seconds"] > max_wait:
            found.append(f"folder {name}: batch {batch['batch']} ({batch['state']}) is "
                         f"{batch['age_seconds']:.0f} s old, past max_wait_seconds "
                         f"({max_wait:.0f} s)")
    if folder["oldest_waiting_seconds"] > stuck_after:
        found.append(f"folder {name}: a file has waited {folder['oldest_waiting_seconds']:.0f} "
                     f"s, more than stuck_after_seconds ({stuck_after:.0f} s)")
    return found


def takeover_alarm(name: str, batch: dict[str, Any]) -> str:
    """A batch taken over again and again, and where an operator looks for why."""
    return (f"folder {name}: batch {batch['batch']} ({batch['state']}) was taken over "
            f"{batch['takeovers']} times, its holder's lease lapsing each time: a node that "
            "keeps dying or pausing mid-step (look in the nodes' logs for lease.lost and "
            "restarts around this batch: a crash, the OOM killer, a host suspended or a "
            "share that hangs), or a step that runs longer than its limit (the lease "
            "keeper stops renewing a turn past step_limit)")


def _outcome(settings: Settings, provider: str) -> str:
    """What the folder's provider makes of a delivered file: signed, stored or loaded."""
    return steps_of(settings.providers[provider].kind).outcome


def _empty() -> dict[str, Any]:
    return {"watch": "", "outage": "", "paused": "", "disk_full": "", "blocked": [],
            "problem": "", "settling": 0, "waiting": [], "in_flight": 0, "delivered": 0,
            "oldest_waiting_seconds": 0.0,
            "ignored": _ignored(None, 0.0), "fragments_suspected": 0, "fragments": [],
            "files": {}, "batch_states": {}, "batches": [], "failed": [], "records_failed": [],
            "signed_per_minute": [0] * HOUR_MINUTES}


CONDITIONS = (("outage", "share out"), ("disk_full", "disk full"), ("paused", "claims paused"),
              ("problem", "not making progress"))
BLOCKED = "claims stopped"


def conditions(folder: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, reason) of what holds a folder up; a pause for disk space shows once."""
    return [(label, folder[key]) for key, label in CONDITIONS
            if folder[key] and not (key == "paused" and folder[key] == folder["disk_full"])] \
        + [(BLOCKED, b["message"]) for b in folder["blocked"]]


def ignored_why(ignored: dict[str, Any]) -> str:
    """What an operator reads of the ignored files in an inbox, and what to do."""
    age = ignored["oldest_age_seconds"]
    oldest = "" if age is None else (f"; the oldest, {ignored['oldest']}, was last written "
                                     f"{age_text(age)} ago")
    return (f"{ignored['count']} file(s) whose names are ignored (temporary or hidden names, "
            f"exclude patterns) lie in the inbox{oldest}: one still being copied is young; "
            "rename a forgotten one to have it sealed, or remove it")


def age_text(seconds: float) -> str:
    """An age as a person reads it: 45 s, 12 min, 3.5 h, 4 days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def summary(report: dict[str, Any]) -> str:
    """One line: waiting, in flight, failed, shares out, claims stopped, the first alarm
    (systemd STATUS=); a folder the first alarm is about is not named twice."""
    folders = report["folders"].values()
    alarms = [a for a in report["alarms"] if a != "the daemon is not running"]
    first = alarms[0] if alarms else ""
    parts = [f"{sum(f['settling'] for f in folders)} waiting",
             f"{sum(f['in_flight'] for f in folders)} in flight",
             f"{sum(f['delivered'] for f in folders)} {_word(folders)}",
             f"{sum(f['files'].get(FileState.FAILED, 0) for f in folders)} failed"]
    for key, label in (("outage", "share out"), ("blocked", BLOCKED)):
        names = [name for name, f in report["folders"].items()
                 if f[key] and not first.startswith(f"folder {name}: {label}:")]
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    line = ", ".join(parts)
    return f"{line}; {first}" if first else line


def _word(folders: Iterable[dict[str, Any]]) -> str:
    """The folders' common outcome word ("signed" when all sign), else "delivered"."""
    words = {f.get("outcome", "signed") for f in folders}
    return words.pop() if len(words) == 1 else "delivered"
