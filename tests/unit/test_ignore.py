"""Tests for folderseal.intake.ignore.NameFilter: the built-in ignore list and user patterns."""

from __future__ import annotations

import pytest

from folderseal.intake.ignore import IgnoredTally, NameFilter


@pytest.mark.parametrize("name", [
    ".hidden.pdf", "._invoice.pdf", ".invoice.pdf.Ab12Cd", ".syncthing.scan.pdf.tmp",
    "~$report.docx", "~syncthing~scan.pdf.tmp", "~lock",
    "scan.tmp", "scan.TMP", "scan.temp", "scan.Temp", "scan.part", "scan.PART",
    "scan.partial", "scan.crdownload", "scan.CrDownload", "scan.download", "scan.swp",
    "scan.SWP", "Thumbs.db", "thumbs.db", "THUMBS.DB", "desktop.ini", "Desktop.ini",
])
def test_builtin_ignored_names(name: str) -> None:
    """OS junk and in-progress names are never documents, whatever their case."""
    assert NameFilter().wants_file(name) is False
    assert NameFilter().wants_file(f"2026/{name}") is False


@pytest.mark.parametrize("name", ["scan.pdf", "Scan.PDF", "report.docx", "tmp.pdf",
                                  "part1.pdf", "notes.txt", "a~b.pdf", "a.b.pdf"])
def test_ordinary_names_are_wanted(name: str) -> None:
    """Names that only look similar to junk are documents."""
    assert NameFilter().wants_file(name) is True
    assert NameFilter().wants_file(f"2026/11/{name}") is True


@pytest.mark.parametrize("folder", ["@eaDir", "@EADIR", "__MACOSX", "__macosx", ".folderseal",
                                    ".stfolder", ".Trashes", ".git"])
def test_builtin_ignored_folders(folder: str) -> None:
    """@eaDir, __MACOSX and every dot-folder are never entered, at any depth."""
    names = NameFilter()
    assert names.wants_dir(folder) is False
    assert names.wants_file(f"{folder}/scan.pdf") is False
    assert names.wants_file(f"2026/{folder}/scan.pdf") is False
    assert names.wants_file(f"{folder}/sub/scan.pdf") is False


def test_work_folder_is_never_scanned() -> None:
    """The default work folder <inbox>/.folderseal/work lies in an ignored folder."""
    assert NameFilter().wants_file(".folderseal/work/incoming/abc/scan.pdf") is False


@pytest.mark.parametrize("folder", ["2026", "scans", "eaDir", "MACOSX", "~folder", "a.b"])
def test_ordinary_folders_are_entered(folder: str) -> None:
    """Folders not on the list are entered."""
    assert NameFilter().wants_dir(folder) is True


def test_user_exclude_adds_to_the_builtin_list() -> None:
    """exclude = ["*.docx"] ignores .docx and still ignores the built-in names."""
    names = NameFilter(exclude=["*.docx"])
    assert names.wants_file("letter.docx") is False
    assert names.wants_file("scan.tmp") is False
    assert names.wants_file("Thumbs.db") is False
    assert names.wants_file(".hidden.pdf") is False
    assert names.wants_file("scan.pdf") is True


def test_empty_exclude_keeps_the_builtin_list() -> None:
    """exclude = [] does not switch the built-in list off."""
    names = NameFilter(include=["*"], exclude=[])
    assert names.wants_file("scan.part") is False
    assert names.wants_file("desktop.ini") is False


def test_user_include_cannot_override_the_builtin_list() -> None:
    """include = ["*.tmp", ".*"] still never takes temp files or dotfiles."""
    names = NameFilter(include=["*.tmp", ".*", "thumbs.db"])
    assert names.wants_file("scan.tmp") is False
    assert names.wants_file(".scan.pdf") is False
    assert names.wants_file("Thumbs.db") is False


def test_include_narrows_the_files_taken() -> None:
    """include = ["*.pdf"] takes PDFs only, in any case."""
    names = NameFilter(include=["*.pdf"])
    assert names.wants_file("scan.pdf") is True
    assert names.wants_file("SCAN.PDF") is True
    assert names.wants_file("2026/scan.Pdf") is True
    assert names.wants_file("letter.docx") is False
    assert names.wants_file("scan.pdf.part") is False


def test_user_patterns_are_case_insensitive() -> None:
    """Upper-case user patterns match lower-case names and the other way round."""
    names = NameFilter(include=["*.PDF", "*.tiff"], exclude=["DRAFT*"])
    assert names.wants_file("scan.pdf") is True
    assert names.wants_file("scan.TIFF") is True
    assert names.wants_file("draft-1.pdf") is False
    assert names.wants_file("Draft-2.PDF") is False


def test_pattern_without_slash_matches_the_name_at_any_depth() -> None:
    """exclude = ["draft*"] ignores drafts in subfolders too."""
    names = NameFilter(exclude=["draft*"])
    assert names.wants_file("2026/11/draft-1.pdf") is False
    assert names.wants_file("drafts/final.pdf") is True


def test_pattern_with_slash_matches_the_relative_path() -> None:
    """exclude = ["private/*"] ignores files under private/ but not a private.pdf elsewhere."""
    names = NameFilter(exclude=["private/*"])
    assert names.wants_file("private/a.pdf") is False
    assert names.wants_file("Private/B.PDF") is False
    assert names.wants_file("a.pdf") is True
    assert names.wants_file("other/private/a.pdf") is True
    assert names.wants_file("private.pdf") is True


def test_include_with_slash_matches_the_relative_path() -> None:
    """include = ["invoices/*.pdf"] takes PDFs under invoices/ only."""
    names = NameFilter(include=["invoices/*.pdf"])
    assert names.wants_file("invoices/a.pdf") is True
    assert names.wants_file("Invoices/A.PDF") is True
    assert names.wants_file("a.pdf") is False
    assert names.wants_file("letters/a.pdf") is False
    assert names.wants_file("invoices/a.docx") is False


def test_special_characters_of_a_pattern_match_as_the_shell_would() -> None:
    """Patterns are compiled into one expression: brackets, ``?`` and regex characters
    in names keep their shell meaning (``[0-9]``, one character) or none (``+``, ``(``)."""
    names = NameFilter(exclude=["scan-[0-9]?.pdf", "a+b(1).pdf", "*.[ch]"])
    assert names.wants_file("scan-12.pdf") is False
    assert names.wants_file("scan-x2.pdf") is True
    assert names.wants_file("scan-123.pdf") is True
    assert names.wants_file("a+b(1).pdf") is False and names.wants_file("aab1.pdf") is True
    assert names.wants_file("main.c") is False and names.wants_file("main.cc") is True


class _Entry:
    """A listed file whose stat says when it was written (or that it must not be asked)."""

    def __init__(self, name: str, mtime: float | None) -> None:
        self.name = name
        self.mtime = mtime

    def stat(self, follow_symlinks: bool = True) -> object:
        assert self.mtime is not None, f"{self.name} stat'ed at a scan that does not refresh"
        return type("Stat", (), {"st_mtime": self.mtime})()


def _tally(entries: list[_Entry], refresh: bool, previous: IgnoredTally | None) -> IgnoredTally:
    tally = IgnoredTally(refresh, previous)
    for entry in entries:
        tally.add(entry.name, entry)  # type: ignore[arg-type]
    tally.done()
    return tally


def test_the_ignored_files_are_counted_every_scan_and_stated_only_to_refresh() -> None:
    """A share polled every second may hold thousands of other programs' files: each scan
    counts them, only a refreshing scan stats them for the oldest; in between the oldest
    is carried on while it is still there, and forgotten once it is gone."""
    first = _tally([_Entry("a.tmp", 50.0), _Entry("b.tmp", 10.0), _Entry("Thumbs.db", 1.0)],
                   True, None)
    assert (first.count, first.oldest, first.oldest_mtime) == (2, "b.tmp", 10.0)
    carried = _tally([_Entry("a.tmp", None), _Entry("b.tmp", None), _Entry("c.tmp", None)],
                     False, first)
    assert (carried.count, carried.oldest, carried.oldest_mtime) == (3, "b.tmp", 10.0)
    gone = _tally([_Entry("a.tmp", None)], False, carried)
    assert (gone.count, gone.oldest) == (1, "")
    refreshed = _tally([_Entry("a.tmp", 50.0)], True, gone)
    assert (refreshed.oldest, refreshed.oldest_mtime) == ("a.tmp", 50.0)
