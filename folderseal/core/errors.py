"""folderseal's exceptions and exit codes.

The tree::

    FolderSealError                 anything folderseal raises on purpose
    ├── ConfigError                 the configuration cannot be used (exit 78)
    │   └── ForeignWorkFolderError  a work folder belongs to another store (exit 78)
    ├── StoreError                  the store refused an operation
    │   ├── StateConflict           a guarded transition matched zero rows
    │   └── LeaseLost               this node no longer holds the batch's lease
    ├── FileRejected                one file cannot be processed; it goes to errors
    │   └── PlantedFile             a file in the work folder is not the one claimed
    ├── TransientError              the step may succeed later: back off and retry
    │   ├── OutboxUnavailable       the outbox is full, read-only or gone
    │   └── StateUnavailable        the state folder takes no writes (full, I/O error)
    └── ProviderError               a provider step failed for good (the batch fails)

Every exception carries an ``exit_code`` so the command line maps errors to codes
in one place, and messages say what the operator should do next.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes; 78 makes systemd's RestartPreventExitStatus stop a restart loop."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    CONFIG = 78


class FolderSealError(Exception):
    """Base of every error folderseal raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILURE


class ConfigError(FolderSealError):
    """The configuration or the folders it names cannot be used as they are."""

    exit_code = ExitCode.CONFIG


class ForeignWorkFolderError(ConfigError):
    """A work folder holds claims of another store, or batches this store does not know."""


class NodeNameTaken(ConfigError):
    """Another running folderseal uses this node's name on the same store."""


class StoreError(FolderSealError):
    """The store refused an operation."""


class StateConflict(StoreError):
    """A guarded state change matched zero rows: someone else moved the batch first."""


class LeaseLost(StoreError):
    """This node's lease on a batch expired or was taken over; it must not go on."""


class FileRejected(FolderSealError):
    """One file cannot be processed; it goes to the errors folder with this reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PlantedFile(FileRejected):
    """The file found in the work folder is not the one that was claimed."""

    def __init__(self, message: str) -> None:
        super().__init__("planted", message)


class TransientError(FolderSealError):
    """The step may succeed later; the batch waits and retries with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotSent(TransientError):
    """A call that surely never reached the provider (the connection was never made, or
    it refused with 429 before acting): the step may be repeated, even an irrevocable one."""


class Throttled(NotSent):
    """The provider's request budget is spent for now (its limiter, or a 429): nothing was
    sent, and the batch waits its turn for ``retry_after`` seconds, released (not a failure,
    no attempt counted), so that it does not hold a batch thread while it waits."""


class OutboxUnavailable(TransientError):
    """The outbox (or errors or archive folder) is full, read-only or gone."""


class StateUnavailable(TransientError):
    """The state folder cannot take writes now (full, read-only, an I/O error)."""


class ProviderError(FolderSealError):
    """A provider step failed for good; the batch fails with this reason."""

    def __init__(
        self, code: str, message: str, *, provider: str = "", operation: str = "", batch: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.provider = provider
        self.operation = operation
        self.batch = batch
