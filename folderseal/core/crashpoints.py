"""Named crash points, for the crash tests: die right after a chosen step.

``FOLDERSEAL_CRASH_AT=state:ACCEPTING`` makes the daemon kill itself with SIGKILL
right after the step of that name (``NAME@N`` on its N-th time). A SIGKILL leaves
no chance to clean up, which is the point: the restart must cope. Unset, the check
costs one dictionary lookup.

Every crash point, and what a restart does after it (docs/design.md, "The crash
table", has the whole table):

Intake, the state machine and delivery

- ``claimed``: files renamed into the work folder, not yet recorded: the scan at
  start registers and batches them (they were never sent anywhere).
- ``state:<BATCH STATE>`` (after each transition, ``state:BATCHED`` included): the
  restart resumes the step of that state (its row in docs/design.md's crash table).
- ``attempt``: attempts counted, the call not yet made: the step runs again, the
  attempt stays counted.
- ``output-published``: a batch's outputs published, their sidecars not yet:
  delivery runs again and keeps the outputs already there with the right hash.
- ``sidecar-published``: sidecars written, originals not yet removed: DELIVERED is
  stored again and the originals are removed or archived (idempotent).
- ``original-removed``: originals gone, the remote batch not yet deleted: the remote
  batch (or published copy) is deleted and the batch cleaned.
- ``move:copied``: a file moved to another filesystem has its name there, its original
  not removed yet: the copy is recognised by its content and taken as the move's
  result (or removed when the move is undone), so no file stays in two places.

SEAL

- ``seal:created``: the remote batch made, its id not yet stored: create again (the
  orphan is never accepted, so it never signs anything).
- ``seal:uploading`` (in the middle of the stream) and ``seal:uploaded`` (the answer
  not yet stored): the remote status decides: the upload is proven whole, or the
  remote batch is abandoned and the files go to a new one.
- ``seal:accepted``: accept answered, ACCEPTED not yet stored: from ACCEPTING the
  status shows it started, and it is polled (never accepted twice).
- ``seal:downloading`` (in the middle of the stream): CLOSED is downloaded again.

Clevver

- ``clevver:created``: the remote batch made, its id not yet stored: create again (the
  orphan is never started, so it stores nothing).
- ``clevver:attaching`` (in the middle of an attach) and ``clevver:attached`` (answered,
  the ledger not yet told): the document is in doubt there, so that remote batch is
  abandoned (never started) and the files go to a new one.
- ``clevver:starting`` (ACCEPTING stored, start not sent) and ``clevver:started`` (start
  answered, ACCEPTED not yet stored): the status tells: started → polled; still open
  after status_grace_seconds → started then (never twice).

Centrapay

- ``centrapay:publishing`` (the key recorded, the copy or upload in the middle):
  create runs again under the same key and replaces the partial copy whole.
- ``centrapay:published`` (the copy whole, UPLOADED not yet stored): create runs again
  under the same key (the copy replaced) or the status finds it published whole.
- ``centrapay:creating`` (ACCEPTING stored and the create noted in the manifest, not
  sent): no batch id is recorded, and Centrapay cannot be asked, so the file fails as
  ``outcome_unknown`` (never created again unasked; the published copy stays for
  max_wait_seconds, then goes).
- ``centrapay:created`` (the create answered and its id recorded, ACCEPTED not yet
  stored): from ACCEPTING the recorded id is polled (never created twice).

``folderseal retry`` (:mod:`folderseal.publish.retrying`)

- ``retry:recorded`` (its intent stored, the files RETRYING, nothing moved),
  ``retry:staged`` (a file at its hidden name in the inbox) and ``retry:moved`` (after
  each file reached its place, the store not yet told): the next ``folderseal retry``
  or the daemon's reconcile of the errors folder runs the moves (each only what is
  still where it was) and the end again.
"""

from __future__ import annotations

import os
import signal
import threading

_counts: dict[str, int] = {}
_lock = threading.Lock()


def reached(name: str) -> None:
    target = os.environ.get("FOLDERSEAL_CRASH_AT")
    if not target:
        return
    wanted, _, nth = target.partition("@")
    if wanted != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        if _counts[name] >= int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
