"""What every publisher offers the provider (:class:`Publisher`), and the error it raises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from folderseal.core.errors import TransientError
from folderseal.core.redact import without_secrets


class PublishError(TransientError):
    """Publishing, checking or removing failed. ``config``: the fix is in the
    configuration or the bucket's/folder's permissions (``check`` reports it so)."""

    def __init__(self, message: str, *, config: bool = False) -> None:
        super().__init__(without_secrets(message))
        self.config = config


class Publisher(Protocol):
    where: str    # what it publishes to, for messages ("bucket b at …", "publish_dir …")

    def key_for(self, batch_id: str, entry: str, recorded: str = "") -> str:
        """The key a batch's file is published under: ``recorded`` (what the batch
        recorded before) when it is one this publisher would give the file."""

    def probe_key(self) -> str:
        """A key for ``check``'s probe (tidied like a batch file's if left behind)."""

    def publish(self, key: str, fd: int, size: int, reached: Callable[[], None]) -> None:
        """Publish the file open at ``fd`` (``size`` bytes) under ``key``."""

    def url(self, key: str) -> str:
        """The URL Centrapay fetches ``key`` at (made now: a pre-signed one starts its
        expiry now). A secret: never logged."""

    def present(self, key: str, size: int) -> bool:
        """``key`` is published whole (``size`` bytes)."""

    def remove(self, key: str) -> None:
        """Remove ``key`` (nothing when it is not there)."""

    def shown(self, key: str) -> str:
        """``key`` as logs and messages may show it (never a read key)."""

    def close(self) -> None:
        """Let go of what it holds (threads, connections); usable again after."""

    def tidy(self, keep: Callable[[], set[str]]) -> int:
        """Remove what folderseal published here, and unfinished uploads, that ``keep()``
        does not name; how many. Lists first and calls ``keep()`` after: a key is recorded
        before its copy or upload starts, so anything listed that ``keep()`` does not
        name is a stray."""
