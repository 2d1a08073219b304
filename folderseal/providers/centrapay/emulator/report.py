"""The emulator's report on a fetched batch file: one streamed pass over its bytes
(sha256, size, the UTF-8 check) and its lines, each a record or an error, as Centrapay
reports them (see the package's docstring for the rules per batch type).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from folderseal.providers.centrapay.lines import BOM, MAX_LINE, split_lines

__all__ = ["BATCH_TYPES", "CSV", "ERRORS_KEPT", "JSONL", "MAX_LINE", "Intake", "Outcome",
           "Report", "Unreadable", "report_csv", "report_jsonl", "text_lines"]

JSONL, CSV = "jsonl", "csv"
BATCH_TYPES = {"farmlands-external-asset": JSONL, "ticketek-ticket": JSONL,
               "business-onboard": CSV}
ERRORS_KEPT = 5000  # listed per batch; errorCount stays exact


class Unreadable(Exception):
    """The file cannot be loaded at all: the batch goes ``error`` with this message."""


@dataclass(slots=True)
class Report:
    """What loading a file found: records, errors (counted exactly, listed up to a cap)."""

    count: int = 0
    error_count: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def error(self, index: int, message: str, external_id: str | None = None) -> None:
        self.error_count += 1
        if len(self.errors) < ERRORS_KEPT:
            entry = {"index": str(index), "message": message}
            if external_id is not None:
                entry["externalId"] = external_id
            self.errors.append(entry)


class Intake:
    """The fetched bytes as they pass: their sha256, their size, and the UTF-8 check."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The chunks, each checked before it is passed on; Unreadable if not UTF-8."""
        for chunk in chunks:
            self.digest.update(chunk)
            self.size += len(chunk)
            self._check(chunk, final=False)
            yield chunk
        self._check(b"", final=True)

    def _check(self, chunk: bytes, final: bool) -> None:
        try:
            self._decoder.decode(chunk, final)
        except UnicodeDecodeError:
            raise Unreadable(
                f"the batch file is not UTF-8 (an invalid byte in its first {self.size} "
                f"bytes); save it as UTF-8 and send it again") from None


def text_lines(chunks: Iterable[bytes]) -> Iterator[str | None]:
    """The file's lines as text, without their ends (and without a leading BOM); None
    for a line longer than MAX_LINE, which is skipped, not held in memory."""
    for index, line in enumerate(split_lines(chunks)):
        yield None if line is None else _text(line, after_first=index > 0)


def _text(line: bytes, after_first: bool) -> str:
    raw = line if after_first else line.removeprefix(BOM)
    return raw.decode("utf-8", "replace").removesuffix("\r")


def report_jsonl(lines: Iterable[str | None]) -> Report:
    """Every non-empty line a record: a JSON object with a string ``externalId``."""
    report = Report()
    for index, line in enumerate(lines):
        if line is None:
            report.count += 1
            report.error(index, f"the line is longer than {MAX_LINE} bytes")
            continue
        if not line.strip():
            continue
        report.count += 1
        try:
            record = json.loads(line)
        except ValueError as exc:
            report.error(index, f"not valid JSON: {getattr(exc, 'msg', exc)}")
            continue
        if not isinstance(record, dict):
            report.error(index, "the line is not a JSON object")
            continue
        external_id = record.get("externalId")
        if external_id is None or external_id == "":
            report.error(index, "the record has no externalId")
        elif not isinstance(external_id, str):
            shown = str(external_id) if isinstance(external_id, int | float | bool) else None
            report.error(index, "externalId must be a string", shown)
    return report


def report_csv(lines: Iterable[str | None]) -> Report:
    """A header row, then every non-blank row a record with the header's column count."""
    report = Report()
    too_long: list[int] = []

    def texts() -> Iterator[str]:
        for index, line in enumerate(lines):
            if line is None:
                too_long.append(index)
                line = ""  # read by csv as a blank row; the error is noted here
            yield line + "\n"

    reader = csv.reader(texts())
    columns: int | None = None
    while True:
        index = reader.line_num  # lines read so far: the index of the row's first line
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.count += 1
            report.error(index, f"not valid CSV: {exc}")
            if reader.line_num == index:
                break
            continue
        finally:
            for long_index in too_long:
                report.count += 1
                report.error(long_index, f"the line is longer than {MAX_LINE} bytes")
            too_long.clear()
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if columns is None:
            columns = len(row)
            continue
        report.count += 1
        if len(row) != columns:
            report.error(index, f"the row has {len(row)} columns; the header has {columns}")
    if columns is None:
        raise Unreadable("the batch file has no header row; a business-onboard file starts "
                         "with its column names")
    return report


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the fetch of a batch's file gave: a report, or why there is none."""

    report: Report | None
    message: str = ""
    sha256: str | None = None
    size: int | None = None
