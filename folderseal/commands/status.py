"""``folderseal status``: the report of :mod:`folderseal.service.status` printed for a
person (a line per folder, a table of what holds it up, the store's nodes when there
is more than this one to say) or as JSON; exit 1 when something needs a person now."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from folderseal.commands.shared import add_command
from folderseal.core import config as configuration
from folderseal.core import statelock
from folderseal.core.config import Settings
from folderseal.core.errors import ExitCode
from folderseal.core.model import FileState
from folderseal.service.nodes_report import holdings_text, offset_text, state, worth_showing
from folderseal.service.status import age_text, collect, conditions, ignored_why, loud

if TYPE_CHECKING:
    from folderseal.commands.shared import Subparsers


def add_parser(commands: Subparsers) -> None:
    status = add_command(commands, "status", handle,
                         "what is waiting, in flight, failed, and why")
    status.add_argument("--json", action="store_true", help="machine-readable output")


def handle(args: argparse.Namespace) -> int:
    return show(configuration.load(args.config), as_json=args.json)


def show(settings: Settings, as_json: bool = False) -> int:
    """Print the report; exit 1 when something needs a person now, else 0."""
    statelock.check_readable(settings.state_dir)  # else a traceback, and no report
    report = collect(settings)
    code = ExitCode.FAILURE if report["alarms"] else ExitCode.OK
    if as_json:
        print(json.dumps(report, indent=2))
        return code
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    daemon = report["daemon"]
    beat = f", last heartbeat {daemon['heartbeat']}" if daemon.get("heartbeat") else ""
    console.print(Text(f"folderseal on {report['node']}: daemon " + (
        f"running (pid {daemon['pid']}{beat})" if daemon["running"] else "not running"),
        style="bold"))
    for warning in filter(loud, report["warnings"]):
        console.print(Text(f"WARNING: {warning}", style="bold white on red"))
    for alarm in report["alarms"]:
        console.print(Text(f"ALARM: {alarm}", style="bold red"))
    for warning in itertools.filterfalse(loud, report["warnings"]):
        console.print(Text(f"warning: {warning}", style="yellow"))
    if worth_showing(report["nodes"]):  # one node alone and on time: as before fleet mode
        console.print(Text(f"\n{len(report['nodes'])} node(s) on the store", style="bold"))
        console.print(_nodes_table(report["nodes"]))
    for name, folder in report["folders"].items():
        files = folder["files"]
        console.print(Text(
            f"\nfolder {name}: watch {folder['watch'] or '-'}, {folder['settling']} waiting, "
            f"{folder['in_flight']} in flight, {folder['delivered']} delivered, "
            f"{files.get(FileState.FAILED, 0)} failed, "
            f"{sum(folder['signed_per_minute'])} {folder['outcome']} in the last hour",
            style="bold"))
        table = _folder_table(folder)
        if table.row_count:
            console.print(table)
    return code


def _nodes_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table()
    for column in ("node", "state", "last heartbeat", "pid", "version", "clock offset",
                   "holds"):
        table.add_column(column, overflow="fold")
    for found in nodes:
        style = "" if found["alive"] or found["this_node"] else "red"
        table.add_row(Text(found["node"]), Text(state(found), style=style),
                      Text(f"{found['heartbeat']} ({age_text(found['heartbeat_age_seconds'])} "
                           "ago)"),
                      Text(str(found["pid"])), Text(found["version"]),
                      Text(offset_text(found), style="bold red" if found["clock_off"] else ""),
                      Text(holdings_text(found), style="red" if found["orphans"] else ""))
    return table


def _folder_table(folder: dict[str, Any]) -> Table:
    table = Table()
    for column in ("what", "name", "state", "why"):
        table.add_column(column, overflow="fold")
    table.add_column("retry id", no_wrap=True)  # to be copied whole
    for label, reason in conditions(folder):
        table.add_row(Text(label), Text(""), Text(""), Text(reason))
    for item in folder["waiting"]:
        table.add_row(Text("waiting"), Text(item["source"]), Text("in the inbox"),
                      Text(item["why"]))
    ignored = folder["ignored"]
    if ignored["count"]:
        table.add_row(Text("ignored"), Text(ignored["oldest"]),
                      Text(f"{ignored['count']} in the inbox"), Text(ignored_why(ignored)))
    for item in folder["fragments"]:
        table.add_row(Text("fragment?"), Text(item["source"]), Text(f"seen {item['at']}"),
                      Text(item["why"] or ""))
    for batch in folder["batches"]:
        wait = batch["next_attempt_in"]
        due = "" if wait is None else f"next step in {wait} s"
        why = "; ".join(x for x in (due, batch["last_error"] or "") if x)
        progress = "" if batch["progress"] is None else f", {batch['progress']:g}% done"
        if batch.get("takeovers"):
            progress += f", taken over {batch['takeovers']}×"
        table.add_row(Text("batch"), Text(batch["batch"]),
                      Text(f"{batch['state']}{progress}, {batch['files']} files, "
                           f"{batch['age_seconds']:.0f} s old"),
                      Text(why))
    for item in folder.get("records_failed", [])[:20]:
        table.add_row(Text("records failed"), Text(item["source"]),
                      Text(f"delivered; {item['records_failed']} record(s) not loaded"),
                      Text("the sidecar's provider.report lists them: fix those records and "
                           "drop a file with only them"), Text(item["file"]))
    for item in folder["failed"][:20]:
        table.add_row(Text("failed"), Text(item["source"]), Text(f"in errors ({item['code']})"),
                      Text(item["reason"] or ""), Text(item["file"]))
    return table
