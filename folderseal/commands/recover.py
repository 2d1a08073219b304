"""``folderseal recover``: rebuild a lost store from the work folders (the recovery itself
is :mod:`folderseal.service.recover`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from folderseal.commands.shared import add_command, settings

if TYPE_CHECKING:
    from folderseal.commands.shared import Subparsers


def add_parser(commands: Subparsers) -> None:
    add_command(commands, "recover", handle, "rebuild a lost store from the work folders")


def handle(args: argparse.Namespace) -> int:
    from folderseal.service.recover import recover

    return recover(settings(args))
