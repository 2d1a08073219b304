"""The emulator's fetch of each created batch's file from its URL (a real HTTP GET,
streamed into the report), on worker threads."""

from __future__ import annotations

import queue
import threading
import time

import httpx

from folderseal.core.redact import without_secrets
from folderseal.providers.centrapay.emulator.batches import Batch, Registry
from folderseal.providers.centrapay.emulator.report import (
    BATCH_TYPES,
    CSV,
    Intake,
    Outcome,
    Unreadable,
    report_csv,
    report_jsonl,
    text_lines,
)
from folderseal.providers.emulation.journal import log_event

CHUNK = 64 * 1024


class Fetcher:
    """Worker threads that fetch each created batch's file and report on it."""

    def __init__(self, registry: Registry, workers: int, timeout: float) -> None:
        self.registry = registry
        self.timeout = timeout
        self._queue: queue.Queue[Batch | None] = queue.Queue()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"centrapay-fetch-{i}",
                                          daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, batch: Batch) -> None:
        self._queue.put(batch)

    def stop(self) -> None:
        """Stop the workers: batches not fetched yet never will be, and a fetch under way
        (left to its timeout: daemon threads) is not journaled."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + 5
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
            while (batch := self._queue.get()) is not None and not self._stopping.is_set():
                try:
                    outcome = self.fetch(client, batch)
                except Exception as exc:  # a bug here must not stop the worker
                    log_event("emulator.internal_error", batch=batch.id, error=repr(exc))
                    outcome = Outcome(None, "the emulator failed to read the batch file")
                if self._stopping.is_set():
                    return  # the emulator stopped meanwhile: its journal is closed
                self.registry.fetched(batch, outcome)

    def fetch(self, client: httpx.Client, batch: Batch) -> Outcome:
        """GET the batch's url and make its report, streamed."""
        if batch.bad_url:
            return Outcome(None, "could not fetch the batch file from its url (the emulator's "
                                 "bad-url fault); nothing was loaded")
        intake = Intake()
        try:
            with client.stream("GET", batch.url) as response:
                if response.status_code != 200:
                    return Outcome(None, f"could not fetch the batch file: its url answered "
                                         f"HTTP {response.status_code}; nothing was loaded")
                chunks = intake.feed(response.iter_bytes(CHUNK))
                lines = text_lines(chunks)
                report = report_csv(lines) if BATCH_TYPES[batch.type] == CSV else \
                    report_jsonl(lines)
                for _ in chunks:  # what a parser left unread still counts in the hash
                    pass
        except Unreadable as exc:
            return Outcome(None, str(exc), intake.digest.hexdigest(), intake.size)
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            return Outcome(None, without_secrets(f"could not fetch the batch file: "
                                                 f"{type(exc).__name__}: {exc}; nothing was "
                                                 "loaded"))
        return Outcome(report, "", intake.digest.hexdigest(), intake.size)
