"""Every provider step timed into ``folderseal_provider_call_seconds``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from folderseal.core.errors import TransientError
from folderseal.core.metrics import PROVIDER_CALLS
from folderseal.providers import Attempts, BatchView, Provider, RemoteStatus


class MeasuredProvider:
    """A provider whose every step is timed into ``folderseal_provider_call_seconds``
    (``_count`` is the number of calls) with outcome ok, transient (retried) or failed
    (anything else: the provider refused, or answered what cannot be used)."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _timed(self, operation: str, call: Callable[[], Any]) -> Any:
        started = time.monotonic()
        outcome = "failed"
        try:
            result = call()
            outcome = "ok"
            return result
        except TransientError:
            outcome = "transient"
            raise
        finally:
            PROVIDER_CALLS.labels(self.inner.name, operation, outcome).observe(
                time.monotonic() - started)

    def create(self, batch: BatchView, ledger: Attempts) -> str:
        return str(self._timed("create", lambda: self.inner.create(batch, ledger)))

    def upload(self, batch: BatchView, remote_id: str, ledger: Attempts) -> None:
        self._timed("upload", lambda: self.inner.upload(batch, remote_id, ledger))

    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus:
        result: RemoteStatus = self._timed("status", lambda: self.inner.status(batch, remote_id))
        return result

    def accept(self, batch: BatchView, remote_id: str, attempts: Attempts) -> None:
        self._timed("accept", lambda: self.inner.accept(batch, remote_id, attempts))

    def download(self, batch: BatchView, remote_id: str) -> Any:
        return self._timed("download", lambda: self.inner.download(batch, remote_id))

    def delete(self, batch: BatchView, remote_id: str) -> None:
        self._timed("delete", lambda: self.inner.delete(batch, remote_id))
