"""``folderseal retry``: put failed files back, without ever sealing one twice.

What a retry does depends on how far the file got (docs/design.md, "folderseal retry"):

* failed before its batch could have been accepted (at the claim, or a batch that
  failed before ``ACCEPTING``), or with a provider whose accept is no point of no
  return (the ``local`` signer, for which "signed once" means "published once"), or
  a document the remote provider reports as not signed: the original goes back from
  the errors folder into its inbox, at its relative path (``-N`` if taken), and is
  taken like a new drop;
* in a remote batch that failed at or after ``ACCEPTING`` (it may have run):
  the originals go back into the batch folder and the batch back to ``ACCEPTED``,
  so the same remote batch is asked again (status, download); nothing is submitted
  again;
* any other failure after a remote provider may have signed it is refused, with
  the reason: check with the provider, then drop the file again by hand;
* ``outcome_unknown`` (the provider may have taken the file, and cannot be asked:
  Centrapay's create whose answer was lost): refused, unless ``--force`` names the
  file by its own id (never with ``--all``): then it goes back into the inbox and is
  sent again as a new batch.

"How far it got" is :mod:`folderseal.batches.lifecycle`'s table.

Only the very file that failed is moved: the file at the place its failure recorded,
with the content recorded then (:mod:`folderseal.publish.errorfiles`). A failure marked
``CLEARED`` is looked for again (its file may be back); one gone, replaced or changed
is refused with the reason and what to do. The moves are :mod:`folderseal.publish.retrying`'s:
recorded first, safe against a crash at any point; a retry first finishes what an
interrupted one left.

Ids are file ids (``retry_id`` in the error record) or batch ids (all failed files of
the batch), as ``status`` shows, or paths in an errors folder (the original or its
``.error.json``). A batch that is not failed but waits for its next attempt is made
due now: the daemon takes it up within a second.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from folderseal.batches import lifecycle
from folderseal.commands.shared import add_command, settings
from folderseal.core.config import Settings
from folderseal.core.errors import ExitCode, FolderSealError, StateConflict
from folderseal.core.model import BatchRecord, BatchState, FileRecord, FileState
from folderseal.providers import OUTCOME_UNKNOWN, steps_of
from folderseal.publish import retrying
from folderseal.publish.errorfiles import ERROR_SUFFIX, Found, find_original, place_of, record_file
from folderseal.publish.retrying import Move, Refused
from folderseal.store import Store
from folderseal.store.opening import open_store
from folderseal.work import WorkFolder

if TYPE_CHECKING:
    from folderseal.commands.shared import Subparsers

NOT_SIGNED_CODES = frozenset({"not_signed"})  # the provider itself says so
# Failed, with the original in the errors folder (FAILED) or perhaps no longer (CLEARED).
RETRYABLE = (FileState.FAILED, FileState.CLEARED)
LOCK_WAIT_SECONDS = 30.0


def add_parser(commands: Subparsers) -> None:
    retry = add_command(commands, "retry", handle, "put failed files back (see docs/design.md)")
    retry.add_argument("--all", action="store_true", help="every failed file")
    retry.add_argument("ids", nargs="*", metavar="ID", help="file or batch ids")
    retry.add_argument("--force", action="store_true",
                       help="also send again the files named by their own id whose outcome "
                       "is unknown (outcome_unknown: the provider may have taken them and "
                       "cannot be asked; look first); never with --all")


def handle(args: argparse.Namespace) -> int:
    if not args.all and not args.ids:
        print("folderseal retry: give --all or one or more file or batch ids", file=sys.stderr)
        return ExitCode.USAGE
    if args.force and args.all:
        print("folderseal retry: --force sends files whose outcome is unknown again; name "
              "each by its id (never with --all)", file=sys.stderr)
        return ExitCode.USAGE
    return retry(settings(args), None if args.all else args.ids, force=args.force)


def _found(settings: Settings, store: Store, record: FileRecord) -> Found:
    """The very file that failed (or why not). A failure found gone is marked CLEARED, as
    the daemon's next rescan would; a CLEARED one is looked for again, unless another
    failure's file is at its place now."""
    errors = settings.folders[record.folder].errors
    path = (place_of(record) or {}).get("path")
    if record.state == FileState.CLEARED:
        other = next((r for r in store.files_in_state(record.folder, FileState.FAILED)
                      if (place_of(r) or {}).get("path") == path), None)
        if other is not None:
            return Found(None, f"the file at {errors / str(path)} is another failure's now",
                         f"retry {other.id} for that one")
    found = find_original(errors, record, hashed=True)
    if found.gone and record.state == FileState.FAILED:
        with contextlib.suppress(StateConflict):  # the daemon's rescan marked it first
            store.set_file_state(record.id, FileState.FAILED, FileState.CLEARED,
                                 detail=found.problem)
    return found


def _way(settings: Settings, record: FileRecord, batch: BatchRecord | None,
         forced: bool = False) -> tuple[str, str]:
    """How this failed file may be retried: "inbox", "batch" or "refuse" (and why).
    ``forced``: the operator named this very file with --force."""
    if batch is None:
        return "inbox", ""
    if record.error_code == OUTCOME_UNKNOWN:
        if forced:
            return "inbox", ""
        return "refuse", ("it may have been taken by the provider, which cannot be asked "
                          f"(the answer to batch {batch.id}'s create was lost): look for a batch "
                          "created then for this file at the provider; if there is none, "
                          f"`folderseal retry --force {record.id}` sends it again (never "
                          "with --all)")
    if batch.provider not in settings.providers:
        return "refuse", (f"its batch's provider {batch.provider!r} is no longer configured, so "
                          "how far it got cannot be judged: put that provider back into the "
                          "configuration and retry again, or check with that provider and "
                          "drop the file into the inbox by hand")
    steps = steps_of(settings.providers[batch.provider].kind)
    if not steps.irrevocable:
        return "inbox", ""
    if batch.state == BatchState.FAILED:
        return ("batch" if lifecycle.may_have_run(batch.failed_step, steps) else "inbox"), ""
    if record.error_code in NOT_SIGNED_CODES | steps.not_sent:
        return "inbox", ""
    if record.error_code in steps.ask_again:
        if batch.state == BatchState.CLEANED:
            return "batch", ""
        return "refuse", (f"its batch {batch.id} is still being finished ({batch.state}): run "
                          "retry again in a minute")
    return "refuse", (f"it may have been {steps.outcome} by the provider "
                      f"({record.error_code}): check "
                      f"with the provider (remote batch {batch.remote_id}), then drop it into "
                      "the inbox again by hand if it was not")


def _to_inbox(settings: Settings, store: Store, record: FileRecord) -> str:
    found = _found(settings, store, record)
    if found.path is None:
        raise Refused(found.why)
    cfg = settings.folders[record.folder]
    move = Move(record, "inbox", found.path, cfg.inbox / record.source,
                record_file(cfg.errors, place_of(record) or {}))
    retrying.begin(store, cfg, [move])
    return retrying.carry_out(store, cfg, [move])


def _to_batch(settings: Settings, store: Store, batch: BatchRecord) -> tuple[list[FileRecord], str]:
    """Put a remote batch's originals back and ask the same remote batch again.

    A failed batch takes back all its failed files; a finished one those that failed
    alone and that its provider is only asked about again (Clevver's receipts without a
    transaction id). They go back together, or none: each original is checked
    (the very file, unchanged) before any is moved. A batch that failed at ACCEPTING goes
    back there (its status decides whether accept is sent); one that failed later goes
    back to ACCEPTED (poll, download).
    """
    cfg = settings.folders[batch.folder]
    folder = WorkFolder(cfg.work_folder, batch.folder, settings.node_name).batch_dir(batch.id)
    records = [r for r in store.files_of_batch(batch.id) if r.state in RETRYABLE]
    if batch.state != BatchState.FAILED:  # files that failed alone: those asked again
        ask_again = steps_of(settings.providers[batch.provider].kind).ask_again
        records = [r for r in records if r.error_code in ask_again]
    stay = (f"Batch {batch.id} may have been signed, so it is asked again only with all its "
            "failed files, and they must not be dropped into the inbox: bring the very file "
            "back into the errors folder, then run retry again; if it is lost, ask the "
            f"provider what became of remote batch {batch.remote_id}")
    moves = []
    for record in records:
        found = _found(settings, store, record)
        if found.path is None:
            raise Refused(f"{record.id} {record.source_text}: {found.problem}. {stay}")
        if found.sha256 is None:
            raise Refused(f"{record.id} {record.source_text}: {found.path} cannot be read, so "
                          "it cannot be told to be the very file that was submitted: let "
                          f"folderseal's user read it, then run retry again. {stay}")
        if record.entry is None or found.sha256 != record.sha256:
            raise Refused(f"{record.id} {record.source_text}: {found.path} is not the file "
                          f"that was submitted. {stay}")
        moves.append(Move(record, "batch", found.path, folder / record.entry,
                          record_file(cfg.errors, place_of(record) or {})))
    retrying.begin(store, cfg, moves)
    return records, retrying.carry_out(store, cfg, moves)


def _id_of_path(settings: Settings, store: Store, given: str) -> str | None:
    """The file id of a path in an errors folder (the original or its record)."""
    path = Path(os.path.abspath(given))
    path = Path(os.path.realpath(path.parent)) / path.name.removesuffix(ERROR_SUFFIX)
    for name, cfg in settings.folders.items():
        root = Path(os.path.realpath(cfg.errors))
        if root not in path.parents:
            continue
        relative = str(path.relative_to(root))
        candidates = [r for state in RETRYABLE for r in store.files_in_state(name, state)
                      if (place_of(r) or {}).get("path") == relative]
        if candidates:  # the one still failed there, else the latest that failed there
            return max(candidates, key=lambda r: (r.state == FileState.FAILED, r.claimed_at)).id
    return None


def _explain_non_failure(store: Store, given: str) -> bool:
    """Say what an id without a failed file is, and wake its batch if it waits; True
    when that is all as it should be, False when it is an error."""
    record = store.file(given)
    if record is not None and record.state == FileState.RETRYING:
        print(f"{given} {record.source_text}: not retried: an earlier retry of it could not "
              "be finished (said above): fix that, then run retry again", file=sys.stderr)
        return False
    if record is not None and record.state in (FileState.DONE, FileState.RETRIED):
        done = "it was delivered" if record.state == FileState.DONE \
            else "an earlier retry put it back into the inbox"
        print(f"{given} {record.source_text}: nothing to retry: {done}")
        return True
    batch_id = given if record is None else record.batch_id
    batch = store.batch(batch_id) if batch_id else None
    if batch is None:
        if record is None:
            print(f"{given}: no failed file or batch with this id, and no file of an errors "
                  "folder at this path: copy the id from the error record (retry_id) or from "
                  "`folderseal status`", file=sys.stderr)
            return False
        print(f"{given} {record.source_text}: nothing to retry: it waits to be batched")
        return True
    what = f"batch {batch.id}" if record is None else \
        f"{given} {record.source_text} (batch {batch.id})"
    due = batch.next_attempt_at
    if store.wake_batch(batch.id):
        after = f" after {batch.attempts} failed attempt(s) ({batch.error_message})" \
            if batch.attempts else ""
        print(f"{what}: was waiting in {batch.state}{after}, its next step due in "
              f"{(due or 0) - time.time():.0f} s; woken: the daemon takes it up within a second")
    elif batch.state == BatchState.FAILED:
        print(f"{what}: nothing to retry: each of its files was delivered or retried already")
    elif due is None:
        print(f"{what}: nothing to retry: it is {batch.state}, finished")
    else:
        print(f"{what}: nothing to retry: it is {batch.state}, and being worked on now")
    return True


def _chosen(settings: Settings, store: Store,
            ids: list[str]) -> tuple[list[FileRecord], set[str], bool]:
    """The failed files the ids name (a batch id names all its failed files), the ids of
    those named by their own id or path; False if an id names nothing to retry and that
    is an error."""
    chosen: dict[str, FileRecord] = {}
    named: set[str] = set()
    ok = True
    for given in ids:
        known = store.file(given) is not None or store.batch(given) is not None
        wanted = given if known else _id_of_path(settings, store, given) or given
        record = store.file(wanted)
        if record is not None and record.state in RETRYABLE:
            chosen[record.id] = record
            named.add(record.id)
            continue
        failed = [] if record is not None else \
            [r for r in store.files_of_batch(wanted) if r.state in RETRYABLE]
        chosen.update((r.id, r) for r in failed)
        if not failed and not _explain_non_failure(store, wanted):
            ok = False
    return list(chosen.values()), named, ok


def retry(settings: Settings, ids: list[str] | None, force: bool = False) -> int:
    """Retry the failed files ``ids`` names (None: every failed file). ``force`` sends an
    ``outcome_unknown`` file again, only when ``ids`` names it by its own id."""
    store = open_store(settings)
    try:
        with retrying.lock(settings.state_dir, LOCK_WAIT_SECONDS) as free:
            if not free:
                print("another folderseal retry is at work (or the daemon is finishing an "
                      "interrupted one): run this again when it is done", file=sys.stderr)
                return ExitCode.FAILURE
            return _retry(settings, store, ids, force)
    finally:
        store.close()


def _retry(settings: Settings, store: Store, ids: list[str] | None, force: bool) -> int:
    ok = True
    for name, cfg in settings.folders.items():
        for record, outcome, done in retrying.settle(store, name, cfg):
            print(f"{record.id} {record.source_text}: an interrupted retry "
                  f"{'finished' if done else 'not finished'}: {outcome}",
                  file=sys.stdout if done else sys.stderr)
            ok = ok and done
    forced: set[str] = set()
    if ids is None:
        chosen = store.failed_files()
        if not chosen:
            print("nothing to retry")
    else:
        chosen, named, found = _chosen(settings, store, ids)
        forced = named if force else set()
        ok = ok and found
    by_batch: dict[str, BatchRecord] = {}
    for record in chosen:
        batch = store.batch(record.batch_id) if record.batch_id else None
        way, why = _way(settings, record, batch, forced=record.id in forced)
        try:
            if way == "batch" and batch is not None:
                by_batch[batch.id] = batch
                continue
            if way == "refuse":
                raise Refused(why)
            print(f"{record.id} {record.source_text}: {_to_inbox(settings, store, record)}")
        except (OSError, FolderSealError) as exc:
            print(f"{record.id} {record.source_text}: not retried: {exc}", file=sys.stderr)
            ok = False
    for batch in by_batch.values():
        try:
            records, outcome = _to_batch(settings, store, batch)
            for record in records:
                print(f"{record.id} {record.source_text}: {outcome}")
        except (OSError, FolderSealError) as exc:
            print(f"batch {batch.id}: not retried: {exc}", file=sys.stderr)
            ok = False
    return ExitCode.OK if ok else ExitCode.FAILURE
