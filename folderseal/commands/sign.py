"""``folderseal sign PATH...``: the daemon's pipeline for named files, then exit.

The files must lie in a configured inbox (so their folder, provider and outbox are
known). They are claimed at once, without waiting to settle, batched at once, and
driven to the outbox or the errors folder on this thread. The exit code is 0 when
every file was sealed, 1 otherwise. It refuses to run beside a daemon on the same
state folder (the daemon would take the files anyway: drop them into the inbox).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from folderseal.commands.shared import add_command, settings
from folderseal.core.config import Settings
from folderseal.core.errors import ExitCode
from folderseal.core.model import FileState

if TYPE_CHECKING:
    from folderseal.commands.shared import Subparsers

FINAL = (FileState.DONE, FileState.FAILED)


def add_parser(commands: Subparsers) -> None:
    sign = add_command(commands, "sign", handle,
                       "seal the given files now (they must lie in an inbox)")
    sign.add_argument("paths", nargs="+", metavar="PATH")
    sign.add_argument("--timeout", type=float, default=3600.0,
                      help="give up waiting after this many seconds (default 3600)")


def handle(args: argparse.Namespace) -> int:
    return sign_paths(settings(args), [Path(p) for p in args.paths], timeout=args.timeout)


def _locate(settings: Settings, path: Path) -> tuple[str, str] | None:
    real = os.path.realpath(path)
    for name, folder in settings.folders.items():
        inbox = os.path.realpath(folder.inbox)
        if real.startswith(inbox + os.sep):
            return name, os.path.relpath(real, inbox).replace(os.sep, "/")
    return None


def sign_paths(settings: Settings, paths: list[Path], timeout: float = 3600.0) -> int:
    from folderseal.service.daemon import Daemon  # here: the parser never needs it

    daemon = Daemon(settings, batch_threads=0)
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
