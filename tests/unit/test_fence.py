"""The fenced provider: each acting call is made only under a lease confirmed right
before it, also when the process froze between the first check and the call."""

from __future__ import annotations

from typing import Any

import pytest

from folderseal.batches import fence
from folderseal.core.errors import LeaseLost


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def accept(self, *args: Any) -> str:
        self.calls.append("accept")
        return "accepted"

    def describe(self) -> str:  # not acting: never fenced
        return "seal"


def test_a_lease_that_lapsed_at_the_point_of_no_return_stops_the_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease confirmed, then the process froze (fenced:accept) while another node
    took the batch over: the call is never made, LeaseLost says why."""
    inner = Recorder()
    taken_over = False

    def confirm() -> None:
        if taken_over:
            raise LeaseLost("batch b1 was taken over")

    def frozen_past_the_lease(name: str) -> None:
        nonlocal taken_over
        taken_over = name == "fenced:accept"
    monkeypatch.setattr(fence.crashpoints, "reached", frozen_past_the_lease)
    provider: Any = fence.FencedProvider(inner, confirm)  # type: ignore[arg-type]
    assert provider.describe() == "seal"
    with pytest.raises(LeaseLost, match="taken over"):
        provider.accept("b1")
    assert inner.calls == []


def test_a_held_lease_lets_the_call_through_after_two_checks() -> None:
    inner = Recorder()
    checks: list[str] = []
    provider: Any = fence.FencedProvider(inner, lambda: checks.append("ok"))  # type: ignore[arg-type]
    assert provider.accept("b1") == "accepted"
    assert inner.calls == ["accept"] and checks == ["ok", "ok"]
