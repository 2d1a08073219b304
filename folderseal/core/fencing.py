"""The lease check a provider's request makes at the last moment before it leaves.

:class:`~folderseal.batches.fence.FencedProvider` confirms a batch's lease before each
acting provider call. A call may still wait after that check (a request budget's turn
is slept for up to a second) or be frozen there with its process (SIGSTOP, a paused VM)
while another node takes the batch over. So the HTTP layer confirms the lease once more
right before a request is sent, through this context variable: each batch thread has
its own, set for the length of one fenced call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_confirm: ContextVar[Callable[[], None] | None] = ContextVar("folderseal_fence", default=None)


@contextmanager
def fenced_by(confirm: Callable[[], None]) -> Iterator[None]:
    """Requests sent within are sent only while ``confirm()`` does not raise."""
    token = _confirm.set(confirm)
    try:
        yield
    finally:
        _confirm.reset(token)


def confirm_before_sending() -> None:
    """Raise (LeaseLost) if the fenced call this request belongs to lost its lease."""
    confirm = _confirm.get()
    if confirm is not None:
        confirm()
