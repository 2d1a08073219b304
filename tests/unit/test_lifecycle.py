"""The one lifecycle table: what a batch's state says about its files at the provider."""

from __future__ import annotations

import pytest

from folderseal.batches import lifecycle
from folderseal.batches.lifecycle import Reach
from folderseal.core.model import BatchState
from folderseal.providers import Remote, Steps, steps_of

SEAL = Steps(remote=True, irrevocable=True, outcome="signed")
LOCAL = Steps(remote=False, irrevocable=False, outcome="signed")


def test_every_state_but_failed_has_a_reach() -> None:
    assert set(lifecycle.REACH) == set(BatchState) - {BatchState.FAILED}


@pytest.mark.parametrize(("state", "expected"), [
    (BatchState.BATCHED, False), (BatchState.CREATED, False), (BatchState.UPLOADED, False),
    (BatchState.ACCEPTING, True), (BatchState.ACCEPTED, True), (BatchState.CLOSED, True),
    (BatchState.DOWNLOADED, True)])
def test_the_point_of_no_return_is_accepting(state: BatchState, expected: bool) -> None:
    assert lifecycle.may_have_run(state, SEAL) is expected
    assert lifecycle.may_have_run(state, LOCAL) is False  # signing again is harmless


@pytest.mark.parametrize("state", [None, "", BatchState.FAILED, "SOMETHING_NEW"])
def test_a_state_that_says_nothing_is_read_on_the_safe_side(state: str | None) -> None:
    """No recorded step, FAILED itself, or a state this version does not know: the files
    may have run, so they are never submitted again."""
    assert lifecycle.reach(state) is Reach.MAY_HAVE_RUN
    assert lifecycle.may_have_run(state, SEAL)


def test_remote_states_are_open_or_started_never_both() -> None:
    assert not lifecycle.OPEN & lifecycle.STARTED
    assert lifecycle.FINISHED <= lifecycle.STARTED
    assert Remote.GONE not in lifecycle.OPEN | lifecycle.STARTED


@pytest.mark.parametrize(("kind", "outcome", "irrevocable"), [
    ("local", "signed", False), ("seal", "signed", True), ("clevver", "stored", True)])
def test_each_kind_declares_its_steps(kind: str, outcome: str, irrevocable: bool) -> None:
    steps = steps_of(kind)
    assert (steps.outcome, steps.irrevocable, steps.remote) == \
        (outcome, irrevocable, kind != "local")
