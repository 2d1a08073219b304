"""``folderseal recover``: rebuild a lost store from the work folders and the provider.

When the store is lost or replaced, the daemon refuses to start (it cannot know what
the files in the work folder went through). ``recover`` settles each file there:

* ``incoming/<claim>/…``: never sent anywhere; left for the daemon, which registers
  unknown claims at start;
* a file in ``batches/<batch>/`` the store does not know, with a sidecar in the outbox
  naming that batch and the file's sha256: it was delivered, and the original is
  archived or deleted as the daemon would have;
* the other files of such a batch, by what the batch's manifest (``.batch.json``,
  see :mod:`folderseal.work`) and the provider say:

  - no remote batch id in the manifest, or a provider that keeps no remote batch (the
    local signer): nothing was ever uploaded anywhere (ids are kept before any
    upload), and the local provider publishes once, which a sidecar proves: back into
    the inbox at their source path;
  - the provider shows the remote batch started (running, closed or failed): the
    batch is recorded again as ACCEPTED, and the daemon polls, downloads and
    delivers it;
  - not started, and the provider proves it holds exactly the batch's files
    (``holds_upload``, with each document's answer from the manifest): recorded as
    ACCEPTING, so the daemon asks the provider again, after its grace, before
    accepting;
  - created, or uploaded only in part: it was never accepted (folderseal accepts only
    a complete upload): the remote batch is deleted and the batch recorded as new;
  - gone, and the manifest has every file answered for it (accept may have been
    sent): recorded as ACCEPTING, so the daemon delivers what the provider can still
    prove (a receipt) and fails the rest as "may have been stored";
  - a provider whose accept creates the remote batch (Centrapay): no remote id, and
    the manifest shows no create about to be sent: never sent, back into the inbox
    (what was published for it is removed by the daemon at start); a create about to
    be sent, its answer not kept: recorded as ACCEPTING, and the daemon fails it as
    ``outcome_unknown``; a remote id kept: ACCEPTED when the provider shows it,
    otherwise ACCEPTING (the daemon allows its grace, then ``outcome_unknown``);
  - a file the manifest marks rejected by the provider is no longer part of the batch:
    to the errors folder with its reason, as the daemon would have;
  - gone, no manifest, or a file the manifest does not list (or one whose id the
    store knows already, a store restored from an older copy): it may have been
    signed (stored, loaded): to the errors folder, with a record saying to check with
    the provider;

  Each document's answers the manifest keeps (``documents``) go back into the store.

* a file the store has waiting (claimed, batched or signed) that is not in the work
  folder: an original leaves only once delivered, failed or re-batched, so the store
  is older than the work folder (restored from a copy, or its last writes lost). Each
  is settled by what names its sha256: a sidecar in the outbox (delivered), a return
  to the inbox just now (taken again), an error record (failed), or nothing (failed,
  with a record saying so). A batch left with no file waiting moves on to DELIVERED,
  so the daemon removes its remote batch and its folder;
* temp files a crash left in the outbox and errors folders are removed (no daemon runs,
  so none is being written);
* the marker is rewritten with this store's id.

A batch whose provider cannot be asked now is left as it is, and the command ends
with exit 1: run it again when the provider answers (the daemon refuses to start
until then, so nothing is signed twice).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from folderseal.batches import lifecycle, views
from folderseal.core import files, statelock
from folderseal.core.config import FolderConfig, Settings
from folderseal.core.errors import ConfigError, ExitCode, ProviderError, TransientError
from folderseal.core.model import BatchState, FileRecord, FileState
from folderseal.providers import Provider, Remote, ask_status, build, steps_of
from folderseal.publish import sidecar
from folderseal.service import node, traces
from folderseal.store import Store
from folderseal.store.opening import open_store
from folderseal.work import Manifest, WorkFolder

WAITING = (FileState.CLAIMED, FileState.BATCHED, FileState.READY)
FINISHED = (BatchState.DELIVERED, BatchState.CLEANED, BatchState.FAILED)
OUTCOME_WORDS = {FileState.DONE: "files found delivered",
                 FileState.RETRIED: "files taken again from the inbox",
                 FileState.FAILED: "files failed"}


def missing_originals(store: Store, folder: str, cfg: FolderConfig) -> list[FileRecord]:
    """Files waiting in the work folder by the store's account that are not there: an
    original leaves only once delivered, failed or re-batched, so the store is older than
    the work folder (restored from a copy, or its last writes lost)."""
    work = WorkFolder(cfg.work_folder, folder, store.node)
    gone = []
    for state in WAITING:
        for record in store.files_in_state(folder, state):
            places = [work.path_of(record)]
            if state == FileState.BATCHED:  # its batch may not have moved it in yet
                places += [d / record.source for d in work.claim_dirs(record.id)]
            # On its way to errors (a crash came before its state was written).
            places += [cfg.errors / o["path"] for o in record.outputs if o.get("role") == "error"]
            if not any(os.path.lexists(p) for p in places):
                gone.append(record)
    return gone


@dataclass(frozen=True, slots=True)
class _File:
    """A file of an unknown batch that was not delivered."""

    entry: str
    path: Path
    source: str
    sha256: str
    size: int
    file_id: str | None   # from the manifest; None if it does not list this file


class _Folder:
    """Recovers the unknown batches of one folder."""

    def __init__(self, name: str, cfg: FolderConfig, settings: Settings, store: Store,
                 provider: Provider | None) -> None:
        self.name = name
        self.cfg = cfg
        self.store = store
        self.provider = provider  # None for a provider that keeps no remote batch
        self.state_dir = settings.state_dir
        self.staging = views.Staging.of(settings)
        self.work = WorkFolder(cfg.work_folder, name, store.node)
        self.delivered = traces.records(cfg.outbox, ".json")
        self.failed = traces.records(cfg.errors, ".error.json")
        self.requeued: set[str] = set()  # sha256 of files put back into the inbox
        # Detached signatures the sink places beside a copy of the original (NAME.p7s…).
        self.suffixes: list[str] = getattr(settings.providers[cfg.provider],
                                           "signature_suffixes", [".p7s"])

    def batch(self, batch_id: str) -> str:
        """Settle one unknown batch; what became of it, in words."""
        folder = self.work.batch_dir(batch_id)
        manifest = self.work.manifests.read(batch_id)
        listed = {f.entry: f for f in manifest.files} if manifest else {}
        rejected = manifest.rejected if manifest else {}
        removed, refused, pending = 0, 0, []
        for entry in sorted(n for n in os.listdir(folder) if not n.startswith(".")):
            path = folder / entry
            digest, size = files.hash_path(path)
            key = (batch_id, digest)
            if key in self.delivered:
                self._finish(path, self.delivered[key] or entry)
                removed += 1
                continue
            info = listed.get(entry)
            if info is None or info.sha256 != digest:
                info = None
            source = traces.safe_source(info.source if info else self.failed.get(key)) or \
                re.sub(r"^\d{4}_", "", entry)
            found = _File(entry, path, source, digest, size, info.id if info else None)
            if found.file_id in rejected:  # out of the batch: to errors, as the daemon would
                self._reject(batch_id, found, *rejected[found.file_id])
                refused += 1
                continue
            pending.append(found)
        done = f"{removed} delivered before (original " \
               f"{'archived' if self.cfg.archive else 'removed'})" + \
            (f"; {refused} rejected by the provider, in errors" if refused else "")
        outcome = self._settle(batch_id, manifest, pending, set(rejected)) if pending \
            else "nothing left"
        self.staging.remove(self.work, batch_id)
        if self.store.batch(batch_id) is None:
            self.work.remove_batch(batch_id)
        return f"{done}; {outcome}"

    def _settle(self, batch_id: str, manifest: Manifest | None, pending: list[_File],
                rejected: set[str]) -> str:
        if self.provider is not None and manifest is None:
            return self._hold_all(batch_id, pending, "the batch has no manifest")
        creates = self.provider is not None and self.provider.steps.accept_creates
        if creates and manifest is not None and not manifest.remote_ids and \
                any(f.file_id in manifest.notes for f in pending):  # a create about to go
            return self._restore(batch_id, pending, {}, BatchState.ACCEPTING, None,
                                 "a create was about to be sent and its answer was not kept",
                                 manifest.published)
        if self.provider is None or manifest is None or not manifest.remote_ids:
            for f in pending:  # never uploaded to any remote batch: taken again
                files.move_numbered(f.path, self.cfg.inbox / f.source)
                self.requeued.add(f.sha256)
            return f"{len(pending)} back in the inbox (never sent to a provider)"
        known = self.store.known_ids([f.file_id for f in pending if f.file_id])
        if any(f.file_id is None or f.file_id in known for f in pending):
            return self._hold_all(batch_id, pending, "the batch's manifest does not list them")
        remote_id = manifest.remote_ids[-1]
        notes = manifest.notes
        view = views.batch_view(batch_id, self.work, self.staging, (
            views.document(entry=f.entry, file_id=f.file_id or "", sha256=f.sha256,
                           size=f.size, notes=notes) for f in pending))
        status = ask_status(self.provider, view, remote_id)
        entries = sorted(f.entry for f in pending)
        listed = sorted(f.entry for f in manifest.files if f.id not in rejected)
        if status.state in lifecycle.STARTED:
            return self._restore(batch_id, pending, notes, BatchState.ACCEPTED, remote_id,
                                 f"remote batch {remote_id} is {status.detail or status.state}",
                                 manifest.published)
        if self.provider.steps.accept_creates:  # accepted, whatever its status shows now
            return self._restore(batch_id, pending, notes, BatchState.ACCEPTING, remote_id,
                                 f"remote batch {remote_id} was created, and is "
                                 f"{status.detail or status.state} now", manifest.published)
        # Accept (start) is only ever sent once the provider proved the remote batch holds
        # every file of the batch (holds_upload: for Clevver, each one answered for this
        # remote batch with its checksum; a rejected file is no longer part of it) and no
        # copy of a rejected file. So a batch that holds it may have been started, its
        # start not yet shown (Clevver shows one late): ACCEPTING, and the daemon's grace
        # decides. One that does not (a send in doubt or never made, a rejected file's
        # wrong copy attached) was never started: it is safe to abandon.
        if status.state in lifecycle.OPEN and listed == entries and \
                not _holds_copy(notes, rejected, remote_id) and \
                self.provider.holds_upload(view, status):
            return self._restore(batch_id, pending, notes, BatchState.ACCEPTING, remote_id,
                                 f"remote batch {remote_id} holds the upload; accept may have "
                                 "been sent")
        if status.state == Remote.GONE and listed == entries and \
                all(_holds_copy(notes, {f.file_id or ""}, remote_id) for f in pending):
            # Every file answered: accept may have been sent. From ACCEPTING the daemon
            # asks again and salvages what the provider can still prove (a receipt); the
            # rest goes to errors as "may have been stored".
            return self._restore(batch_id, pending, notes, BatchState.ACCEPTING, remote_id,
                                 f"the provider no longer knows remote batch {remote_id}; "
                                 "every file was sent there, so what it can still prove is "
                                 "delivered")
        if status.state in lifecycle.OPEN:
            try:  # never accepted; a late upload into it must not count
                self.provider.delete(view, remote_id)
            except (TransientError, ProviderError) as exc:
                print(f"  (could not delete remote batch {remote_id}: {exc}; it was never "
                      "accepted)")
            return self._restore(batch_id, pending, notes, BatchState.BATCHED, None,
                                 f"remote batch {remote_id} was never accepted")
        return self._hold_all(batch_id, pending, f"the provider no longer knows remote batch "
                              f"{remote_id} ({status.detail or status.state})")

    def _restore(self, batch_id: str, pending: list[_File], notes: dict[str, dict[str, Any]],
                 state: BatchState, remote_id: str | None, why: str, published: str = "") -> str:
        rows = []
        now = self.store.clock()
        for f in pending:
            st = f.path.lstat()
            rows.append({"id": f.file_id, "folder": self.name, "source": f.source,
                         "dev": st.st_dev, "ino": st.st_ino, "size": f.size,
                         "mtime_ns": st.st_mtime_ns, "sha256": f.sha256, "seen_at": now,
                         "entry": f.entry})
        with self.store.transaction():
            self.store.restore_batch(batch_id=batch_id, folder=self.name,
                                   provider=self.cfg.provider, state=state,
                                   remote_id=remote_id, files=rows, why=why,
                                   publish_key=published or None)
            for f in pending:  # each document's latest answer, as the manifest kept it
                if f.file_id and f.file_id in notes:
                    self.store.note_remote_document(batch_id, f.file_id, notes[f.file_id])
        return f"{len(pending)} recorded again as {state} ({why}); the daemon goes on"

    def _hold_all(self, batch_id: str, pending: list[_File], why: str) -> str:
        """Files that may have been signed: to errors, with a record that says to check.
        An output a delivery already placed in the outbox (its sidecar never written) goes
        with its original, so the outbox holds nothing without a sidecar."""
        assert self.provider is not None
        mode = files.folder_mode(self.cfg.file_mode)
        for f in pending:
            outputs = traces.unnamed_outputs(self.cfg.outbox, f.source, f.sha256, f.size,
                                              self.suffixes)
            target = files.move_numbered(f.path, self.cfg.errors / f.source, mode)
            moved = [files.move_numbered(out, target.parent / out.name, mode).name
                     for out in outputs]
            note = (f"; its output ({', '.join(moved)}), placed in the outbox before the "
                    "store was lost but never given a sidecar, is beside it") if moved else ""
            self._write_record(target, f.source, f.sha256, f.size, batch_id, "store_lost",
                               f"the store was lost while this file was in batch {batch_id} "
                               f"of provider {self.provider.name} and {why}; it may have "
                               f"been {self.provider.steps.outcome}: check with the "
                               "provider, then drop it into "
                               f"the inbox again{note}")
        return f"{len(pending)} in errors, to check with the provider ({why})"

    def _reject(self, batch_id: str, f: _File, code: str, message: str) -> None:
        """A file the provider rejected (the manifest says so): to errors with its reason;
        it is never part of the batch again."""
        target = files.move_numbered(f.path, self.cfg.errors / f.source,
                                     files.folder_mode(self.cfg.file_mode))
        self._write_record(target, f.source, f.sha256, f.size, batch_id, code, message)

    def _write_record(self, target: Path, source: str, sha256: str | None, size: int,
                      batch_id: str, code: str, message: str) -> None:
        body = sidecar.failed_by_recover(
            folder=self.name, source=source, sha256=sha256, size=size, batch_id=batch_id,
            provider_name=self.cfg.provider, code=code, message=message, original=str(target))
        files.makedirs(target.parent, files.folder_mode(self.cfg.file_mode))
        files.write_new(target.parent, target.name + ".error.json", body, self.cfg.file_mode)
        self.failed[(batch_id, sha256 or "")] = source

    def stale(self, gone: list[FileRecord]) -> str:
        """Settle the waiting files the store has that left the work folder after its copy
        was made, by what names their sha256; what became of them, in words."""
        delivered = {sha for _, sha in self.delivered}
        failed = {sha for _, sha in self.failed}
        outcome: Counter[str] = Counter()
        for record in gone:
            sha = record.sha256 or ""
            if sha in delivered:  # and its original is gone: nothing is left to do
                to, why = FileState.DONE, "its sidecar is in the outbox"
            elif sha in self.requeued:
                to, why = FileState.RETRIED, "put back into the inbox by recover"
            else:
                to, why = FileState.FAILED, "not in the work folder"
                if sha not in failed:
                    self._write_record(
                        self.cfg.errors / record.source, record.source, record.sha256,
                        record.size, record.batch_id or "", "store_stale",
                        "the store was older than the work folder: this file left it, but "
                        "no sidecar or error record names it; check the outbox and the "
                        "provider before dropping it again")
            self.store.set_file_state(record.id, record.state, to, batch_id=record.batch_id,
                                      detail=f"folderseal recover: {why}")
            outcome[OUTCOME_WORDS[to]] += 1
        for batch_id in sorted({r.batch_id for r in gone if r.batch_id}):
            batch = self.store.batch(batch_id)
            if batch is not None and batch.state not in FINISHED and not any(
                    r.state in WAITING for r in self.store.files_of_batch(batch_id)):
                self.store.resume_batch(batch, BatchState.DELIVERED, "no file of it is waiting")
                outcome["batches to finish"] += 1
        return "the store was older than the work folder: " + ", ".join(
            f"{n} {what}" for what, n in sorted(outcome.items()))

    def _finish(self, path: Path, source: str) -> None:
        if self.cfg.archive is not None:
            files.move_numbered(path, self.cfg.archive / (traces.safe_source(source) or path.name),
                                files.folder_mode(self.cfg.file_mode))
        else:
            path.unlink()


def _holds_copy(notes: dict[str, dict[str, Any]], file_ids: set[str], remote_id: str) -> bool:
    """True if one of ``file_ids`` was answered (taken) in ``remote_id``."""
    return any((n := notes.get(i)) and n.get("batch") == remote_id and n.get("id")
               for i in file_ids)


def recover(settings: Settings) -> int:
    """``folderseal recover``: settle every folder's work folder against the store in
    the state folder, which no daemon may hold meanwhile."""
    lock = statelock.acquire(settings.state_dir)  # never beside a running daemon
    store = open_store(settings, check=True)
    try:
        # On a shared store, the store's own lock keeps out, for the whole run, another
        # recover and every node that would start (each checks it at start).
        if not store.lock_recover():
            raise ConfigError("another `folderseal recover` runs on this store, or a node "
                              "is starting on it: let that recover finish (or the node "
                              "start, then stop it), then run `folderseal recover` again")
        node.refuse_beside_live_nodes(store, settings, "before `folderseal recover`")
        return settle(settings, store, lambda name: build(name, settings.providers[name],
                                                          settings.state_dir))
    finally:
        store.unlock_recover()
        store.close()
        os.close(lock)


def settle(settings: Settings, store: Store, make_provider: Callable[[str], Provider]) -> int:
    """Settle each folder's work folder against ``store`` (no daemon runs on it), saying
    what became of each batch; the exit code. ``make_provider`` builds the provider of a
    name, for folders with unknown batches whose provider keeps remote batches: each is
    started once and closed at the end."""
    providers: dict[str, Provider] = {}
    code = ExitCode.OK
    try:
        store.release_node_leases()  # no daemon runs: the leases it held are void
        for name, cfg in settings.folders.items():
            work = WorkFolder(cfg.work_folder, name, store.node)
            if not work.path.is_dir():
                continue
            unknown = [b for b in work.batch_ids() if store.batch(b) is None]
            provider = None
            if unknown and steps_of(settings.providers[cfg.provider].kind).remote:
                provider = providers.get(cfg.provider)
                if provider is None:
                    provider = make_provider(cfg.provider)
                    provider.start()
                    providers[cfg.provider] = provider
            folder = _Folder(name, cfg, settings, store, provider)
            for batch_id in unknown:
                try:
                    print(f"folder {name}, batch {batch_id}: {folder.batch(batch_id)}")
                except (TransientError, ProviderError) as exc:
                    print(f"folder {name}, batch {batch_id}: left as it is: the provider "
                          f"could not be asked ({exc}); run 'folderseal recover' again later")
                    code = ExitCode.FAILURE
            gone = missing_originals(store, name, cfg)  # after the unknown batches
            if gone:
                print(f"folder {name}: {folder.stale(gone)}")
            swept = traces.sweep_temp_files(cfg)
            if swept:
                print(f"folder {name}: removed {swept} temp file(s) a crash left behind")
            if work.owner() != store.store_id:
                work.hand_over(store.store_id)
                print(f"folder {name}: the work folder now belongs to store {store.store_id}")
        print("recovered; start the daemon again" if code == ExitCode.OK else
              "not all recovered: the daemon refuses to start until every batch is settled")
        return code
    finally:
        for provider in providers.values():
            provider.close()
