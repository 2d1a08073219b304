"""What the command modules share: a command's parser (with ``-c``/``--config``) and the
settings it names.

Every command module is imported to build the parser, whichever command runs: a module
imports what only its handler needs (the daemon, the signer, an emulator) inside the
handler, so ``folderseal status`` never pays for pyHanko or httpx.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from folderseal.core import config as configuration
from folderseal.core import logs

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

Handler = Callable[[argparse.Namespace], int]


def add_command(commands: Subparsers, name: str, handler: Handler, text: str,
                config: bool = True) -> argparse.ArgumentParser:
    """The parser of `folderseal <name>`; with ``config`` its -c/--config option."""
    sub = commands.add_parser(name, help=text, description=text)
    if config:
        sub.add_argument("-c", "--config", type=Path, default=None,
                         help="configuration file (default: $FOLDERSEAL_CONFIG, then "
                              "/etc/folderseal/config.toml)")
    sub.set_defaults(handler=handler)
    return sub


def settings(args: argparse.Namespace) -> configuration.Settings:
    """The settings -c names (or the default's), with logging configured as they say."""
    loaded = configuration.load(args.config)
    logs.configure(loaded.log.format, loaded.log.level)
    return loaded
