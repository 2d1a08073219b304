"""``folderseal sign PATH...``: the daemon's pipeline for named files, then exit.

The files must lie in a configured inbox (so their folder, provider and outbox are
known). They are claimed at once, without waiting to settle, batched at once, and
driven to the outbox or the errors folder on this thread. The exit code is 0 when
every file was sealed, 1 otherwise. It refuses to run beside a daemon on the same
state folder (the daemon would take the files anyway: drop them into the inbox).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from folderseal.core.config import Settings
from folderseal.core.errors import ExitCode
from folderseal.core.model import FileState
from folderseal.service.daemon import Daemon

FINAL = (FileState.DONE, FileState.FAILED)


def _locate(settings: Settings, path: Path) -> tuple[str, str] | None:
    real = os.path.realpath(path)
    for name, folder in settings.folders.items():
        inbox = os.path.realpath(folder.inbox)
        if real.startswith(inbox + os.sep):
            return name, os.path.relpath(real, inbox).replace(os.sep, "/")
    return None


def sign_paths(settings: Settings, paths: list[Path], timeout: float = 3600.0) -> int:
    daemon = Daemon(settings, job_threads=0)
    try:
        daemon.prepare()
        assert daemon.store is not None
        store = daemon.store
        claims: dict[str, Path] = {}
        code = ExitCode.OK
        for path in paths:
            located = _locate(settings, path)
            if located is None:
                print(f"{path}: not in any configured inbox; copy it into one first",
                      file=sys.stderr)
                code = ExitCode.FAILURE
                continue
            folder, source = located
            claim_id, reason = daemon.intakes[folder].claim_now(source)
            if claim_id is None:
                print(f"{path}: not taken: {reason}", file=sys.stderr)
                code = ExitCode.FAILURE
            else:
                claims[claim_id] = path
        for intake in daemon.intakes.values():
            intake.form_batches(float("inf"))
        daemon.sink_rejected()

        def finished() -> bool:
            return all((r := store.file(i)) is not None and r.state in FINAL for i in claims)

        daemon.drain(finished, timeout)
        for claim_id, path in claims.items():
            record = store.file(claim_id)
            assert record is not None
            folder_cfg = settings.folders[record.folder]
            if record.state == FileState.DONE:
                outputs = ", ".join(str(folder_cfg.outbox / o["path"]) for o in record.outputs)
                print(f"{path}: sealed → {outputs}")
            elif record.state == FileState.FAILED:
                print(f"{path}: failed ({record.error_code}): {record.error_message}")
                code = ExitCode.FAILURE
            else:
                print(f"{path}: still {record.state} after {timeout:.0f} s; the daemon "
                      "will finish it", file=sys.stderr)
                code = ExitCode.FAILURE
        return code
    finally:
        daemon.close()
