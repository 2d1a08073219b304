"""``folderseal check``: will this configuration work? Each problem with what to do.

Checks the configuration, the folder layout (nothing inside an inbox, one filesystem
for inbox and work folder, a local state folder), that every folder exists with the
permissions folderseal needs, the free space, how each inbox will be watched, and
each provider in its own terms (the local seal loads and is not about to expire; SEAL
answers and takes the key), with key files, or a configuration holding a secret, that
other accounts may read.
Exit 0 when all is well (warnings allowed), 78 when something must be fixed, 1 when
a provider could not be reached (the check failed: it cannot vouch for the provider;
the daemon would start and its batches wait).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from folderseal.commands.shared import add_command
from folderseal.core import config as configuration
from folderseal.core import files, safety
from folderseal.core.errors import ExitCode, FolderSealError, TransientError
from folderseal.core.keyfiles import inline_secrets, service_accounts
from folderseal.core.redact import REDACTOR
from folderseal.intake.watch import choose_mode
from folderseal.providers import build

if TYPE_CHECKING:
    from folderseal.commands.shared import Subparsers


def add_parser(commands: Subparsers) -> None:
    add_command(commands, "check", handle,
                "validate configuration, folders, permissions and providers")


def handle(args: argparse.Namespace) -> int:
    return run_checks(args.config)


def _access(path: Path, write: bool) -> str:
    """'' if folderseal may use the folder, else what is wrong."""
    if not path.is_dir():
        return f"{path} does not exist (or is not a folder); create it"
    mode = os.R_OK | os.X_OK | (os.W_OK if write else 0)
    if not os.access(path, mode):
        need = "read and write" if write else "read"
        return f"{path}: folderseal (uid {os.geteuid()}) may not {need} it; fix its permissions"
    return ""


def _batch_caps(settings: configuration.Settings, provider: str, cap: int | None) -> list[str]:
    """A note for each folder of ``provider`` whose batches it caps below the folder's
    batch_max_files (Centrapay: one file per batch), whatever the check finds."""
    if cap is None:
        return []
    size = "one file" if cap == 1 else f"at most {cap} files"
    return [f"folders.{name}: makes batches of {size} (provider {provider} takes {cap} per "
            f"batch), whatever batch_max_files says (it says {folder.batch_max_files})"
            for name, folder in sorted(settings.folders.items())
            if folder.provider == provider and (cap == 1 or cap < folder.batch_max_files)]


def _check_store(settings: configuration.Settings, notes: list[str], problems: list[str],
                 unreachable: list[str]) -> None:
    """A PostgreSQL store answers and its schema fits this version (SQLite is made and
    migrated at start, in state_dir, checked above)."""
    from folderseal.store.opening import reading_store, store_place

    try:
        if settings.store.database_url() is None:
            return
        place = store_place(settings)
        store = reading_store(settings)
    except TransientError as exc:
        unreachable.append(f"store: {exc}")
        return
    except FolderSealError as exc:
        problems.append(f"store: {exc}")
        return
    assert store is not None
    store.close()
    notes.append(f"store: {place} answers and its schema fits this version")


def run_checks(config_path: Path | None) -> int:
    problems: list[str] = []
    warnings: list[str] = []
    notes: list[str] = []
    try:
        settings = configuration.load(config_path)
    except FolderSealError as exc:
        print(f"problem: {REDACTOR.text(str(exc))}")
        return ExitCode.CONFIG
    path = config_path or configuration.default_config_path()
    notes.append(f"configuration {path} is valid")
    warnings += inline_secrets(path, service_accounts(settings.state_dir))
    problems += safety.layout_problems(settings)
    state = settings.state_dir
    problem = _access(state if state.exists() else state.parent, write=True)
    if problem:
        problems.append(f"state_dir: {problem}")
    for name, folder in settings.folders.items():
        for key, write in (("inbox", True), ("outbox", True), ("errors", True),
                           ("archive", True)):
            path = getattr(folder, key)
            if path is not None and (problem := _access(path, write)):
                problems.append(f"folders.{name}.{key}: {problem}")
        if folder.inbox.is_dir():
            mode, why = choose_mode(folder.watch, folder.inbox)
            notes.append(f"folders.{name}: watched by {mode} ({why})")
        for label, path in (("outbox", folder.outbox), ("state_dir", state)):
            free = files.free_bytes(path)
            if free is not None and free < folder.min_free_bytes:
                warnings.append(f"folders.{name}: {label} has {free / 1e6:.0f} MB free, under "
                                f"min_free_bytes; nothing is claimed until there is room")
    unreachable: list[str] = []
    _check_store(settings, notes, problems, unreachable)
    for name in sorted({f.provider for f in settings.folders.values()}):
        try:
            provider = build(name, settings.providers[name], settings.state_dir)
        except FolderSealError as exc:
            problems.append(f"provider {name}: {exc}")
            continue
        notes += _batch_caps(settings, name, provider.max_batch_files)
        try:
            health = provider.check()
        except FolderSealError as exc:
            problems.append(f"provider {name}: {exc}")
            continue
        notes += [f"provider {name}: {health.verified}"] if health.verified else []
        warnings += [f"provider {name}: {warning}" for warning in health.warnings]
        unreachable += [f"provider {name}: {health.unreachable}"] if health.unreachable else []
    for kind, lines in (("ok", notes), ("warning", warnings),
                        ("problem", problems + unreachable)):
        for line in lines:
            print(f"{kind}: {REDACTOR.text(line)}")
    if problems:
        print(f"{len(problems)} problem(s) to fix before `folderseal run` will work")
        return ExitCode.CONFIG
    if unreachable:
        print(f"{len(unreachable)} provider(s) or store could not be reached, so this check "
              "cannot vouch for them; run it again once they answer")
        return ExitCode.FAILURE
    print("all checks passed")
    return ExitCode.OK
