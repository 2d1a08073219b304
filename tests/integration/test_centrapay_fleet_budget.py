"""Centrapay's request limit kept for the fleet, end to end: two nodes (two providers,
each with its own budget connection to one PostgreSQL store) load files through the
Centrapay emulator over loopback at once. With the shared budget their requests start
60/max_requests_per_minute apart together, and the emulator, whose limit leaves no room
for two nodes each spending the whole budget, never answers 429; with each node's own
limiter (the control) it does. And the daemon hands its provider the shared budget on
a PostgreSQL store, never on SQLite.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar, cast

import httpx
import pytest

from folderseal.core import config
from folderseal.core.errors import Throttled
from folderseal.providers import BatchView, Document, Remote
from folderseal.providers.centrapay.config import CentrapayProviderConfig
from folderseal.providers.centrapay.emulator import endpoints as emulator_module
from folderseal.providers.centrapay.emulator import start_centrapay
from folderseal.providers.centrapay.provider import CentrapayProvider
from folderseal.providers.http import RateLimiter
from folderseal.providers.measured import MeasuredProvider
from folderseal.service.daemon import Daemon
from folderseal.store.budgets import SharedBudget
from folderseal.store.postgres import migrate
from tests import centrapay_world as cw
from tests.helpers import Layout

KEY = "cp-fleet-budget-key-7d21c"
PER_MINUTE = 240            # a start every 0.25 s for the whole fleet
SPACING = 60.0 / PER_MINUTE
WINDOW = 2.5                # the emulator's window, cut from 60 s so a burst shows at once
FILES_PER_NODE = 2
T = TypeVar("T")


class Recording(httpx.HTTPTransport):
    """The real transport, noting when each request leaves."""

    def __init__(self, starts: list[float], lock: threading.Lock) -> None:
        super().__init__()
        self.starts = starts
        self.lock = lock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.starts.append(time.monotonic())
        return super().handle_request(request)


def _view(folder: Path, name: str, content: bytes) -> BatchView:
    folder.mkdir(parents=True)
    (folder / name).write_bytes(content)
    st = (folder / name).stat()
    document = Document(entry=name, file_id=f"f-{name}", sha256=cw.sha(content),
                        size=len(content), dev=st.st_dev, ino=st.st_ino, attempts=0)

    def open_document(found: Document) -> int:
        return os.open(folder / found.entry, os.O_RDONLY | os.O_CLOEXEC)

    return BatchView(id=hashlib.sha256(name.encode()).hexdigest()[:24], folder="loads_in",
                     documents=(document,), files_dir=folder, package=None,
                     staging=folder / "staging", open_document=open_document)


def _in_turn(call: Callable[[], T]) -> T:
    """``call``, again after each Throttled's retry_after (as the state machine
    releases a batch until its turn)."""
    while True:
        try:
            return call()
        except Throttled as exc:
            time.sleep(exc.retry_after or 1.0)


def _load(provider: CentrapayProvider, view: BatchView) -> None:
    """One batch file through publish, the create and its polls to the end."""
    ledger = cw.FakeLedger()
    provider.prepare(view, ledger)
    provider.create(view, ledger)
    view = ledger.view(view)
    _in_turn(lambda: provider.accept(view, "", ledger))
    (remote,) = ledger.created_ids
    while _in_turn(lambda: provider.status(view, remote)).state != Remote.CLOSED:
        time.sleep(provider.poll_interval)
    (result,) = provider.download(view, remote)
    assert result.ok, result


@pytest.fixture
def public(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    folder = tmp_path / "public"
    folder.mkdir(mode=0o711)
    with cw.served(folder) as url:
        yield folder, url


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "control-per-node"])
def test_two_nodes_space_their_requests_through_one_budget(
        tmp_path: Path, postgres_url: str, public: tuple[Path, str],
        monkeypatch: pytest.MonkeyPatch, shared: bool) -> None:
    monkeypatch.setattr(emulator_module, "RATE_WINDOW", WINDOW)
    migrate(postgres_url)
    folder, url = public
    key_file = tmp_path / "centrapay.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    starts: list[float] = []
    lock = threading.Lock()
    # At most WINDOW / SPACING + 1 starts fit in a window when they are spaced: room
    # for one more, none for two nodes each at the full rate.
    limit = int(WINDOW / SPACING) + 2
    with start_centrapay(api_key=KEY, data_dir=tmp_path / "emulator", seed=12,
                         step_seconds=0.05, rate_limit=limit) as emulator:
        cfg = CentrapayProviderConfig.model_validate({
            **cw.provider_keys(emulator.url, str(key_file)), **cw.folder_keys(folder, url),
            "max_requests_per_minute": PER_MINUTE, "poll_interval_seconds": 0.01})
        providers = []
        for node in ("node-a", "node-b"):
            provider = CentrapayProvider("loads", cfg, tmp_path / node,
                                         transport=Recording(starts, lock))
            if shared:
                limit_of = provider.request_limit
                provider.use_budget(SharedBudget(postgres_url, node, limit_of.key,
                                                 limit_of.per_minute, limit_of.what))
            provider.start()
            providers.append(provider)
        failures: list[BaseException] = []

        def node_loads(index: int, provider: CentrapayProvider) -> None:
            try:
                for number in range(FILES_PER_NODE):
                    name = f"n{index}-{number}.jsonl"
                    _load(provider, _view(tmp_path / "batches" / name, name,
                                          cw.jsonl(name, 3)))
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=node_loads, args=(i, p))
                   for i, p in enumerate(providers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        for provider in providers:
            provider.close()
        journal = emulator.read_journal()
    assert failures == []
    assert sum(1 for e in journal if e["event"] == "fetched") == 2 * FILES_PER_NODE
    refused = [e for e in journal if e["event"] == "rate_limited"]
    starts.sort()
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert len(starts) >= 4 * FILES_PER_NODE
    assert starts[-1] - starts[0] > WINDOW    # long enough for the emulator's window to judge
    if shared:
        assert refused == []
        # One start every SPACING for both nodes together. (Single gaps may be shorter:
        # a thread the machine's load holds up on its way to the socket, or a holder
        # that comes back late for its kept turn, starts late, close to the next one.)
        assert (starts[-1] - starts[0]) / (len(starts) - 1) > SPACING * 0.95, gaps
    else:  # each node spends the whole budget: together twice the limit
        assert refused, "the emulator's limit let two nodes at the full rate through"


@pytest.mark.parametrize("store", ["postgresql", "sqlite"])
def test_the_daemon_hands_a_fleet_node_the_shared_budget(
        tmp_path: Path, postgres_url: str, public: tuple[Path, str], store: str) -> None:
    """The daemon on a PostgreSQL store gives its Centrapay provider the fleet's budget
    (named for the provider, at its max_requests_per_minute); on SQLite it keeps its own
    limiter."""
    folder, url = public
    key_file = tmp_path / "centrapay.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    layout = Layout(tmp_path, provider={
        **cw.provider_keys("http://127.0.0.1:9", str(key_file)), **cw.folder_keys(folder, url),
        "max_requests_per_minute": 90})
    if store == "postgresql":
        layout.extra = f'\n[store]\nurl = "{postgres_url}"\nauto_migrate = true\n'
    layout.write()
    daemon = Daemon(config.load(layout.config), batch_threads=0)
    try:
        daemon.prepare()
        provider = cast(MeasuredProvider, daemon.providers["local"]).inner
        assert isinstance(provider, CentrapayProvider)
        if store == "postgresql":
            assert isinstance(provider.budget, SharedBudget)
            assert (provider.budget.key, provider.budget.per_minute, provider.budget.node) == \
                ("centrapay:local", 90, "test-node")
        else:
            assert isinstance(provider.budget, RateLimiter)
    finally:
        daemon.close()
