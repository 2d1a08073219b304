"""A request limit kept for the whole fleet (store/budgets.py) on a real PostgreSQL, each
test in a schema of its own: two budgets on two connections (two nodes) take turns
together, a turn far off is Throttled with its retry_after and kept for its holder, a
429's hold on one node holds the other, threads share one budget, and without the
database no turn is given (NotSent, never a call without one). Also the seam that hands
a provider the shared budget (providers/http.py's Limited, service/budgets.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from folderseal.core import config
from folderseal.core.errors import NotSent, Throttled
from folderseal.providers.centrapay.config import CentrapayProviderConfig
from folderseal.providers.centrapay.provider import CentrapayProvider
from folderseal.providers.http import Limited, RateLimiter, RequestBudget
from folderseal.service.budgets import share_request_limit
from folderseal.store.budgets import MAX_SLEEP, SharedBudget
from folderseal.store.postgres import migrate
from tests import centrapay_world as cw
from tests.helpers import Layout

KEY = "centrapay:loads"


class Sleeps:
    """A budget's sleep that only notes how long it was asked to sleep."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def url(postgres_url: str) -> str:
    migrate(postgres_url)
    return postgres_url


@pytest.fixture
def nodes(url: str) -> Iterator[tuple[SharedBudget, SharedBudget, Sleeps]]:
    """Two nodes' budgets for one limit of 60 a minute, each on its own connection; their
    sleeps only noted (the test runs in well under a second of real time)."""
    sleeps = Sleeps()
    first = SharedBudget(url, "node-a", KEY, 60, "Centrapay (loads)", sleep=sleeps)
    second = SharedBudget(url, "node-b", KEY, 60, "Centrapay (loads)", sleep=sleeps)
    yield first, second, sleeps
    first.close()
    second.close()


def _throttled(budget: SharedBudget, holder: str = "") -> float:
    with pytest.raises(Throttled) as caught:
        budget.wait(holder)
    assert caught.value.retry_after is not None
    return caught.value.retry_after


def _row(url: str) -> tuple[float, float, float]:
    """The limit's row (next free start, held until) and the database's now."""
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT next_at, held_until, extract(epoch FROM clock_timestamp())"
                             " FROM request_budgets WHERE key = %s", (KEY,)).fetchone()
    assert found is not None
    return float(found[0]), float(found[1]), float(found[2])


# -- two nodes, one limit ------------------------------------------------------------------

def test_two_nodes_take_turns_one_second_apart_in_real_time(url: str) -> None:
    """60 a minute for the fleet: two nodes, each calling as fast as it may (told to
    come back later, it sleeps until then, as the state machine releases a batch), start
    1 s apart together (one a second, not two)."""
    budgets = [SharedBudget(url, f"node-{n}", KEY, 60) for n in "ab"]
    starts: list[float] = []
    lock = threading.Lock()

    def calls(budget: SharedBudget) -> None:
        for call in range(2):
            while True:
                try:
                    budget.wait(f"status {budget.node} {call}")
                    break
                except Throttled as exc:
                    time.sleep(exc.retry_after or 0.0)
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=calls, args=(b,)) for b in budgets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for budget in budgets:
        budget.close()
    starts.sort()
    assert len(starts) == 4
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert all(gap > 0.95 for gap in gaps), gaps
    assert starts[-1] - starts[0] < 3.5


def _about(seconds: float, turn: float) -> bool:
    """A wait for a turn ``turn`` seconds after the first start, asked a little later
    (a loaded machine: up to half a second): never longer, never much shorter."""
    return turn - 0.5 < seconds <= turn + 0.01


def test_turns_are_reserved_for_the_fleet_and_throttled_far_off(
        url: str, nodes: tuple[SharedBudget, SharedBudget, Sleeps]) -> None:
    """Each turn either node takes is the next second of the one budget; one more than
    MAX_SLEEP away is Throttled with the seconds until it, told on the database's clock."""
    first, second, sleeps = nodes
    assert first.wait() == 0.0
    start = _row(url)[0] - 1.0                     # the first start, on the database's clock
    waited = second.wait()                         # 1 s after the first node's start
    assert _about(waited, 1.0) and waited <= MAX_SLEEP and sleeps.slept == [waited]
    assert _about(_throttled(first), 2.0)
    with pytest.raises(Throttled, match=r"max_requests_per_minute = 60, shared by every node"):
        second.wait()
    next_at, held_until, _ = _row(url)
    assert next_at - start == pytest.approx(4.0) and held_until == 0.0


def test_a_holder_told_to_come_back_keeps_its_turn(
        url: str, nodes: tuple[SharedBudget, SharedBudget, Sleeps]) -> None:
    first, second, sleeps = nodes
    first.wait()
    start = _row(url)[0] - 1.0
    first.wait()
    told = _throttled(second, "status cp1")
    assert _about(told, 2.0)
    assert _about(_throttled(first, "status cp2"), 3.0)
    # Asked again at once: the same turn (2 s on), not a new one after the others.
    again = _throttled(second, "status cp1")
    assert told - 0.5 < again <= told
    assert _row(url)[0] - start == pytest.approx(4.0)    # no turn reserved twice
    time.sleep(1.2)
    waited = second.wait("status cp1")             # its turn is now under a second away
    assert 0.0 < waited < 1.0 and sleeps.slept[-1] == waited
    assert _row(url)[0] - start == pytest.approx(4.0)    # the ticket took nothing new


def test_a_hold_on_one_node_holds_the_other(
        url: str, nodes: tuple[SharedBudget, SharedBudget, Sleeps]) -> None:
    """A 429 on one node (hold_for its Retry-After) holds every node's calls; a turn
    reserved before it that falls within it is given up and taken again after it."""
    first, second, _ = nodes
    second.wait()
    second.wait()
    assert _about(_throttled(second, "create a"), 2.0)     # a ticket
    first.hold_for(30)
    held_until = _row(url)[1]
    assert _about(_throttled(first), 30.0)         # the first turn after the hold
    assert _about(_throttled(second, "create a"), 31.0)   # its ticket given up, a new turn
    first.hold_for(5)                              # a shorter hold shortens nothing
    next_at, held, _ = _row(url)
    assert held == held_until and next_at - held_until == pytest.approx(2.0)


def test_threads_share_one_budget(url: str) -> None:
    """Batch threads call one node's budget at once: each call reserves its own turn
    (60 calls: 60 s of turns), none is lost or given twice."""
    sleeps = Sleeps()
    budget = SharedBudget(url, "node-a", KEY, 60, sleep=sleeps)
    budget.wait()
    first_free = _row(url)[0]
    outcomes: list[float] = []
    lock = threading.Lock()

    def calls(index: int) -> None:
        for call in range(3):
            try:
                waited = budget.wait(f"batch {index}.{call}")
            except Throttled as exc:
                assert exc.retry_after is not None
                waited = exc.retry_after
            with lock:
                outcomes.append(waited)

    threads = [threading.Thread(target=calls, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    budget.close()
    assert len(outcomes) == 60
    assert _row(url)[0] - first_free == pytest.approx(60.0)   # one turn a call, a second each
    waits = sorted(outcomes)
    assert all(later - earlier > 0.5 for earlier, later in zip(waits, waits[1:], strict=False))


# -- without the database ------------------------------------------------------------------

def test_no_turn_without_the_database(tmp_path: Path) -> None:
    """A database that cannot be reached gives no turn: NotSent (the batch waits and
    tries again, the create goes back before the point of no return), never a call;
    the URL's password is not in the message; a hold is skipped without an error."""
    budget = SharedBudget("postgresql://folderseal:pw-S3cret@127.0.0.1:1/folderseal",
                          "node-a", KEY, 60, "Centrapay (loads)")
    with pytest.raises(NotSent) as caught:
        budget.wait("create a")
    assert not isinstance(caught.value, Throttled)
    message = str(caught.value)
    assert "Centrapay (loads)'s request budget" in message and "pw-S3cret" not in message
    assert "nothing was sent" in message and "check that the database server" in message
    budget.hold_for(10)
    budget.close()


def test_a_cut_connection_is_opened_again(
        url: str, nodes: tuple[SharedBudget, SharedBudget, Sleeps]) -> None:
    """The server ends the budget's session (a restart, a cut): that call gives no turn
    (NotSent), the next one connects again and takes one."""
    first, _, _ = nodes
    first.wait()
    assert first._conn is not None
    pid = first._conn.info.backend_pid            # this budget's session, no other test's
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(NotSent, match="cannot be read"):
        first.wait()
    assert _about(first.wait(), 1.0)               # its turn after the first


# -- the seam ------------------------------------------------------------------------------

class Recorded:
    """A RequestBudget that notes what it is asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []

    def wait(self, holder: str = "") -> float:
        self.asked.append(("wait", holder))
        return 0.0

    def hold_for(self, seconds: float) -> None:
        self.asked.append(("hold_for", seconds))

    def close(self) -> None:
        self.asked.append(("close", None))


def _provider_keys(tmp_path: Path) -> dict[str, Any]:
    key = tmp_path / "centrapay.key"
    key.write_text("k-123\n")
    key.chmod(0o600)
    return {**cw.provider_keys("http://centrapay.test", str(key)),
            **cw.folder_keys(tmp_path / "public", "https://files.example/")}


def _centrapay(tmp_path: Path, handler: Any) -> CentrapayProvider:
    cfg = CentrapayProviderConfig.model_validate(_provider_keys(tmp_path))
    return CentrapayProvider("loads", cfg, tmp_path, transport=httpx.MockTransport(handler))


def test_a_provider_waits_at_the_budget_it_is_handed(tmp_path: Path) -> None:
    """Centrapay is Limited: its limit is named for the fleet, every call waits at the
    budget handed to it (also once started), a 429 holds that budget for its
    Retry-After, and closing the provider closes the budget."""
    answers = iter([httpx.Response(403, json={"message": "Forbidden"}),
                    httpx.Response(429, headers={"Retry-After": "7"})])
    provider = _centrapay(tmp_path, lambda request: next(answers))
    assert isinstance(provider, Limited)
    assert provider.request_limit.key == "centrapay:loads"
    assert provider.request_limit.per_minute == 6000
    assert isinstance(provider.budget, RateLimiter)
    provider.start()
    shared = Recorded()
    provider.use_budget(shared)
    assert provider._client.status("cp1") is None
    with pytest.raises(Throttled):
        provider._client.status("cp2")
    provider.close()
    assert shared.asked == [("wait", "status cp1"), ("wait", "status cp2"),
                            ("hold_for", 7.0), ("close", None)]


def test_without_a_turn_nothing_is_sent(tmp_path: Path) -> None:
    """A Centrapay node whose fleet budget cannot be read sends nothing: its create is
    NotSent (back before the point of no return), its poll too; no request leaves."""
    sent: list[httpx.Request] = []
    provider = _centrapay(tmp_path, lambda request: sent.append(request))
    provider.use_budget(SharedBudget("postgresql://folderseal@127.0.0.1:1/folderseal",
                                     "node-a", provider.request_limit.key, 60,
                                     provider.request_limit.what))
    client = provider._client
    with pytest.raises(NotSent, match="request budget"):
        client.create(cw.JSONL_TYPE, "https://files.example/a.jsonl", cw.ACCOUNT, False)
    with pytest.raises(NotSent, match="request budget"):
        client.status("cp1")
    assert sent == []
    provider.close()


def test_rate_limiter_is_a_request_budget() -> None:
    limiter: RequestBudget = RateLimiter(60, clock=lambda: 100.0, sleep=lambda s: None)
    limiter.hold_for(30)
    with pytest.raises(Throttled) as caught:
        limiter.wait()
    assert caught.value.retry_after == pytest.approx(30.0)
    limiter.close()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_the_daemon_shares_the_limit_only_on_postgresql(
        tmp_path: Path, postgres_url: str, store: str) -> None:
    """service/budgets.py: a Centrapay provider gets the fleet's budget when the store
    is PostgreSQL, and keeps its own limiter on SQLite; a provider with no limit (the
    local signer) is left alone."""
    layout = Layout(tmp_path, provider=_provider_keys(tmp_path))
    if store == "postgresql":
        layout.extra = f'\n[store]\nurl = "{postgres_url}"\n'
    layout.write()
    settings = config.load(layout.config)
    provider = _centrapay(tmp_path, lambda request: None)
    assert share_request_limit(provider, settings, "node-a") == (store == "postgresql")
    budget = provider.budget
    assert isinstance(budget, SharedBudget if store == "postgresql" else RateLimiter)
    if isinstance(budget, SharedBudget):
        assert (budget.key, budget.per_minute, budget.node) == ("centrapay:loads", 6000, "node-a")
    unlimited: Any = object()
    assert not share_request_limit(unlimited, settings, "node-a")
    provider.close()
