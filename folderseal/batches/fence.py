"""A batch's provider, the batch's lease confirmed before each call that may act.

Another thread or node may take a batch over once its lease has lapsed (this process
paused, cut off from the store, or a step that overran). So before each call that may
act at the provider, the step's store connection confirms the lease: by this process's
own deadline on boottime when more than half of it is left, else by renewing it in the
store; a lease taken over raises :class:`~folderseal.core.errors.LeaseLost` and the call
is never made. It is confirmed twice, the second time right before the call, so that a
process frozen after the first check (SIGSTOP, a VM paused) past its lease finds out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from folderseal.core import crashpoints, fencing
from folderseal.providers import Provider

# What may act at the provider or on the batch's files (the rest only describe it).
ACTING = frozenset({"prepare", "create", "upload", "holds_upload", "status", "accept",
                    "download", "salvage", "delete"})


class FencedProvider:
    """``inner``, with ``confirm()`` called before each of its acting calls."""

    def __init__(self, inner: Provider, confirm: Callable[[], None]) -> None:
        self.inner = inner
        self._confirm = confirm

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if name not in ACTING:
            return found

        def fenced(*args: Any, **kwargs: Any) -> Any:
            self._confirm()
            crashpoints.reached(f"fenced:{name}")  # the lease checked, the call not made
            # Again, right before the call: the first check may have waited on the store,
            # and a pause there (or here) may outlast the lease. Unless it did, this is
            # the local deadline alone, so the window left is this call's few steps.
            self._confirm()
            with fencing.fenced_by(self._confirm):  # and once more as each request leaves
                return found(*args, **kwargs)

        return fenced


def fenced(provider: Provider, confirm: Callable[[], None]) -> Provider:
    return cast(Provider, FencedProvider(provider, confirm))
