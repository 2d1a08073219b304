"""The status page: the status report as plain server-rendered HTML, for a person.

The store's nodes when there are several (alive or dead, clock offset). Per folder:
what waits and why, batches in flight with their state and age, the last failures with
their reasons, and files signed per minute over the last hour as a small bar chart
(inline SVG). No script, no build step; the page reloads itself every 10 s.
"""

from __future__ import annotations

from html import escape
from typing import Any

from folderseal.core.model import FileState
from folderseal.service.nodes_report import holdings_text, offset_text, state, worth_showing
from folderseal.service.status import age_text, conditions, ignored_why, loud

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; } h2 { font-size: 1.15em; margin: 1.4em 0 .3em; }
h3 { font-size: 1em; margin: 1em 0 .2em; }
.alarm { background: #fde8e8; border-left: 4px solid #c0392b; padding: .4em .8em; }
.ok { background: #e8f6ec; border-left: 4px solid #27ae60; padding: .4em .8em; }
.warn { background: #fff6dd; border-left: 4px solid #e1a500; padding: .4em .8em; }
.banner { background: #c0392b; color: #fff; font-size: 1.25em; font-weight: 600;
          padding: .7em 1em; margin: .6em 0 1em; border-radius: 4px; }
table { border-collapse: collapse; margin: .2em 0; }
td, th { border-bottom: 1px solid #ddd; padding: .2em .7em .2em 0; text-align: left;
         vertical-align: top; }
th { color: #555; font-weight: 600; } .none { color: #777; }
svg rect { fill: #2e86c1; } svg text { font-size: 10px; fill: #555; }
"""


def render(report: dict[str, Any]) -> str:
    daemon = report["daemon"]
    state = f"running, pid {daemon['pid']}" if daemon["running"] else "not running"
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta http-equiv="refresh" content="10">',
        f"<title>folderseal on {escape(report['node'])}</title><style>{STYLE}</style>",
        "</head><body>",
        f"<h1>folderseal on {escape(report['node'])}</h1>",
        *(f'<div class="banner not-qualified" role="alert">{escape(w)}</div>'
          for w in report["warnings"] if loud(w)),
        f"<p>Daemon {escape(state)}. Page made {escape(report['generated'])}.</p>",
    ]
    if report["alarms"]:
        items = "".join(f"<li>{escape(a)}</li>" for a in report["alarms"])
        parts.append(f'<div class="alarm" id="alarms"><b>Needs a person now:</b>'
                     f"<ul>{items}</ul></div>")
    else:
        parts.append('<div class="ok" id="alarms">Healthy: nothing needs a person now.</div>')
    for warning in report["warnings"]:
        if not loud(warning):
            parts.append(f'<p class="warn">Warning: {escape(warning)}</p>')
    if worth_showing(report.get("nodes", [])):
        parts.append(_nodes(report["nodes"]))
    for name, folder in report["folders"].items():
        parts.append(_folder(name, folder))
    parts.append("</body></html>")
    return "\n".join(parts)


def _nodes(nodes: list[dict[str, Any]]) -> str:
    """The store's nodes: alive or dead, last heartbeat, clock offset."""
    rows = [[n["node"], state(n), f"{n['heartbeat']} ({age_text(n['heartbeat_age_seconds'])} "
             "ago)", str(n["pid"]), n["version"], offset_text(n), holdings_text(n)]
            for n in nodes]
    return ('<section id="nodes"><h2>Nodes</h2>'
            + _table(["node", "state", "last heartbeat", "pid", "version", "clock offset",
                      "holds"],
                     rows, "", "nodes") + "</section>")


def _folder(name: str, folder: dict[str, Any]) -> str:
    files = folder["files"]
    facts = (f"watch {folder['watch'] or '-'}; {folder['settling']} waiting in the inbox, "
             f"{folder['in_flight']} in flight, {folder['delivered']} delivered, "
             f"{files.get(FileState.FAILED, 0)} in errors")
    out = [f'<section id="folder-{escape(name)}"><h2>Folder {escape(name)}</h2>',
           f"<p>{escape(facts)}</p>"]
    for label, reason in conditions(folder):
        out.append(f'<p class="warn">{escape(label.capitalize())}: {escape(reason)}</p>')
    word = folder.get("outcome", "signed")
    out.append(f"<h3>Files {escape(word)} per minute, last hour</h3>")
    out.append(_chart(folder["signed_per_minute"], word))
    out.append("<h3>Waiting</h3>")
    out.append(_table(["file", "why it waits"],
                      [[w["source"], w["why"]] for w in folder["waiting"]],
                      "nothing is waiting in the inbox", "waiting"))
    if folder["ignored"]["count"]:
        out.append(f'<p class="warn ignored">Ignored names: '
                   f'{escape(ignored_why(folder["ignored"]))}</p>')
    out.append("<h3>Suspected fragments, last 24 hours</h3>")
    out.append(_table(["when", "file", "why"],
                      [[f["at"], f["source"], f["why"] or ""] for f in folder["fragments"]],
                      "no file appeared where one was claimed moments before", "fragments"))
    out.append("<h3>Batches in flight</h3>")
    out.append(_table(
        ["batch", "state", "files", "age", "next step", "last error"],
        [[b["batch"], _state(b), str(b["files"]), age_text(b["age_seconds"]),
          "" if b["next_attempt_in"] is None else f"in {b['next_attempt_in']:.0f} s",
          b["last_error"] or ""] for b in folder["batches"]],
        "no batch in flight", "batches"))
    out.append("<h3>Last failures</h3>")
    out.append(_table(
        ["when", "file", "reason", "retry id"],
        [[f["at"], f["source"], f"{f['code']}: {f['reason'] or ''}", f["file"]]
         for f in folder["failed"][:10]],
        "no file has failed", "failures"))
    if folder.get("records_failed"):
        out.append("<h3>Delivered with records not loaded</h3>")
        out.append(_table(
            ["when", "file", "records not loaded", "file id"],
            [[f["at"], f["source"], str(f["records_failed"]), f["file"]]
             for f in folder["records_failed"][:10]],
            "", "records"))
    out.append("</section>")
    return "\n".join(out)


def _table(head: list[str], rows: list[list[str]], empty: str, kind: str) -> str:
    if not rows:
        return f'<p class="none {kind}">{escape(empty)}</p>'
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="{kind}"><tr>{header}</tr>{body}</table>'


def _state(batch: dict[str, Any]) -> str:
    """A batch's state, with the provider's progress when it gives one and how many times
    it was taken over, if ever."""
    progress = batch.get("progress")
    state = batch["state"] if progress is None else f"{batch['state']} ({progress:g}%)"
    taken = batch.get("takeovers", 0)
    return f"{state}, taken over {taken}×" if taken else state


def _chart(per_minute: list[int], word: str) -> str:
    """60 bars, oldest on the left; the tallest is labelled with its count."""
    width, height, bar = 600, 80, 10
    top = max(per_minute) or 1
    bars = []
    for i, count in enumerate(per_minute):
        h = round(count / top * (height - 14))
        minute = len(per_minute) - i
        bars.append(f'<rect x="{i * bar}" y="{height - h}" width="{bar - 2}" height="{h}">'
                    f"<title>{count} {escape(word)}, {minute} min ago</title></rect>")
    total = sum(per_minute)
    return (f'<svg class="chart" width="{width}" height="{height + 14}" role="img" '
            f'aria-label="{total} files {escape(word)} in the last hour">'
            f'<text x="0" y="10">peak {max(per_minute)}/min</text>{"".join(bars)}'
            f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#999"/>'
            f'<text x="0" y="{height + 12}">60 min ago</text>'
            f'<text x="{width - 20}" y="{height + 12}">now</text></svg>'
            f"<p>{total} files {escape(word)} in the last hour.</p>")

