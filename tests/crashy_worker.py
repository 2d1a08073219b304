"""A signing worker that misbehaves on cue, for tests of the local provider's retries.

Loaded through the real pool, like the real worker: files whose entry name holds
"crash" kill the worker, "hang" hangs it, and "flaky" crashes on its first attempt
only (a marker in the staging folder remembers the attempt across worker processes);
"nospace" fails with ENOSPC on its first four attempts, as a full state folder would;
"saved" dies on its first attempt just after it saved its result (before replying).
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from folderseal.providers.local import worker as local_worker
from folderseal.providers.local.worker import SignTask, WorkerState

setup = local_worker.setup


def sign(state: WorkerState, task: SignTask) -> None:
    if "crash" in task.entry:
        os._exit(3)
    if "hang" in task.entry:
        time.sleep(600)
    marker = Path(task.staging) / (task.entry + ".tried")
    if "flaky" in task.entry and not marker.exists():
        marker.touch()
        os._exit(4)
    if "saved" in task.entry and not marker.exists():
        marker.touch()
        local_worker.sign(state, task)
        os._exit(5)
    if "nospace" in task.entry:
        tries = marker.with_name(marker.name + "-count")
        count = int(tries.read_text()) if tries.exists() else 0
        if count < 4:
            tries.write_text(str(count + 1))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), task.staging)
    local_worker.sign(state, task)
