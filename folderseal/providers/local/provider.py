"""The embedded ``local`` provider: seals with a certificate on disk.

PDFs get an embedded PAdES signature; other files are delivered unchanged with a
detached CAdES signature ``NAME.p7s``. There is no remote batch: ``prepare``,
``create`` and ``upload`` do nothing, ``accept`` signs every file in worker processes (so both
cores work) and writes each result into the batch's staging folder, ``status``
says "closed" once every file has a result, ``download`` reads the results back.
For this provider "signed once" means "published once": signing again before
anything was published is harmless, so an interrupted accept simply goes on.

Attempts are counted in the store before each file is handed to a worker. A file
whose earlier attempt never finished (its worker crashed or hung, or the daemon
died meanwhile) is retried *alone*, with nothing else in flight, so it cannot take
other files down with it; after ``sign_attempts`` attempts it fails with a reason
instead of crash-looping.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from folderseal.core import files
from folderseal.core.errors import ConfigError, TransientError
from folderseal.core.keyfiles import exposure, service_accounts, service_group
from folderseal.core.logs import get as get_logger
from folderseal.core.model import DocumentResult
from folderseal.providers import (
    NOT_QUALIFIED,
    Attempts,
    BatchView,
    Document,
    Health,
    Ledger,
    Remote,
    RemoteStatus,
    Steps,
    fingerprint,
)
from folderseal.providers.local.config import LocalProviderConfig
from folderseal.providers.local.pool import (
    PoolClosed,
    TaskTimeout,
    WorkerCrashed,
    WorkerPool,
    WorkerSetupFailed,
)
from folderseal.providers.local.worker import (
    CredentialsSource,
    SignTask,
    load_credentials,
    save_result,
    saved_results,
)
from folderseal.signing import describe_certificate

EXPIRY_WARNING_DAYS = 30
# Files a worker gets in one message. It signs them one after another without waiting for
# the daemon, whose threads answer late while they publish; a file that crashes or hangs
# the worker is still told apart (the worker replies to each file as it finishes). A big
# file goes in a message of its own: the small ones need not wait behind it.
FILES_PER_MESSAGE = 4
MESSAGE_BYTES = 4 << 20


class _Gate:
    """Many shared holders, or one exclusive holder (a file retried alone)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._exclusive = True
            self._cond.wait_for(lambda: self._shared == 0)
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class LocalProvider:
    """The embedded signer as a provider. Its methods are the provider protocol's steps and
    checks plus running a batch's files through the worker pool; they share the pool and the
    seal's source."""

    kind = "local"
    # No remote batch; signing again before anything is published is harmless, so its
    # accept (the signing) is no point of no return: an interrupted one simply goes on.
    steps = Steps(remote=False, irrevocable=False, outcome="signed")
    max_batch_files: int | None = None   # the folder's batch_max_files
    status_grace = 0.0       # its status is its own staging folder: never behind
    poll_interval = 0.0
    max_wait = float("inf")
    # What the workers run; tests swap in a handler that crashes or hangs on cue.
    worker_setup = "folderseal.providers.local.worker:setup"
    worker_handler = "folderseal.providers.local.worker:sign"

    def __init__(self, name: str, cfg: LocalProviderConfig, state_dir: Path) -> None:
        self.name = name
        self.cfg = cfg
        self.state_dir = state_dir
        self.workers = cfg.workers or os.cpu_count() or 1
        self.retry_max_seconds = cfg.retry_max_seconds
        self.pool: WorkerPool | None = None
        self.gate = _Gate()
        self._broken: str | None = None  # why the pool's workers could not start
        self._told: set[tuple[str, str, Path]] = set()  # results found unusable, logged once
        self.log = get_logger(provider=name)

    # -- life cycle ----------------------------------------------------------------

    def _source(self) -> CredentialsSource:
        return CredentialsSource(certificate=self.cfg.certificate, key=self.cfg.key,
                          password=self.cfg.read_password(),
                          timestamp_url=self.cfg.timestamp_url)

    def check(self, network: bool = True) -> Health:
        """Load the seal once; warn of an expiry within 30 days, a self-signed certificate
        and key files other accounts may read."""
        credentials = load_credentials(self._source())
        left = credentials.not_after - datetime.now(UTC)
        if left.total_seconds() <= 0:
            raise ConfigError(f"the seal certificate {self.cfg.certificate} expired on "
                              f"{credentials.not_after:%Y-%m-%d}; install a new one")
        warnings = exposure(self.cfg.secret_files(), service_accounts(self.state_dir),
                            service_group(self.state_dir))
        if left.days < EXPIRY_WARNING_DAYS:
            warnings.append(f"the seal certificate expires on {credentials.not_after:%Y-%m-%d} "
                            f"({left.days} days); renew it")
        if describe_certificate(credentials.certificate.dump()).self_signed:
            warnings.append(
                f"{NOT_QUALIFIED}. {self.cfg.certificate} ({credentials.subject}) signed "
                "itself: its seals prove a file unchanged, not who sealed it. Set certificate "
                "(and its password) to your organisation's seal certificate from a qualified "
                "trust service provider")
        return Health(verified=f"the seal loads ({credentials.subject}, valid until "
                               f"{credentials.not_after:%Y-%m-%d})", warnings=tuple(warnings))

    def start(self) -> None:
        if self.pool is not None:
            return
        pool = WorkerPool(setup=self.worker_setup, handler=self.worker_handler,
                          setup_arg=self._source(), workers=self.workers,
                          task_timeout=self.cfg.sign_timeout_seconds,
                          max_tasks_per_worker=self.cfg.worker_max_tasks,
                          name=f"signer-{self.name}")
        try:
            pool.start()
        except WorkerSetupFailed as exc:
            pool.close(wait=False)
            raise ConfigError(f"provider {self.name}: the signing workers cannot load the "
                              f"seal: {exc}") from None
        self.pool = pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close(wait=True)
            self.pool = None

    # -- lifecycle steps -----------------------------------------------------------

    def prepare(self, batch: BatchView, ledger: Ledger) -> tuple[str, int] | None:
        return None  # the workers read the batch folder's files themselves

    def create(self, batch: BatchView, ledger: Ledger) -> str:
        return batch.id

    def upload(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        return None

    def holds_upload(self, batch: BatchView, status: RemoteStatus) -> bool:
        return True  # the files never leave the batch folder

    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus:
        # Only a readable result counts: a signed PDF is staged under its entry name
        # before its result is saved, and a crash may come between the two.
        done = self._results(batch)
        names = tuple(d.entry for d in batch.documents)
        if all(entry in done for entry in names):
            return RemoteStatus(Remote.CLOSED, names)
        return RemoteStatus(Remote.UPLOADED, names)

    def _ensure_pool(self) -> None:
        """A pool whose workers could not load the seal (it was replaced, with another
        password?) is started afresh; until that works, batches wait."""
        if self._broken is None:
            return
        if self.pool is not None:
            self.pool.close(wait=False)
            self.pool = None
        try:
            self.start()
        except ConfigError as exc:
            raise TransientError(str(exc)) from None
        self._broken = None

    def accept(self, batch: BatchView, remote_id: str, attempts: Attempts) -> None:
        self._ensure_pool()
        files.makedirs(batch.staging)
        done = self._results(batch)
        pending = [d for d in batch.documents if d.entry not in done]
        made = {d.file_id: d.attempts for d in pending}   # attempts counted so far
        why: dict[str, str] = {}                           # what went wrong last time
        alone = [d for d in pending if d.attempts > 0]
        with self.gate.shared():
            alone += self._sign(batch, [d for d in pending if d.attempts == 0], attempts,
                                made, why)
        for document in alone:
            # Until it succeeds, fails cleanly, or runs out of attempts.
            while not attempts.stopping():
                if document.entry in self._results(batch):
                    # A worker stopped after it saved the result: signing again would
                    # write over the very output that result names.
                    break
                if made[document.file_id] >= self.cfg.sign_attempts:
                    self._write_result(batch, self._gave_up(
                        document, made[document.file_id], why.get(document.file_id, "")))
                    break
                with self.gate.exclusive():
                    if not self._sign(batch, [document], attempts, made, why):
                        break

    def _sign(self, batch: BatchView, documents: list[Document], attempts: Attempts,
              made: dict[str, int], why: dict[str, str]) -> list[Document]:
        """Sign with up to two messages of files per worker in flight; return those that
        crashed or hung."""
        assert self.pool is not None, "start() the provider first"
        crashed: list[Document] = []
        transient: list[tuple[Document, TransientError]] = []
        queue = list(documents)
        # Each message's files, by its last future: the worker answers them in order, so
        # this thread wakes once per message.
        running: dict[Future[None], list[tuple[Future[None], Document]]] = {}
        window = 2 * self.workers * FILES_PER_MESSAGE
        try:
            while queue or running:
                in_flight = sum(len(sent) for sent in running.values())
                if in_flight <= window // 2 and queue and not transient \
                        and not attempts.stopping():
                    # Refill in groups: one store commit counts the attempts of several files.
                    group = queue[: window - in_flight]
                    del queue[: len(group)]
                    for document, count in zip(group, attempts.begin(group), strict=True):
                        made[document.file_id] = count
                    for message in self._messages(group):
                        futures = self.pool.submit_many([self._task(batch, d) for d in message])
                        running[futures[-1]] = list(zip(futures, message, strict=True))
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future, document in [pair for last in finished for pair in running.pop(last)]:
                    try:
                        future.result()
                    except (TaskTimeout, WorkerCrashed) as exc:
                        self.log.warning("file.sign_attempt_failed", batch=batch.id,
                                         entry=document.entry, reason=str(exc),
                                         attempt=made[document.file_id])
                        why[document.file_id] = str(exc)
                        crashed.append(document)
                        continue
                    except PoolClosed:
                        transient.append((document, TransientError("the signing workers are "
                                                                   "shutting down")))
                        continue
                    except WorkerSetupFailed as exc:  # the seal cannot be loaded any more
                        self._broken = str(exc)
                        transient.append((document, TransientError(
                            f"the signing workers cannot load the seal: {exc}; fix the "
                            "certificate or its password")))
                        continue
                    except TransientError as exc:  # a time-stamp server that does not answer
                        transient.append((document, exc))
                        continue
                    except OSError as exc:
                        if exc.errno not in files.TRANSIENT_ERRNOS:
                            self._unexpected(batch, document, exc)
                            continue
                        # The state folder is full or failing, or the work folder is away.
                        transient.append((document, TransientError(
                            f"signing could not read or save its files: {exc.strerror} "
                            f"({exc.filename or batch.staging}); folderseal retries")))
                        continue
                    except Exception as exc:  # noqa: BLE001 - one file's surprise fails that file
                        self._unexpected(batch, document, exc)
                        continue
                    # The worker saved the result with the outputs (durably) before replying.
        except BaseException:
            # Leaving early (the store failed, a result could not be saved): the files
            # sent already finish first, and the gate is let go only then.
            wait(list(running))
            raise
        if transient:
            # Not the files' fault: their attempts do not count, and the batch waits.
            attempts.forgive([document for document, _ in transient])
            raise transient[0][1]
        return crashed

    def _messages(self, group: list[Document]) -> list[list[Document]]:
        """``group`` in messages to the workers: a few files each (spread over the workers
        when they are few), a big file alone."""
        most = min(FILES_PER_MESSAGE, self.cfg.worker_max_tasks,
                   -(-len(group) // self.workers))
        messages: list[list[Document]] = []
        weight = 0
        for document in group:
            if not messages or len(messages[-1]) >= most or \
                    weight + document.size > MESSAGE_BYTES:
                messages.append([])
                weight = 0
            messages[-1].append(document)
            weight += document.size
        return messages

    def _unexpected(self, batch: BatchView, document: Document, exc: Exception) -> None:
        """One file's surprise fails that file, with the reason (called while handling it,
        so the log carries the traceback)."""
        self.log.exception("file.sign_error", batch=batch.id, entry=document.entry)
        self._write_result(batch, DocumentResult(
            entry=document.entry, error_code="sign_error",
            error_message=f"signing failed unexpectedly: {type(exc).__name__}: {exc}"))

    def _gave_up(self, document: Document, made: int, why: str) -> DocumentResult:
        last = f" (last time: {why})" if why else ""
        return DocumentResult(
            entry=document.entry, error_code="sign_crashed",
            error_message=f"signing was attempted {made} times and never finished{last}; the "
                          "signing worker crashed or hung, or the daemon stopped during it. The "
                          "file may be damaged, or too big for sign_timeout_seconds")

    @staticmethod
    def _task(batch: BatchView, document: Document) -> SignTask:
        return SignTask(files_dir=str(batch.files_dir), entry=document.entry, dev=document.dev,
                        ino=document.ino, sha256=document.sha256, size=document.size,
                        staging=str(batch.staging), is_pdf=document.is_pdf,
                        mode=batch.file_mode)

    def download(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        done = self._results(batch)
        return [done[d.entry] for d in batch.documents if d.entry in done]

    def salvage(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        return []  # its status is its own staging folder: never lost

    def tidy(self, keep: Callable[[], set[str]]) -> int:
        return 0  # it publishes nothing

    def shown(self, key: str) -> str:
        return fingerprint(key)  # it publishes nothing: never called with a key

    def delete(self, batch: BatchView, remote_id: str) -> None:
        return None  # the staging folder is removed by the state machine after cleanup

    # -- results in the staging folder ---------------------------------------------

    @staticmethod
    def _write_result(batch: BatchView, result: DocumentResult) -> None:
        save_result(batch.staging, result)

    def _results(self, batch: BatchView) -> dict[str, DocumentResult]:
        """Each document's saved result: this holder's own, else the newest an earlier
        holder of the batch saved (fleet mode: a node that took the batch over never signs
        again what was signed before), used only once its staged bytes match the sha256
        its result records. One whose bytes are gone or changed is not used: the file is
        signed again, which is harmless here because nothing of it was recorded in the
        store or published (download records a result only after this check)."""
        found = saved_results(batch.staging)
        unusable: dict[str, Path] = {}  # entry → the newest folder whose result it was
        for folder in batch.staged_before:  # newest epoch first
            passed_over: set[str] = set()
            for entry, result in saved_results(folder, passed_over).items():
                if entry in found:
                    continue
                checked = _checked(result, folder)
                if checked is None:
                    passed_over.add(entry)
                    continue
                found[entry] = checked
            for entry in passed_over:
                unusable.setdefault(entry, folder)
        for entry, folder in sorted(unusable.items()):
            if entry not in found and (batch.id, entry, folder) not in self._told:
                self._told.add((batch.id, entry, folder))
                self.log.warning(
                    "file.staged_result_unusable", batch=batch.id, entry=entry,
                    staged=str(folder), reason="its staged output is gone or does not "
                    "match the sha256 or size its result records",
                    next_step="signed again (nothing of it was recorded or published)")
        return found


def _checked(result: DocumentResult, folder: Path) -> DocumentResult | None:
    """``result`` as an earlier holder saved it in ``folder``, its staged outputs read
    there and checked against the sha256 and size it records; None if one is gone or
    differs. (Its paths are this node's view of the share, found by name in ``folder``.)"""
    outputs = []
    for output in result.outputs:
        if output.staged:
            path = folder / Path(output.staged).name
            try:
                digest, size = files.hash_path(path)
            except OSError:
                return None
            if (digest, size) != (output.sha256, output.bytes):
                return None
            output = dataclasses.replace(output, staged=str(path))
        outputs.append(output)
    return dataclasses.replace(result, outputs=tuple(outputs))
