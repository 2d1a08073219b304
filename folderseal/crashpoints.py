"""Named crash points, for the crash tests: die right after a chosen step.

``FOLDERSEAL_CRASH_AT=state:ACCEPTING`` makes the daemon kill itself with SIGKILL
right after the step of that name (``NAME@N`` on its N-th time). A SIGKILL leaves
no chance to clean up, which is the point: the restart must cope. Unset, the check
costs one dictionary lookup.

Names: ``claimed`` (files renamed into the work folder, not yet recorded),
``state:<JOB STATE>`` (after each transition, ``state:BATCHED`` included),
``attempt`` (signing attempts counted, not yet made), ``output-published`` (outputs
of a batch published, their sidecars not yet), ``sidecar-published`` (sidecars
written, originals not yet removed), ``original-removed``; for SEAL, ``seal:created``,
``seal:uploaded`` and ``seal:accepted`` (the call answered, its result not yet stored),
``seal:uploading`` and ``seal:downloading`` (in the middle of the stream); for
Clevver, ``clevver:created``, ``clevver:attached`` (an attach answered, the ledger not
yet told), ``clevver:attaching`` (in the middle of an attach stream),
``clevver:starting`` (ACCEPTING stored, start not sent) and ``clevver:started``; for
Centrapay, ``centrapay:publishing`` (in the middle of the copy or upload),
``centrapay:published``, ``centrapay:creating`` (ACCEPTING stored, the create not
sent) and ``centrapay:created`` (the create's answer recorded); for
``folderseal retry`` (:mod:`folderseal.retrying`), ``retry:recorded`` (its intent
stored, nothing moved), ``retry:staged`` (a file at its hidden name in the inbox) and
``retry:moved`` (after each file reached its place, the store not yet told); and
``move:copied`` (a file moved to another filesystem has its name there, its original
not removed yet).
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
