"""The invariants every scenario ends with (docs/design.md's promises, checked from outside).

1. Every dropped file is in exactly one place: the outbox with a sidecar, the errors
   folder with a record, or still waiting (inbox or work folder) and counted by
   ``folderseal status``.
2. No file was signed twice: the emulator's journal signed each at most once, and no
   remote batch got AcceptBatch twice; no file has two sidecars.
3. No output is partial: every output a sidecar names is there with its hash, and the
   outbox holds nothing a sidecar does not name (no torn or orphaned output).
   Nothing was sealed that was not dropped whole: every sidecar's input is a version
   the campaign finished writing (no torn or intermediate version was taken).
4. Nothing was written outside the configured folders: the daemon's working folder,
   HOME and TMPDIR (``elsewhere/``) stay empty, the root holds only what the set-up
   made, and no file named by an unsafe package entry exists anywhere.
5. No secret (API key, certificate password) in any log, sidecar, record or status.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.torturekit.world import World
from folderseal.providers.centrapay.emulator import CentrapayEmulator
from folderseal.providers.clevver.emulator import ClevverEmulator
from folderseal.providers.seal.emulator import EmulatorHandle
from tests import centrapay_world

ROOT_ENTRIES = {"inbox", "outbox", "errors", "state", "seal", "config.toml", "elsewhere",
                "logs", "emulator", "signius.key", "clevver.token", "backing", "aside", "secret",
                "public", "centrapay.key"}
TEMP = ".folderseal-tmp-"
UNSAFE_TARGETS = [Path("/abs/evil.txt"), Path("/abs")]


@dataclass
class Verdict:
    files: int = 0
    delivered: int = 0
    failed: int = 0
    waiting: int = 0
    lost: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)   # waiting, but status does not say
    strangers: list[str] = field(default_factory=list)  # sealed, but never dropped as such
    failures: Counter[str] = field(default_factory=Counter)  # error code → files
    journal: list[str] = field(default_factory=list)    # the provider's journal disagrees
    published: list[str] = field(default_factory=list)  # still published after the drain

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        out = []
        for name in ("lost", "twice", "partial", "outside", "secrets", "unlisted",
                     "strangers", "journal", "published"):
            items = getattr(self, name)
            if items:
                out.append(f"{name}: {len(items)}: {items[:5]}")
        return out


def shown(raw: str) -> str:
    """A path as sidecars and records show it: invalid UTF-8 bytes as ``\\xNN``."""
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _hash(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if p.is_file() or p.is_symlink()]


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check(world: World, status: dict[str, Any] | None, ignored: set[str] = frozenset(),
          ) -> Verdict:
    """Check the invariants; ``status`` is ``folderseal status --json`` taken at the end
    (while the daemon ran), ``ignored`` inbox names the daemon is meant to leave alone."""
    layout = world.layout
    verdict = Verdict(files=len(world.dropped))
    places: dict[str, list[str]] = {}

    def place(digest: str | None, where: str) -> None:
        if digest is not None:
            places.setdefault(digest, []).append(where)

    named: set[Path] = set()
    for path in _files(layout.outbox):
        if path.name.startswith(TEMP):
            verdict.partial.append(f"temp file left in the outbox: {path}")
            continue
        if path.suffix != ".json" or (data := read_json(path)) is None or "input" not in data:
            continue
        place(data["input"].get("sha256"), f"outbox:{path.relative_to(layout.outbox)}")
        named.add(path)
        for output in data.get("outputs", []):
            target = layout.outbox / output["path"]
            if not target.exists():  # sidecars show invalid UTF-8 bytes as \xNN
                beside = {shown(str(p.relative_to(layout.outbox))): p
                          for p in path.parent.iterdir()}
                target = beside.get(output["path"], target)
            named.add(target)
            if _hash(target) != output["sha256"]:
                verdict.partial.append(f"{target}: missing or not the bytes its sidecar names")
    for path in _files(layout.outbox):
        if path not in named and not path.name.startswith(TEMP):
            verdict.partial.append(f"{path}: in the outbox, named by no sidecar")
    for path in _files(layout.errors):
        if path.name.endswith(".error.json") and (data := read_json(path)) is not None:
            place(data.get("input", {}).get("sha256"), f"errors:{path.name}")
            verdict.failures[data.get("error", {}).get("code", "?")] += 1
    in_inbox = in_work = 0
    for path in _files(layout.inbox):
        relative = path.relative_to(layout.inbox)
        if relative.parts[0] == ".folderseal":
            # Hidden names there are bookkeeping: manifests and notes, staging, temp files.
            if relative.parts[1:2] == ("work",) and path.name != "store-id" and \
                    not any(part.startswith(".") for part in relative.parts[2:]):
                in_work += 1
                place(_hash(path), "work")
        elif str(relative) not in ignored and not path.name.startswith("."):
            in_inbox += 1
            place(_hash(path), "inbox")

    verdict.strangers += [f"{where[0]}: input sha256 {digest[:12]}… was never dropped whole "
                          "(a torn or intermediate version was taken)"
                          for digest, where in places.items()
                          if digest not in world.dropped and where[0].startswith("outbox")]
    for digest, dropped in world.dropped.items():
        found = places.get(digest, [])
        if not found:
            verdict.lost.append(dropped.source)
        elif len(found) > 1:
            verdict.twice.append(f"{dropped.source}: {found}")
        else:
            where = found[0].split(":")[0]
            if where == "outbox":
                verdict.delivered += 1
            elif where == "errors":
                verdict.failed += 1
            else:
                verdict.waiting += 1
    _check_signatures(world, verdict)
    _check_waiting(status, in_inbox, in_work, verdict)
    _check_outside(world, verdict)
    _check_secrets(world, status, verdict)
    return verdict


def _check_signatures(world: World, verdict: Verdict) -> None:
    """What the provider's own journal says it did: nothing signed or stored twice, no
    batch accepted or started twice; a stored file's receipt proves the file."""
    if isinstance(world.emulator, ClevverEmulator):
        _check_stored(world, world.emulator, verdict)
        return
    if isinstance(world.emulator, CentrapayEmulator):
        _check_loaded(world, world.emulator, verdict)
        return
    if not isinstance(world.emulator, EmulatorHandle):
        return
    signed = Counter(e["sha256"] for e in world.emulator.read_journal() if e.get("signed"))
    for digest, count in signed.items():
        if count > 1:
            source = world.dropped[digest].source if digest in world.dropped else digest
            verdict.twice.append(f"{source}: signed {count} times by the provider")
    accepts = Counter(world.emulator.accept_calls())
    verdict.twice += [f"remote batch {b}: AcceptBatch sent {n} times"
                      for b, n in accepts.items() if n > 1]


def _check_stored(world: World, emulator: ClevverEmulator, verdict: Verdict) -> None:
    verdict.twice += [f"Clevver: {v.get('message') or v}" for v in emulator.violations()]
    for path in _files(world.layout.outbox):
        data = read_json(path) if path.suffix == ".json" else None
        if data is None or data.get("status") != "stored":
            continue
        receipt = data.get("provider", {}).get("receipt") or {}
        if receipt.get("checksum") != data["input"]["sha256"] or not receipt.get("txid"):
            verdict.partial.append(f"{path}: its receipt does not prove the file "
                                   f"(checksum {receipt.get('checksum')}, "
                                   f"txid {receipt.get('txid')})")


def _check_loaded(world: World, emulator: CentrapayEmulator, verdict: Verdict) -> None:
    """Centrapay's journal against the outcomes: nothing loaded or created twice, each
    sidecar's report the one Centrapay made, outcome_unknown only for a create in doubt
    (a fault, or a kill), and nothing left published after the drain."""
    delivered: dict[str, dict[str, Any]] = {}
    failed: dict[str, dict[str, Any]] = {}
    for folder, into in ((world.layout.outbox, delivered), (world.layout.errors, failed)):
        for path in _files(folder):
            if path.suffix == ".json" and (data := read_json(path)) is not None \
                    and "input" in data:
                into[data["input"]["sha256"]] = data
    problems = centrapay_world.journal_verdict(emulator.read_journal(), delivered, failed,
                                               crashed=world.kills > 0)
    verdict.twice += [p for p in problems if "twice" in p or "violation" in p]
    verdict.journal += [p for p in problems if "twice" not in p and "violation" not in p]
    verdict.published += [str(p) for p in world.published()]


def _check_waiting(status: dict[str, Any] | None, in_inbox: int, in_work: int,
                   verdict: Verdict) -> None:
    """Files still waiting must be known: the work folder's to the store, the inbox's
    to the running daemon (as files settling)."""
    if not in_inbox and not in_work:
        return
    if not status:
        verdict.unlisted.append(f"{in_inbox + in_work} files wait but status said nothing")
        return
    folder = status["folders"]["scans"]
    counts = folder["files"]
    in_flight = sum(counts.get(s, 0) for s in ("CLAIMED", "BATCHED", "READY", "REJECTED",
                                                "PUBLISHED"))
    if in_work > in_flight:
        verdict.unlisted.append(f"{in_work} files in the work folder, status counts "
                                f"{in_flight} in flight")
    if in_inbox > folder["settling"] and not folder["outage"] and not folder["paused"]:
        verdict.unlisted.append(f"{in_inbox} files in the inbox, status shows "
                                f"{folder['settling']} settling")


def _check_outside(world: World, verdict: Verdict) -> None:
    elsewhere = world.root / "elsewhere"
    verdict.outside += [f"written outside: {p}" for p in elsewhere.rglob("*")]
    verdict.outside += [f"unexpected at the root: {p}" for p in world.root.iterdir()
                        if p.name not in ROOT_ENTRIES
                        and not p.name.startswith(("daemon-", "config-"))]  # a fleet's nodes
    verdict.outside += [f"an unsafe package entry escaped: {p}" for p in UNSAFE_TARGETS
                        if p.exists()]
    for folder in ("state", "outbox", "errors", "inbox", "backing"):
        for path in _files(world.root / folder):
            if "evil" in path.name and "bell" not in path.name:
                verdict.outside.append(f"an unsafe package entry was written: {path}")


def _check_secrets(world: World, status: dict[str, Any] | None, verdict: Verdict) -> None:
    texts: list[tuple[str, str]] = []
    for folder in ("logs", "outbox", "errors"):
        for path in _files(world.root / folder):
            if path.suffix in (".log", ".json"):
                texts.append((str(path), path.read_text(errors="replace")))
    texts.append(("status", json.dumps(status or {})))
    if isinstance(world.emulator, CentrapayEmulator):   # a publish_dir name reads records
        names = centrapay_world.published_names(world.emulator.read_journal())
        for where, text in texts:
            if where == "status" or where.endswith(".log"):
                verdict.secrets += [f"published name {n[:6]}… in {where}" for n in names
                                    if n in text]
    for secret in world.secrets:
        verdict.secrets += [f"{secret[:4]}… in {where}" for where, text in texts
                            if secret in text]


def count_events(logs: list[Path], names: set[str]) -> Counter[str]:
    """How often each of ``names`` was logged across the daemon's logs."""
    counts: Counter[str] = Counter()
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line).get("event")
            except ValueError:
                continue
            if event in names:
                counts[event] += 1
    return counts


__all__ = ["Verdict", "check", "count_events", "os"]
