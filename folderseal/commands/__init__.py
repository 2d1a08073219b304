"""The ``folderseal`` command line: the parser, assembled from one module per command
(each with its ``add_parser`` and its handler), and ``main``.

Exit codes are data (:class:`ExitCode`): 0 ok, 1 failure, 2 usage, 78 configuration
error (systemd's ``RestartPreventExitStatus=78`` stops a restart loop on it). Every
message printed passes through the redactor.
"""

from __future__ import annotations

import argparse
import sys

from folderseal import __version__
from folderseal.commands import (
    check,
    emulate,
    init,
    migrate,
    recover,
    retry,
    run,
    sign,
    status,
    verify,
)
from folderseal.core import logs, systemd
from folderseal.core.errors import ExitCode, FolderSealError
from folderseal.core.redact import REDACTOR
from folderseal.providers import registry  # noqa: F401  registers the kinds before any config is read

# In the order `folderseal --help` lists them.
COMMANDS = (run, sign, status, check, retry, verify, init, recover, emulate, migrate)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="folderseal",
        description="Watch folders and get every dropped file sealed, with a JSON record.")
    top.add_argument("--version", action="version", version=f"folderseal {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command != "run":
        logs.configure("console" if sys.stderr.isatty() else "json", "warning", sys.stderr)
    try:
        code = int(args.handler(args))
    except FolderSealError as exc:
        # Under systemd stderr is the journal: "<3>" files each line as an error, so
        # `journalctl -p err` shows why a start failed.
        prefix = "<3>" if systemd.on_journal(sys.stderr) else ""
        text = f"folderseal: {REDACTOR.text(str(exc))}"
        print("\n".join(prefix + line for line in text.splitlines()), file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = ExitCode.FAILURE
    return code
