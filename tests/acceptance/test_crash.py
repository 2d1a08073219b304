"""Crashes: the daemon killed (SIGKILL) right after each step, and at random while files flow.

After every restart each dropped file must end exactly once: in the outbox with one
sidecar and valid signatures, or in errors with a record. None lost, none published
twice, no temp files left in the outbox.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from pathlib import Path

import pytest

from folderseal.providers.local.provider import FILES_PER_MESSAGE
from tests.helpers import Daemon, Layout, check_sidecar, error_records, sidecars, wait_until
from tests.pdfs import make_pdf


def _drop(inbox: Path, count: int, start: int = 0) -> dict[str, str]:
    expected = {}
    for i in range(start, start + count):
        source = f"sub{i % 2}/doc-{i}.pdf" if i % 2 == 0 else f"note-{i}.txt"
        data = make_pdf(None, text=f"crash test {i}") if source.endswith(".pdf") \
            else f"note {i}\n".encode() * (50 + i)
        path = inbox / source
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name)
        tmp.write_bytes(data)
        tmp.rename(path)
        expected[source] = hashlib.sha256(data).hexdigest()
    return expected


def _outcomes(layout: Layout) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    delivered: dict[str, list[str]] = {}
    for sidecar in sidecars(layout.outbox):
        data = json.loads(sidecar.read_text())
        delivered.setdefault(data["source"], []).append(data["input"]["sha256"])
    failed: dict[str, list[str]] = {}
    for record in error_records(layout.errors):
        data = json.loads(record.read_text())
        failed.setdefault(data["source"], []).append(data["error"]["code"])
    return delivered, failed


def _assert_exactly_once(layout: Layout, expected: dict[str, str]) -> None:
    delivered, failed = _outcomes(layout)
    for source, digest in expected.items():
        outcomes = delivered.get(source, []) + failed.get(source, [])
        assert len(outcomes) == 1, f"{source}: {outcomes} (want exactly one outcome)"
        if source in delivered:
            assert delivered[source] == [digest]
    assert set(delivered) | set(failed) == set(expected)
    for sidecar in sidecars(layout.outbox):
        check_sidecar(sidecar, layout)
    listed = set()
    for sidecar in sidecars(layout.outbox):
        listed.add(sidecar.name)
        for output in json.loads(sidecar.read_text())["outputs"]:
            listed.add(Path(output["path"]).name)
    stray = [p for p in layout.outbox.rglob("*") if p.is_file() and p.name not in listed]
    assert stray == [], f"files in the outbox no sidecar accounts for: {stray}"
    leftovers = [p for p in layout.inbox.rglob("*") if p.is_file() and ".folderseal" not in p.parts]
    assert leftovers == []


def _all_settled(layout: Layout, expected: dict[str, str]) -> bool:
    delivered, failed = _outcomes(layout)
    return set(delivered) | set(failed) >= set(expected)


CRASH_POINTS = [
    "claimed", "state:BATCHED", "state:CREATED", "state:UPLOADED", "state:ACCEPTING",
    "attempt@2", "state:ACCEPTED", "state:CLOSED", "state:DOWNLOADED",
    "output-published", "sidecar-published", "state:DELIVERED", "original-removed",
    "state:CLEANED",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_restart_after_crash_point_delivers_each_file_once(tmp_path: Path, point: str) -> None:
    """Killed right after a named step, a restarted daemon finishes every file exactly once.
    ``attempt@2``: the signer's second count of attempts, when the files of the first were
    signed or being signed: more files than its workers take at once."""
    layout = Layout(tmp_path)
    layout.write()
    at_once = 2 * 2 * FILES_PER_MESSAGE  # two messages for each of Layout's two workers
    expected = _drop(layout.inbox, at_once + 4 if point == "attempt@2" else 6)
    crashed = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": point})
    assert crashed.process.wait(timeout=60) == -9, f"crash point {point} was never reached"
    crashed.kill()
    daemon = Daemon(layout).started()
    wait_until(lambda: _all_settled(layout, expected), timeout=60, what="every file's outcome")
    time.sleep(0.5)  # a duplicate, if any, would show up now
    assert daemon.stop() == 0
    _assert_exactly_once(layout, expected)
    delivered, failed = _outcomes(layout)
    assert failed == {}, f"a crash made files fail: {failed}"


def test_random_kills_while_files_flow_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    """SIGKILL at random moments while files keep arriving: every file still ends once."""
    layout = Layout(tmp_path, folder={"batch_max_files": 5})
    layout.write()
    expected: dict[str, str] = {}
    rng = random.Random(20261122)
    dropping = threading.Thread(target=lambda: [expected.update(_drop(layout.inbox, 4, 4 * k))
                                                or time.sleep(0.25) for k in range(10)])
    dropping.start()
    kills = 0
    while dropping.is_alive() or kills < 4:
        daemon = Daemon(layout)
        time.sleep(rng.uniform(0.8, 2.0))
        daemon.kill()
        kills += 1
    dropping.join()
    daemon = Daemon(layout).started()
    wait_until(lambda: _all_settled(layout, expected), timeout=90, what="every file's outcome")
    time.sleep(0.5)
    assert daemon.stop() == 0
    assert len(expected) == 40
    _assert_exactly_once(layout, expected)
