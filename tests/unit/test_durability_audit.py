# ruff: noqa: E501  (strace lines are quoted as strace prints them)
"""The campaign's durability audit reads strace output and finds both kinds of break."""

from __future__ import annotations

from pathlib import Path

from bench.torturekit.durability import audit

GOOD = """\
20 openat(AT_FDCWD</x>, "/s/a.txt.p7s", O_RDWR|O_CREAT|O_TRUNC|O_NOFOLLOW|O_CLOEXEC, 0600) = 3</s/a.txt.p7s>
20 fsync(3</s/a.txt.p7s>) = 0
10 openat(AT_FDCWD</x>, "/s/a.txt.p7s", O_RDONLY|O_NOFOLLOW|O_CLOEXEC) = 7</s/a.txt.p7s>
10 fsync(5</o/.folderseal-tmp-a>) = 0
10 renameat2(AT_FDCWD</x>, "/o/a.txt.json", AT_FDCWD</x>, "/o/b.txt.json", RENAME_NOREPLACE) = -1 EEXIST (File exists)
10 linkat(AT_FDCWD</x>, "/proc/self/fd/7", AT_FDCWD</x>, "/o/a.txt", AT_SYMLINK_FOLLOW) = 0
11 fsync(6</o/.folderseal-tmp-b> <unfinished ...>
10 renameat2(AT_FDCWD</x>, "/o/.folderseal-tmp-a", AT_FDCWD</x>, "/o/a.txt.json", RENAME_NOREPLACE) = 0
11 <... fsync resumed>) = 0
10 fsync(8</o>) = 0
10 unlink("/w/batches/b1/0001_a.txt") = 0
10 unlink("/w/batches/b1/.batch.json") = 0
"""


def _audit(tmp_path: Path, text: str) -> tuple[dict[str, int], list[str]]:
    trace = tmp_path / "trace.txt"
    trace.write_text(text)
    seen, broken = audit(trace, Path("/o"), Path("/w/batches"))
    return dict(seen), broken


def test_a_careful_trace_passes(tmp_path: Path) -> None:
    """Data fsynced before its name, the folder fsynced before the original goes: clean;
    failed calls and hidden files are not counted."""
    seen, broken = _audit(tmp_path, GOOD)
    assert broken == []
    assert seen == {"outputs published": 2, "originals removed": 1}


def test_a_name_given_before_its_data_was_synced_is_found(tmp_path: Path) -> None:
    """A temp file renamed into the outbox without an fsync first breaks rule 1."""
    seen, broken = _audit(tmp_path, GOOD.replace("10 fsync(5</o/.folderseal-tmp-a>) = 0\n", ""))
    assert len(broken) == 1 and broken[0].startswith("data before name: /o/a.txt.json")


def test_a_file_linked_by_its_descriptor_is_checked_by_the_path_it_was_opened_at(
        tmp_path: Path) -> None:
    """A staged output linked through /proc/self/fd/N counts as synced when its worker
    fsynced it (another process): the thread's open of N tells which file it is. Without
    that fsync, or with N opened by another thread only, rule 1 is broken."""
    unsynced = GOOD.replace("20 fsync(3</s/a.txt.p7s>) = 0\n", "")
    seen, broken = _audit(tmp_path, unsynced)
    assert broken == ["data before name: /o/a.txt named before /s/a.txt.p7s was fsynced"]
    rewritten = GOOD.replace(
        "20 fsync(3</s/a.txt.p7s>) = 0\n", "20 fsync(3</s/a.txt.p7s>) = 0\n"
        '21 openat(AT_FDCWD</x>, "/s/a.txt.p7s", O_WRONLY|O_TRUNC) = 4</s/a.txt.p7s>\n')
    seen, broken = _audit(tmp_path, rewritten)
    assert broken == ["data before name: /o/a.txt named before /s/a.txt.p7s was fsynced"]
    other_thread = GOOD.replace("10 openat(AT_FDCWD</x>, \"/s/a.txt.p7s\"",
                                "11 openat(AT_FDCWD</x>, \"/s/a.txt.p7s\"")
    seen, broken = _audit(tmp_path, other_thread)
    assert len(broken) == 1 and "an fd the trace does not show opened" in broken[0], broken


def test_an_original_removed_before_the_outbox_was_synced_is_found(tmp_path: Path) -> None:
    """Removing an original while a published name is not durable breaks rule 2."""
    seen, broken = _audit(tmp_path, GOOD.replace("10 fsync(8</o>) = 0\n", ""))
    assert len(broken) == 1 and broken[0].startswith("names before removal:")


def test_another_batchs_names_do_not_hold_back_a_removal(tmp_path: Path) -> None:
    """A second batch thread publishing another file's output (not yet durable) while this
    batch removes its original, whose own outputs are durable: rule 2 holds."""
    other = ('12 openat(AT_FDCWD</x>, "/s/n.txt", O_RDONLY) = 9</s/n.txt>\n'
             "12 fsync(9</s/n.txt>) = 0\n"
             '12 linkat(AT_FDCWD</x>, "/proc/self/fd/9", AT_FDCWD</x>, "/o/notes/n.txt", '
             "AT_SYMLINK_FOLLOW) = 0\n")
    trace = GOOD.replace("10 unlink(", other + "10 unlink(", 1)
    seen, broken = _audit(tmp_path, trace)
    assert broken == []
    assert seen == {"outputs published": 3, "originals removed": 1}
    # ... and its own output not durable yet is still found
    seen, broken = _audit(tmp_path, trace.replace("10 fsync(8</o>) = 0\n", ""))
    assert len(broken) == 1 and "/o/a.txt" in broken[0], broken


def test_short_pids_padded_by_strace_are_read(tmp_path: Path) -> None:
    """strace pads the pid to five places ("5396  linkat(…"), as on a fresh machine whose
    pids are still short: the same trace must count the same calls."""
    padded = "\n".join(f"{line[:2]}    {line[3:]}" for line in GOOD.splitlines())
    seen, broken = _audit(tmp_path, padded + "\n")
    assert broken == []
    assert seen == {"outputs published": 2, "originals removed": 1}
