"""A batch's provider, the batch's lease confirmed before each call that may act.

Another thread or node may take a batch over once its lease has lapsed (this process
paused, cut off from the store, or a step that overran). So before each call that may
act at the provider, the step's store connection confirms the lease: by this process's
own deadline on boottime when more than half of it is left, else by renewing it in the
store; a lease taken over raises :class:`~folderseal.core.errors.LeaseLost` and the call
is never made. The check runs again right before the call (after the ``fenced:<call>``
point), so a process frozen between the two finds its lease gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from folderseal.core import crashpoints
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
            # A pause here (SIGSTOP, a frozen VM) may outlast the lease while another
            # node takes the batch over and makes this very call: checked once more just
            # before it, by the local deadline on boottime (no store trip while fresh).
            self._confirm()
            return found(*args, **kwargs)

        return fenced


def fenced(provider: Provider, confirm: Callable[[], None]) -> Provider:
    return cast(Provider, FencedProvider(provider, confirm))
