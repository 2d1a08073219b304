"""Named crash points, for the crash tests: die (or freeze) right after a chosen step.

``FOLDERSEAL_CRASH_AT=state:ACCEPTING`` makes the daemon kill itself with SIGKILL
right after the step of that name (``NAME@N`` on its N-th time). A SIGKILL leaves
no chance to clean up, which is the point: the restart must cope. Unset, the check
costs one dictionary lookup.

``FOLDERSEAL_PAUSE_AT`` (same names, same ``NAME@N``) makes the process stop itself
with SIGSTOP there instead, once (on the N-th time only): every thread freezes, as in a
long GC pause, a VM migration or a laptop lid, while its lease runs out. The test sees
the process in state ``T`` (``/proc/<pid>/stat``), lets another node take the batch
over, and resumes it with SIGCONT; the process goes on from that very point and must
then find its lease lost. Only the process itself stops (its signing workers, if any,
go on). Both variables may be set at once; each counts its own hits.

Every crash point, and what a restart does after it (docs/design.md, "The crash
table", has the whole table):

Intake, the state machine and delivery

- ``claim-folder-made``: a claim folder made in the work folder, the file not yet
  renamed into it: the empty folder is removed by the next scan (the file is still in
  the inbox).
- ``claimed``: files renamed into the work folder, not yet recorded: the scan at
  start registers and batches them (they were never sent anywhere).
- ``state:<BATCH STATE>`` (after each transition, ``state:BATCHED`` included): the
  restart resumes the step of that state (its row in docs/design.md's crash table).
- ``attempt``: attempts counted, the call not yet made: the step runs again, the
  attempt stays counted.
- ``output-linking``: an output about to get its name in the outbox (the link, or the
  rename of its copy), nothing of it named yet: delivery runs again and names it.
- ``output-published``: a batch's outputs published, their sidecars not yet:
  delivery runs again and keeps the outputs already there with the right hash.
- ``sidecar-published``: sidecars written, originals not yet removed: DELIVERED is
  stored again and the originals are removed or archived (idempotent).
- ``original-removed``: originals gone, the remote batch not yet deleted: the remote
  batch (or published copy) is deleted and the batch cleaned.
- ``move:copied``: a file moved to another filesystem has its name there, its original
  not removed yet: the copy is recognised by its content and taken as the move's
  result (or removed when the move is undone), so no file stays in two places.

- ``fenced:<call>`` (``fenced:accept``, ``fenced:create``, ``fenced:upload``…): the
  batch's lease just confirmed, the provider call of that name not yet made (between
  the lease check and the point of no return when the call is ``accept``): the call is
  made after a restart only by the lease's holder. Right after the point-of-no-return
  call was sent are ``seal:accepted``, ``clevver:started`` and ``centrapay:created``.

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

_counts: dict[tuple[str, str], int] = {}
_lock = threading.Lock()


def reached(name: str) -> None:
    if _hit("FOLDERSEAL_CRASH_AT", name, again=True):
        os.kill(os.getpid(), signal.SIGKILL)
    if _hit("FOLDERSEAL_PAUSE_AT", name, again=False):
        # To this thread: it stops before its next step (the whole process with it).
        # Sent to the process, the signal may be taken by another thread while this
        # one runs on past the point. Returns once the test sends SIGCONT.
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


def _hit(variable: str, name: str, again: bool) -> bool:
    """Whether ``variable`` names this point and this is its N-th time (or later, when
    ``again``: a kill ends the process anyway, a pause must happen once)."""
    target = os.environ.get(variable)
    if not target:
        return False
    wanted, _, nth = target.partition("@")
    if wanted != name:
        return False
    with _lock:
        count = _counts[variable, name] = _counts.get((variable, name), 0) + 1
    return count >= int(nth or 1) if again else count == int(nth or 1)
