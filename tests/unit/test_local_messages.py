"""How the local signer hands a batch's files to its workers: a few per message, spread
over the workers when they are few, a big file alone (small ones need not wait behind it)."""

from __future__ import annotations

from pathlib import Path

from folderseal.providers import Document
from folderseal.providers.local.config import LocalProviderConfig
from folderseal.providers.local.provider import FILES_PER_MESSAGE, MESSAGE_BYTES, LocalProvider


def _messages(tmp_path: Path, sizes: list[int], workers: int = 2,
              max_tasks: int = 5000) -> list[list[int]]:
    cfg = LocalProviderConfig(kind="local", certificate=tmp_path / "seal.p12", workers=workers,
                              worker_max_tasks=max_tasks)
    provider = LocalProvider("local", cfg, tmp_path / "state")  # never started: no workers
    group = [Document(entry=f"{i:04d}_f", file_id=str(i), sha256="", size=size, dev=0, ino=0,
                      attempts=0) for i, size in enumerate(sizes)]
    return [[int(d.file_id) for d in message] for message in provider._messages(group)]


def test_files_go_a_few_per_message(tmp_path: Path) -> None:
    count = 4 * FILES_PER_MESSAGE
    messages = _messages(tmp_path, [1000] * count)
    assert [len(m) for m in messages] == [FILES_PER_MESSAGE] * 4
    assert sum(messages, []) == list(range(count))  # in order, each once


def test_a_few_files_are_spread_over_the_workers(tmp_path: Path) -> None:
    assert _messages(tmp_path, [1000] * 3) == [[0, 1], [2]]
    assert _messages(tmp_path, [1000] * 3, workers=4) == [[0], [1], [2]]


def test_a_big_file_goes_in_a_message_of_its_own(tmp_path: Path) -> None:
    big = MESSAGE_BYTES + 1
    assert _messages(tmp_path, [10, big, 10, 10, 10, 10]) == [[0], [1], [2, 3, 4], [5]]
    assert _messages(tmp_path, [big, big]) == [[0], [1]]


def test_a_worker_replaced_after_every_few_files_gets_no_more_in_one_message(
        tmp_path: Path) -> None:
    """worker_max_tasks = 1 (a process for each file) still holds with messages."""
    assert _messages(tmp_path, [10] * 5, max_tasks=1) == [[0], [1], [2], [3], [4]]
