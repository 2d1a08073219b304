"""The request limiter the HTTP providers share: starts spaced apart across threads, the
limit never exceeded over any window, a turn far off is Throttled (not slept in a batch
thread) and kept for its holder, first come first served, and hold_until holds every call."""

from __future__ import annotations

import threading
import time

import pytest

from folderseal.core.errors import NotSent, Throttled
from folderseal.providers.http import RateLimiter


class Clock:
    """A clock the limiter's sleeps move on (``passes``), or leave frozen (threads that
    sleep while others ask)."""

    def __init__(self, now: float = 100.0, passes: bool = True) -> None:
        self.now = now
        self.passes = passes
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds if self.passes else 0.0


def test_starts_are_spaced_apart() -> None:
    clock = Clock()
    limiter = RateLimiter(120, clock=clock, sleep=clock.sleep)     # 0.5 s apart
    assert [limiter.wait() for _ in range(3)] == [0.0, 0.5, 0.5]
    clock.now += 10
    assert limiter.wait() == 0.0 and clock.slept == [0.5, 0.5]


def test_the_limit_is_never_exceeded_over_any_window() -> None:
    """Many callers, some throttled and coming back at their promised turn: no 60 s
    window holds more starts than max_requests_per_minute."""
    clock = Clock(0.0)
    limiter = RateLimiter(200, clock=clock, sleep=clock.sleep)
    starts: list[float] = []
    due = [0.0] * 40      # 40 batches, all due at once, each polled again 5 s after
    while clock.now < 600:
        index = min(range(len(due)), key=due.__getitem__)
        clock.now = max(clock.now, due[index])
        try:
            limiter.wait(f"batch {index}")
        except Throttled as exc:
            assert exc.retry_after is not None and exc.retry_after > RateLimiter.MAX_SLEEP
            due[index] = clock.now + exc.retry_after
            continue
        starts.append(clock.now)
        due[index] = clock.now + 5.0
    assert len(starts) > 1000
    for number, start in enumerate(starts):
        later = [s for s in starts[number:] if s < start + 60.0 - 1e-6]   # float sums
        assert len(later) <= 200
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 60.0 / 200 - 1e-9


def test_a_turn_far_off_is_throttled_and_kept_for_its_holder() -> None:
    clock = Clock(passes=False)
    limiter = RateLimiter(60, what="Centrapay (loads)", clock=clock, sleep=clock.sleep)
    limiter.wait()                      # now
    limiter.wait()                      # 1 s on: slept
    turns = []
    for holder in ("a", "b", "c"):
        with pytest.raises(Throttled) as caught:
            limiter.wait(holder)
        assert isinstance(caught.value, NotSent)   # nothing was sent
        assert "Centrapay (loads)" in str(caught.value)
        assert "max_requests_per_minute = 60" in str(caught.value)
        assert caught.value.retry_after is not None
        turns.append(clock.now + caught.value.retry_after)
    # each throttled caller has a turn of its own, one spacing apart
    assert [round(b - a, 6) for a, b in zip(turns, turns[1:], strict=False)] == [1.0, 1.0]
    assert clock.slept == [1.0]         # no sleep of more than a second
    # a newcomer queues behind them; "b", back at its turn (a little late), goes at
    # once: nobody overtook it
    with pytest.raises(Throttled) as caught:
        limiter.wait("d")
    assert clock.now + (caught.value.retry_after or 0) == pytest.approx(turns[-1] + 1.0)
    clock.now = turns[1] + 0.3
    assert limiter.wait("b") == 0.0


def test_hold_until_holds_every_call() -> None:
    clock = Clock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep)
    limiter.hold_until(clock.now + 30)
    for _ in range(2):
        with pytest.raises(Throttled) as caught:
            limiter.wait()
        assert caught.value.retry_after is not None and caught.value.retry_after >= 30
    clock.now += 29.5
    # the last half second is slept, after the two starts the throttled calls reserved
    assert limiter.wait() == pytest.approx(0.5 + 2 * 0.01)
    limiter.hold_until(clock.now - 100)              # a time past holds nothing
    assert limiter.wait() == pytest.approx(0.01)


def test_threads_each_get_their_own_start() -> None:
    """Threads asking at once each reserve their own start (under the lock); in real
    time the eighth starts no sooner than 7 spacings after they began."""
    real = RateLimiter(1200)                                   # 50 ms apart
    starts: list[float] = []
    lock = threading.Lock()

    def call() -> None:
        real.wait()
        with lock:
            starts.append(time.monotonic())

    threads = [threading.Thread(target=call) for _ in range(8)]
    before = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(starts) == 8
    assert max(starts) - before >= 0.35 - 0.001
    ordered = sorted(starts)
    assert all(b - a >= 0.05 - 0.01 for a, b in zip(ordered, ordered[1:], strict=False))


def test_a_hold_moves_tickets_past_it_in_their_order() -> None:
    """A 429's hold keeps the throttled callers ahead of newcomers, in their order."""
    clock = Clock(passes=False)
    limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)
    limiter.wait()
    limiter.wait()
    turns = {}
    for holder in ("a", "b"):
        with pytest.raises(Throttled) as caught:
            limiter.wait(holder)
        turns[holder] = clock.now + (caught.value.retry_after or 0)
    limiter.hold_until(clock.now + 30)
    clock.now += 30
    assert limiter.wait("a") == 0.0                  # first after the hold
    with pytest.raises(Throttled) as caught:         # a newcomer queues behind "b"
        limiter.wait("c")
    assert caught.value.retry_after == pytest.approx(2.0)
    clock.now += 1
    assert limiter.wait("b") == 0.0
