"""``folderseal migrate``: create or upgrade the store's schema (SQLite or PostgreSQL).

On PostgreSQL the nodes of a fleet do not migrate at start unless ``[store]
auto_migrate = true``: an operator runs this once, from any node, before starting nodes
of a new version. Migrations only add, so nodes of the previous version keep running
meanwhile; several runs at once are safe (they take the database's migration lock)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from folderseal.commands.shared import add_command, settings

if TYPE_CHECKING:
    from folderseal.commands.shared import Subparsers


def add_parser(commands: Subparsers) -> None:
    add_command(commands, "migrate", handle,
                "create or upgrade the store's schema (SQLite or PostgreSQL)")


def handle(args: argparse.Namespace) -> int:
    from folderseal.store.opening import migrate, store_place

    loaded = settings(args)
    applied = migrate(loaded)
    place = store_place(loaded)
    if applied:
        print(f"{place}: applied migration{'s' if len(applied) > 1 else ''} "
              + ", ".join(str(n) for n in applied))
    else:
        print(f"{place}: the schema is current; nothing to do")
    return 0
