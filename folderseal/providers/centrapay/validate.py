"""The local check of a batch file before anything is published or sent.

Streamed, line by line, so memory stays flat whatever the file's size: the file must be
UTF-8 (a byte order mark at its start is skipped, as Centrapay does, and is no part of
the first record or header); in a JSON Lines file each non-empty line is a JSON object;
a CSV file has its header (every column named, no name twice) and every row as many
columns. A file that fails is never published: its report names the first bad lines by
their 0-based index over the file's lines (the header is line 0), as Centrapay's own
report does. A JSON record without a string ``externalId`` is no local rejection (the
API documents no required field): Centrapay reports such a record in its own report,
and the provider logs a warning naming the first such lines.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from folderseal.providers.centrapay.config import BATCH_TYPES
from folderseal.providers.centrapay.lines import BOM, MAX_LINE, split_lines

MAX_ERRORS = 20             # bad lines listed in the report (all are counted)
READ_CHUNK = 1 << 20
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
FORMAT_NAMES = {"jsonl": "JSON Lines", "csv": "CSV"}
JSON_SPACE = " \t\r\n"     # JSON's whitespace (not Unicode's)


@dataclass
class Report:
    """What the check found: records seen, bad lines counted, the first ones listed."""

    format: str                     # jsonl | csv | "" (only UTF-8 was checked)
    count: int = 0
    error_count: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    no_external_id: int = 0         # JSON records without a string externalId
    no_external_id_lines: list[int] = field(default_factory=list)   # the first ones

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def bad(self, index: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"index": index, "message": message})

    def unidentified(self, index: int) -> None:
        self.no_external_id += 1
        if len(self.no_external_id_lines) < MAX_ERRORS:
            self.no_external_id_lines.append(index)

    def block(self) -> dict[str, Any]:
        """The error record's ``provider`` block for a file that failed the check."""
        return {"report": {"status": "invalid", "count": self.count,
                           "errorCount": self.error_count, "errors": list(self.errors)}}

    def summary(self) -> str:
        """The first bad lines, for the error message."""
        shown = "; ".join(f"line {e['index']}: {e['message']}" for e in self.errors[:3])
        more = self.error_count - min(3, len(self.errors))
        return shown + (f"; and {more} more" if more > 0 else "")


def format_of(entry: str, batch_type: str) -> str:
    """The format a file is checked as: its batch type's, else its suffix's."""
    return BATCH_TYPES.get(batch_type) or SUFFIXES.get(PurePath(entry).suffix.lower(), "")


def suffix_warning(entry: str, batch_type: str) -> str:
    """A warning when the file's name says another format than its batch type, or when
    neither says one; "" when they agree."""
    typed = BATCH_TYPES.get(batch_type, "")
    named = SUFFIXES.get(PurePath(entry).suffix.lower(), "")
    if typed and named and typed != named:
        return (f"{entry} is named like a {FORMAT_NAMES[named]} file but batch_type "
                f"{batch_type!r} takes {FORMAT_NAMES[typed]}: it is checked and sent as "
                f"{FORMAT_NAMES[typed]}; give such files their own folder and provider with "
                "the batch type they are")
    if not typed and not named:
        return (f"batch_type {batch_type!r} is not one folderseal knows and {entry}'s name "
                "does not say its format (.jsonl, .ndjson or .csv): only its UTF-8 is "
                "checked before it is sent")
    return ""


def validate(fd: int, fmt: str) -> Report:
    """Check the file open at ``fd`` (read from its start; ``fd`` stays open) as ``fmt``."""
    report = Report(format=fmt)
    lines = _lines(fd)
    if fmt == "csv":
        _check_csv(lines, report)
    else:
        _check_lines(lines, report, json_objects=fmt == "jsonl")
    return report


# -- reading -------------------------------------------------------------------------------

@dataclass
class _Line:
    index: int
    text: str            # decoded, without its \n (and the file's BOM); "" when it could
    #                      not be
    problem: str = ""    # why it could not be read (not UTF-8, too long)


def _lines(fd: int) -> Iterator[_Line]:
    """The file's lines (see :func:`split_lines`), each decoded on its own; read by
    position, so ``fd``'s offset is left alone. Never holds more than READ_CHUNK +
    MAX_LINE bytes."""
    for index, raw in enumerate(split_lines(_chunks(fd))):
        yield _too_long(index) if raw is None else _decoded(index, raw)


def _chunks(fd: int) -> Iterator[bytes]:
    offset = 0
    while chunk := os.pread(fd, READ_CHUNK, offset):
        offset += len(chunk)
        yield chunk


def _too_long(index: int) -> _Line:
    return _Line(index, "", f"longer than {MAX_LINE >> 20} MiB (no record is that long: is this a "
                            "batch file?)")


def _decoded(index: int, raw: bytes) -> _Line:
    if index == 0:
        raw = raw.removeprefix(BOM)   # the file's byte order mark, no part of line 0
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Line(index, "", f"not UTF-8: byte 0x{raw[exc.start]:02x} at column "
                                f"{exc.start + 1} (save the file as UTF-8)")
    return _Line(index, text)


# -- the formats ---------------------------------------------------------------------------

def _check_lines(lines: Iterator[_Line], report: Report, json_objects: bool) -> None:
    for line in lines:
        if line.problem:
            report.count += 1
            report.bad(line.index, line.problem)
            continue
        text = line.text.strip(JSON_SPACE)
        if not text:
            continue
        report.count += 1
        if not json_objects:
            continue
        problem, record = _object(text)
        if problem:
            report.bad(line.index, problem)
        elif not isinstance(record.get("externalId"), str) or not record["externalId"]:
            report.unidentified(line.index)
    if report.count == 0:
        report.bad(0, "the file holds no records: nothing to load")


def _object(text: str) -> tuple[str, dict[str, Any]]:
    """The JSON object ``text`` (stripped) holds, or why it holds none."""
    try:
        value, end = _DECODER.raw_decode(text)   # no whitespace around: stripped
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at column {exc.colno}", {}
    except ValueError as exc:
        return f"not valid JSON: {exc}", {}
    except RecursionError:
        return "JSON nested too deeply to be read", {}
    if end != len(text):
        return f"not valid JSON: more after the value that ends at column {end}", {}
    if not isinstance(value, dict):
        return (f"a JSON {_json_type(value)}, not an object (each line holds one record "
                "{…})"), {}
    return "", value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)   # NaN, Infinity are not JSON


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


class _Feed:
    """The lines csv reads (each with its line ending back), remembering how many it was
    given and the problems of those that could not be read."""

    def __init__(self, lines: Iterator[_Line]) -> None:
        self.lines = lines
        self.consumed = 0
        self.problems: list[tuple[int, str]] = []

    def __iter__(self) -> Iterator[str]:
        for line in self.lines:
            self.consumed = line.index + 1
            if line.problem:
                self.problems.append((line.index, line.problem))
                yield "\n"   # an empty line in its place: the row it is in is bad anyway
            else:
                yield line.text + "\n"


def _check_csv(lines: Iterator[_Line], report: Report) -> None:
    feed = _Feed(lines)
    rows = csv.reader(feed)
    header = False          # the header row was read (first non-blank row)
    width: int | None = None   # its columns (None: it could not be read)
    while True:
        start = feed.consumed
        try:
            row = next(rows)
            problem = ""
        except StopIteration:
            break
        except csv.Error as exc:
            row, problem = [], f"not CSV that can be read: {exc}"
        if feed.problems:
            start, problem = feed.problems[0]
            feed.problems.clear()
        if not row and not problem:
            continue   # a blank line
        if not header:
            header = True
            problem = problem or _header_problem(row)
            width = None if problem and not row else len(row)
            if problem:
                report.bad(start, problem)
            continue
        report.count += 1
        if not problem and width is not None and len(row) != width:
            problem = f"{_columns(len(row))} where the header has {width}"
        if problem:
            report.bad(start, problem)
    if not header:
        report.bad(0, "no header row: the file is empty (a CSV batch file starts with its "
                      "header)")
    elif report.count == 0 and report.error_count == 0:
        report.bad(0, "the file holds a header but no records: nothing to load")


def _columns(count: int) -> str:
    return f"{count} column{'' if count == 1 else 's'}"


def _header_problem(header: list[str]) -> str:
    names = [name.strip() for name in header]
    if any(not name for name in names):
        return "the header row has an empty column name"
    if len(set(names)) != len(names):
        return "the header row names a column twice"
    return ""
