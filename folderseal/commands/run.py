"""``folderseal run``: the daemon in the foreground until SIGTERM."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from folderseal.commands.shared import add_command, settings
from folderseal.core import config as configuration

if TYPE_CHECKING:
    from folderseal.commands.shared import Subparsers


def add_parser(commands: Subparsers) -> None:
    add_command(commands, "run", handle,
                "run the daemon in the foreground (SIGTERM stops it cleanly)")


def handle(args: argparse.Namespace) -> int:
    from folderseal.service.daemon import Daemon

    daemon = Daemon(settings(args), config_path=args.config or configuration.default_config_path())
    try:
        daemon.prepare()
    except BaseException:
        daemon.close()
        raise
    return daemon.run()
