"""What the store's contract tests share: each runs once on the SQLite store and once on
the in-memory one (``BACKENDS``), so the fake cannot drift from the real. The fixtures
built from them are in ``tests/unit/store_contract/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from folderseal.core.model import BatchRecord
from folderseal.store import Store
from folderseal.store.memory import MemoryStore
from folderseal.store.sqlite import SqliteStore

T0 = 1_800_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Backend:
    """Connections to one store of one backend, each for a node; all closed at the end."""

    def __init__(self, kind: str, state_dir: Path, clock: Clock) -> None:
        self.kind = kind
        self.clock = clock
        self.path = state_dir / "folderseal.sqlite"
        self._memory = MemoryStore("first", clock=clock, state_dir=state_dir)
        self._opened: list[Store] = []

    def open(self, node: str) -> Store:
        """A new connection to the same store, as ``node``."""
        opened: Store = SqliteStore(self.path, node, clock=self.clock) \
            if self.kind == "sqlite" else self._memory.connect(node)
        self._opened.append(opened)
        return opened

    def close(self) -> None:
        for opened in self._opened:
            opened.close()


BACKENDS = ["sqlite", "memory"]


def opened(kind: str, state_dir: Path) -> Iterator[Backend]:
    """A store of that backend in ``state_dir``, on a clock the test moves; closed after."""
    backend = Backend(kind, state_dir, Clock())
    yield backend
    backend.close()


def claim(store: Store, file_id: str, source: str = "scan.pdf", size: int = 100,
          folder: str = "scans") -> None:
    store.add_claim(id=file_id, folder=folder, source=source, dev=1,
                    ino=hash(file_id) % 10**6, size=size, mtime_ns=5, sha256="ab" * 32,
                    seen_at=store.clock() - 1)


def formed_batch(store: Store, batch_id: str = "job1", n: int = 2) -> BatchRecord:
    ids = [f"{batch_id}-f{i}" for i in range(n)]
    for file_id in ids:
        claim(store, file_id, source=f"{file_id}.pdf")
    store.create_batch(batch_id=batch_id, folder="scans", provider="local",
                     entries=[(f, f"{i:04d}_{f}.pdf") for i, f in enumerate(ids)])
    batch = store.batch(batch_id)
    assert batch is not None
    return batch


def acquired(store: Store) -> BatchRecord:
    batch = store.acquire_batch()
    assert batch is not None
    return batch


def batch_events(store: Store, batch_id: str) -> list[tuple[str | None, str | None]]:
    return [(e.from_state, e.to_state) for e in store.events(batch_id=batch_id, kind="batch.state")]
