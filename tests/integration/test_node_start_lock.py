"""Nodes starting at once on one PostgreSQL store, and `folderseal recover` beside them:
a node's register runs under the store's start lock, so of two daemons of one name
racing to start exactly one registers (nodes of other names start beside each other:
the fleet); recover holds the store for its whole run, refusing (exit 78) while a node
is alive or another recover holds it, and a node refuses to start meanwhile. On a real
PostgreSQL, each test in a schema of its own; each node a state folder and a
connection of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from folderseal.core.config import Settings, load
from folderseal.core.errors import ConfigError, ExitCode
from folderseal.service import node
from folderseal.service.recover import recover
from folderseal.store import Store
from folderseal.store.opening import open_store
from folderseal.store.postgres import migrate

CONFIG = """
state_dir = "{name}/state"
node = "{node}"
[store]
url = "{url}"
[providers.remote]
kind = "seal"
base_url = "https://seal.invalid"
api_key = "k"
[folders.scans]
inbox = "{name}/inbox"
outbox = "{name}/outbox"
errors = "{name}/errors"
provider = "remote"
"""


@pytest.fixture
def fleet(postgres_url: str, tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """Settings of a node in folder ``name`` (its node name too, unless ``node_name``)
    on the test's own migrated store."""
    migrate(postgres_url)

    def settings(name: str, node_name: str = "") -> Settings:
        path = tmp_path / f"{name}.toml"
        path.write_text(CONFIG.format(name=name, node=node_name or name, url=postgres_url))
        loaded = load(path)
        loaded.state_dir.mkdir(parents=True, exist_ok=True)
        return loaded
    yield settings


@pytest.fixture
def stores() -> Iterator[Callable[[Settings], Store]]:
    """The store of a node's settings (its own connection), closed at the end."""
    with ExitStack() as stack:
        def opened(settings: Settings) -> Store:
            store = open_store(settings)
            stack.callback(store.close)
            return store
        yield opened


def _race(fleet: Callable[..., Settings], stores: Callable[[Settings], Store],
          names: dict[str, str]) -> dict[str, str]:
    """Start a node for each key of ``names`` (its folder) under the node name of its
    value, all at once, each register slowed down after its check; how each ended."""
    outcomes: dict[str, str] = {}
    start = threading.Barrier(len(names))

    def start_node(folder: str) -> None:
        settings = fleet(folder, names[folder])
        store = stores(settings)
        register = store.register_node

        def slow_register(*args: object, **kwargs: object) -> bool:
            time.sleep(0.5)  # a window between check and register
            return register(*args, **kwargs)  # type: ignore[arg-type]
        store.register_node = slow_register  # type: ignore[method-assign]
        start.wait()
        try:
            node.register(store, settings, time.time())
            outcomes[folder] = "registered"
        except ConfigError as exc:
            outcomes[folder] = str(exc)

    threads = [threading.Thread(target=start_node, args=(f,)) for f in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_nodes_of_other_names_start_beside_each_other(
        fleet: Callable[[str], Settings], stores: Callable[[Settings], Store]) -> None:
    """Fleet mode: two nodes of their own names starting at once both register."""
    outcomes = _race(fleet, stores, {"scan-1": "scan-1", "scan-2": "scan-2"})
    assert outcomes == {"scan-1": "registered", "scan-2": "registered"}
    reader = stores(fleet("reader"))
    assert sorted(row["node"] for row in reader.nodes()) == ["scan-1", "scan-2"]


def test_of_two_daemons_of_one_name_starting_at_once_exactly_one_registers(
        fleet: Callable[..., Settings], stores: Callable[[Settings], Store]) -> None:
    """Two state folders under one node name, started at once: without the start lock
    both could pass the check; with it the second waits, sees the name taken by a live
    instance and refuses (exit 78)."""
    outcomes = _race(fleet, stores, {"one": "scan-1", "two": "scan-1"})
    winners = [f for f, outcome in outcomes.items() if outcome == "registered"]
    assert len(winners) == 1, outcomes
    loser, = set(outcomes) - set(winners)
    assert "another folderseal runs as node 'scan-1'" in outcomes[loser]
    reader = stores(fleet("reader"))
    assert [row["node"] for row in reader.nodes()] == ["scan-1"]


def test_recover_refuses_while_a_node_is_alive(
        fleet: Callable[[str], Settings], stores: Callable[[Settings], Store]) -> None:
    first = fleet("scan-1")
    node.register(stores(first), first, time.time())
    with pytest.raises(ConfigError, match=r"node\(s\) scan-1 run on this store") as refused:
        recover(fleet("scan-2"))
    assert refused.value.exit_code == ExitCode.CONFIG
    assert "before `folderseal recover`" in str(refused.value)


def test_recover_refuses_while_another_recover_holds_the_store(
        fleet: Callable[[str], Settings], stores: Callable[[Settings], Store]) -> None:
    """Another recover (its lock taken on a connection of its own) keeps the store: a
    second recover refuses at once, saying what to do; once the first let go, it runs."""
    other = stores(fleet("scan-1"))
    assert other.lock_recover()
    second = fleet("scan-2")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="another `folderseal recover` runs on this store"):
        recover(second)
    assert time.monotonic() - started < 5  # tried, not waited for
    other.unlock_recover()
    assert recover(second) == ExitCode.OK


def test_a_node_refuses_to_start_while_recover_holds_the_store(
        fleet: Callable[[str], Settings], stores: Callable[[Settings], Store]) -> None:
    """While recover runs, a node starting refuses at once (it does not wait for it) and
    registers nothing; once recover ended (its connection closed), it starts."""
    recovering = open_store(fleet("scan-1"))
    assert recovering.lock_recover()
    settings = fleet("scan-2")
    store = stores(settings)
    with pytest.raises(ConfigError, match="`folderseal recover` runs on this store") as refused:
        node.register(store, settings, time.time())
    assert refused.value.exit_code == ExitCode.CONFIG
    assert store.nodes() == []
    recovering.close()  # a recover that died: its session's lock goes with it...
    deadline = time.monotonic() + 10
    while True:  # ...once the server has ended the session, a moment after the close
        try:
            node.register(store, settings, time.time())
            break
        except ConfigError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert [row["node"] for row in store.nodes()] == ["scan-2"]


def test_recover_holds_the_store_for_its_whole_run(
        fleet: Callable[[str], Settings], stores: Callable[[Settings], Store],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A node starting while recover settles the folders is refused."""
    from folderseal.service import recover as recovering

    seen: list[str] = []
    settle = recovering.settle

    def settle_while_a_node_starts(settings: Settings, store: Store, make: object) -> int:
        other = fleet("scan-2")
        try:
            node.register(stores(other), other, time.time())
            seen.append("registered")
        except ConfigError as exc:
            seen.append(str(exc))
        return settle(settings, store, make)  # type: ignore[arg-type]
    monkeypatch.setattr(recovering, "settle", settle_while_a_node_starts)
    assert recover(fleet("scan-1")) == ExitCode.OK
    assert len(seen) == 1 and "`folderseal recover` runs on this store" in seen[0]
    other = fleet("scan-2")
    node.register(stores(other), other, time.time())  # recover let go at its end
