"""The retry policy: how long a batch whose step failed for a while waits before the
next try.

A transient failure (the provider or the network, the disk, a step nobody foresaw)
postpones the batch with exponential backoff and jitter; its attempt count is kept in
the store across restarts. A provider that says how long to wait (Retry-After) is
believed; otherwise the wait never exceeds the provider's ``retry_max_seconds``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from folderseal.core.errors import TransientError
from folderseal.providers import Provider

BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0

Delay = Callable[[int], float]  # attempts made so far → seconds to wait


def backoff(attempts: int) -> float:
    """Seconds to wait before attempt ``attempts + 1``: doubling, capped, with jitter."""
    delay: float = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.5, 1.0)


def retry_delay(base: Delay, exc: TransientError | None, provider: Provider) -> Delay:
    """The provider's Retry-After when it gave one, else ``base`` (the daemon's
    :func:`backoff`) up to the provider's retry_max_seconds."""
    retry_after = exc.retry_after if exc is not None else None
    if retry_after is not None:
        return lambda _attempts: retry_after
    cap = provider.retry_max_seconds
    return lambda attempts: min(base(attempts), cap)
