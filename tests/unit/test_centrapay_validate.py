"""The local check of a Centrapay batch file: UTF-8, JSON objects per line, CSV rows as
wide as the header; 0-based line indexes over the file (header included); the first 20
bad lines listed, all counted; memory flat whatever the file's size."""

from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from folderseal.providers.centrapay import validate
from folderseal.providers.centrapay.validate import Report

Check = Callable[[bytes, str], Report]


@pytest.fixture()
def check(tmp_path: Path) -> Iterator[Check]:
    def run(data: bytes, fmt: str) -> Report:
        path = tmp_path / "batch"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            return validate.validate(fd, fmt)
        finally:
            os.close(fd)
    yield run


def _indexes(report: Report) -> list[int]:
    return [e["index"] for e in report.errors]


def test_a_clean_jsonl_file(check: Check) -> None:
    lines = [json.dumps({"externalId": str(n), "name": f"asset {n}"}) for n in range(5)]
    report = check(("\n".join(lines) + "\n\n").encode(), "jsonl")
    assert report.ok and report.count == 5 and report.errors == []


def test_jsonl_lines_that_are_not_objects(check: Check) -> None:
    data = (b'{"a": 1}\n'        # 0 fine
            b"\n"                # 1 blank: skipped, not counted
            b"[1, 2]\n"          # 2 an array
            b'{"a": \n'          # 3 broken
            b"\xff\xfe\n"        # 4 not UTF-8
            b'{"a": NaN}\n'      # 5 not JSON (NaN)
            b'  {"b": 2}  \r\n'  # 6 fine (whitespace and CRLF)
            b'"text"')           # 7 a string, no newline at the end
    report = check(data, "jsonl")
    assert report.count == 7
    assert report.error_count == 5 and _indexes(report) == [2, 3, 4, 5, 7]
    messages = [e["message"] for e in report.errors]
    assert "array, not an object" in messages[0]
    assert messages[1].startswith("not valid JSON")
    assert "not UTF-8: byte 0xff at column 1" in messages[2]
    assert "NaN" in messages[3]
    assert "string, not an object" in messages[4]


def test_the_first_twenty_bad_lines_are_listed_and_all_are_counted(check: Check) -> None:
    data = b"".join(b"nope\n" if n % 2 else b"{}\n" for n in range(100))
    report = check(data, "jsonl")
    assert report.count == 100 and report.error_count == 50
    assert _indexes(report) == list(range(1, 40, 2))
    block = report.block()["report"]
    assert block["status"] == "invalid" and block["count"] == 100
    assert block["errorCount"] == 50 and len(block["errors"]) == 20
    assert report.summary().endswith("and 47 more")


def test_a_byte_order_mark_is_skipped_in_json_lines(check: Check) -> None:
    """As Centrapay does: the BOM is no part of the first record (nor counted)."""
    report = check(b'\xef\xbb\xbf{"externalId": "1"}\n{"externalId": "2"}\n', "jsonl")
    assert report.ok and report.count == 2 and report.no_external_id == 0
    report = check(b'\xef\xbb\xbf\n{"externalId": "1"}\n', "jsonl")   # a BOM alone
    assert report.ok and report.count == 1
    report = check(b'{"externalId": "1"}\n\xef\xbb\xbf{"externalId": "2"}\n', "jsonl")
    assert _indexes(report) == [1]     # only at the file's start


def test_records_without_an_external_id_are_counted_not_rejected(check: Check) -> None:
    report = check(b'{"externalId": "1"}\n{"name": "a"}\n{"externalId": 7}\n'
                   b'{"externalId": ""}\n', "jsonl")
    assert report.ok and report.count == 4
    assert report.no_external_id == 3 and report.no_external_id_lines == [1, 2, 3]


def test_an_empty_file_holds_no_records(check: Check) -> None:
    for fmt in ("jsonl", "csv", ""):
        report = check(b"\n\n", fmt)
        assert not report.ok and _indexes(report) == [0], fmt


def test_a_clean_csv_file_with_a_quoted_newline_and_a_bom(check: Check) -> None:
    data = b'\xef\xbb\xbfid,name,note\r\n1,a,"two\r\nlines"\r\n2,b,\r\n\r\n3,"c, d",x\r\n'
    report = check(data, "csv")
    assert report.ok and report.count == 3


def test_csv_rows_of_the_wrong_width_by_the_line_they_start_on(check: Check) -> None:
    data = (b"id,name\n"          # 0 the header
            b"1,a\n"              # 1
            b"2,b,extra\n"        # 2 three columns
            b'3,"multi\n'         # 3 a row over two lines…
            b'line",x\n'          # 4 …with three columns: reported at 3
            b"\n"                 # 5 blank
            b"4\n"                # 6 one column
            b"\xc3(,x\n"          # 7 not UTF-8
            b"5,e")               # 8 no newline at the end
    report = check(data, "csv")
    assert report.count == 6
    assert _indexes(report) == [2, 3, 6, 7]
    assert report.errors[0]["message"] == "3 columns where the header has 2"
    assert report.errors[2]["message"] == "1 column where the header has 2"
    assert "not UTF-8" in report.errors[3]["message"]


def test_a_csv_header_must_be_there_and_name_its_columns(check: Check) -> None:
    assert _indexes(check(b"", "csv")) == [0]
    only_header = check(b"id,name\n", "csv")
    assert _indexes(only_header) == [0] and "no records" in only_header.errors[0]["message"]
    blank_name = check(b"id,,name\n1,2,3\n", "csv")
    assert _indexes(blank_name) == [0] and "empty column" in blank_name.errors[0]["message"]
    twice = check(b"\nid,id\n1,2\n", "csv")
    assert _indexes(twice) == [1] and "twice" in twice.errors[0]["message"]
    # A BOM is no part of the header: its first name is "id", at line 0.
    bom = check(b"\xef\xbb\xbfid, id\n1,2\n", "csv")
    assert _indexes(bom) == [0] and "twice" in bom.errors[0]["message"]
    bom_blank = check(b"\xef\xbb\xbf,name\n1,2\n", "csv")
    assert _indexes(bom_blank) == [0] and "empty column" in bom_blank.errors[0]["message"]


def test_an_unknown_format_checks_utf8_only(check: Check) -> None:
    assert check(b"anything, at all\n[]\n", "").ok
    assert _indexes(check(b"ok\n\xff\n", "")) == [1]


def test_an_overlong_line_is_refused_without_being_held(check: Check, tmp_path: Path) -> None:
    long = b"x" * (validate.MAX_LINE + 10)
    report = check(b"{}\n" + long + b"\n{}\n" + long, "jsonl")
    assert report.count == 4 and _indexes(report) == [1, 3]
    assert "longer than 1 MiB" in report.errors[0]["message"]
    csv_report = check(b"a,b\n" + long + b"\n1,2\n", "csv")
    assert _indexes(csv_report) == [1] and csv_report.count == 2


def test_memory_stays_flat_for_a_big_file(tmp_path: Path) -> None:
    """64 MiB of one line (a sparse file) and 4 MiB of records: a few MiB at most."""
    sparse = tmp_path / "sparse.jsonl"
    with open(sparse, "wb") as out:
        out.truncate(64 << 20)
    records = tmp_path / "records.jsonl"
    line = json.dumps({"externalId": "x" * 20, "value": 1}).encode() + b"\n"
    with open(records, "wb") as out:
        for _ in range((4 << 20) // (len(line) * 1000)):
            out.write(line * 1000)
    for path, fmt in ((sparse, "jsonl"), (records, "jsonl"), (records, "csv")):
        fd = os.open(path, os.O_RDONLY)
        tracemalloc.start()
        try:
            report = validate.validate(fd, fmt)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            os.close(fd)
        assert peak < 8 << 20, (path.name, fmt, peak)
        assert report.count >= 1


def test_the_format_and_the_suffix_warning() -> None:
    assert validate.format_of("0000_a.csv", "farmlands-external-asset") == "jsonl"
    assert validate.format_of("0000_a.csv", "business-onboard") == "csv"
    assert validate.format_of("0000_a.NDJSON", "new-type") == "jsonl"
    assert validate.format_of("0000_a.txt", "new-type") == ""
    assert validate.suffix_warning("0000_a.jsonl", "ticketek-ticket") == ""
    assert validate.suffix_warning("0000_a.txt", "ticketek-ticket") == ""
    warning = validate.suffix_warning("0000_a.csv", "ticketek-ticket")
    assert "named like a CSV file" in warning and "sent as JSON Lines" in warning
    assert "only its UTF-8" in validate.suffix_warning("0000_a.dat", "new-type")
