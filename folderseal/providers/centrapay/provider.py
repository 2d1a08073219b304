"""The ``centrapay`` provider: each dropped file is a batch file Centrapay loads into an
account, fetching it from a URL.

``prepare`` checks the file (UTF-8, and JSON objects per line or CSV rows as wide as
the header): a bad file is rejected with its report and nothing is published or sent.
``create`` publishes it (nothing remote exists yet, so it may be repeated, under the
key the batch recorded): its key is recorded first, then the copy or upload. The
published object standing whole is the "upload". ``accept`` is the point of no return:
it makes the URL right then (a pre-signed URL starts its expiry now) and creates the
Centrapay batch, whose id is recorded the moment it is answered; creating is starting,
and a create whose answer is lost cannot be looked up (the state machine fails the file as
``outcome_unknown``). Then the batch is polled (``created → copied → chunked →
complete | error``); its report goes into the sidecar, and the original file comes out
unchanged. ``delete`` removes what was published. A batch holds exactly one file, so
the report's line indexes are that file's. What ``folderseal check`` proves is in
:mod:`.check`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

from folderseal.core import crashpoints, metrics
from folderseal.core.errors import ConfigError, NotSent, TransientError
from folderseal.core.logs import get as get_logger
from folderseal.core.model import DocumentResult, Output
from folderseal.core.redact import without_secrets
from folderseal.providers import BatchView, Document, Health, Ledger, Remote, RemoteStatus, Steps
from folderseal.providers.centrapay import check as checks
from folderseal.providers.centrapay import parse, publish, validate
from folderseal.providers.centrapay.client import CentrapayClient
from folderseal.providers.centrapay.config import RATE_LIMIT, CentrapayProviderConfig
from folderseal.providers.http import RateLimiter, RequestBudget, RequestLimit

V = TypeVar("V")
MEMO = 1000         # batches (or status names) a memo remembers at most
INVALID = "invalid_batch_file"
LOAD_FAILED = "load_failed"
ONE_FILE = "one_file_per_batch"


class CentrapayProvider:
    """The Centrapay provider. Its methods are the provider protocol's steps and checks plus the
    publish and report helpers of one Centrapay batch; they share one client, one publisher
    and one request budget."""

    kind = "centrapay"
    steps = Steps(remote=True, irrevocable=True, outcome="loaded", accept_creates=True,
                  publishes=True, reports_records=True,
                  # Surely never loaded: `retry` puts these back into the inbox.
                  not_sent=frozenset({LOAD_FAILED, INVALID, ONE_FILE}))

    def __init__(self, name: str, cfg: CentrapayProviderConfig, state_dir: Path,
                 transport: httpx.BaseTransport | None = None,
                 publisher: publish.Publisher | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.state_dir = state_dir
        self.transport = transport
        self.max_batch_files: int | None = 1
        self.poll_interval = cfg.poll_interval_seconds
        self.max_wait = cfg.max_wait_seconds
        self.retry_max_seconds = cfg.retry_max_seconds
        self.status_grace = cfg.status_grace_seconds
        # Every call of this account waits at one budget, across its batches and threads:
        # this process's limiter, or the fleet's shared one (use_budget).
        self.request_limit = RequestLimit(f"centrapay:{name}", cfg.max_requests_per_minute,
                                          f"Centrapay ({name})")
        self.limiter = RateLimiter(cfg.max_requests_per_minute, self.request_limit.what)
        self.budget: RequestBudget = self.limiter
        self.publisher = publisher or publish.make(cfg)
        self.client: CentrapayClient | None = None
        self.log = get_logger(provider=name)
        # Memos, capped (memory must not grow with the batches): statuses already
        # warned about; batches whose failed records were counted, or whose final
        # answer without a report was warned about; the final answer a poll read, so
        # that download need not ask again (every call counts against the rate).
        self._unknown: Capped[bool] = Capped()
        self._warned: Capped[bool] = Capped()
        self._no_report: Capped[bool] = Capped()
        self._finals: Capped[parse.Batch] = Capped()

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.client is None:
            self.client = CentrapayClient(self.cfg, self.name, self.budget, self.transport)
            self.log.info("centrapay.ready", publish=self.cfg.publish,
                          to=self.publisher.where, batch_type=self.cfg.batch_type,
                          max_requests_per_minute=self.cfg.max_requests_per_minute,
                          request_budget="this node's" if self.budget is self.limiter
                          else "shared by the fleet", note=checks.ONE_FILE_NOTE)
            if self.cfg.max_requests_per_minute > RATE_LIMIT:
                self.log.warning("centrapay.rate_above_limit",
                                 max_requests_per_minute=self.cfg.max_requests_per_minute,
                                 reason=checks.rate_warning(self.cfg.max_requests_per_minute))

    def use_budget(self, budget: RequestBudget) -> None:
        """Wait at ``budget`` from now on (the fleet's, shared through the store); this
        provider closes it when it closes."""
        self.budget = budget
        if self.client is not None:
            self.client.budget = budget

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        self.publisher.close()
        self.budget.close()

    @property
    def _client(self) -> CentrapayClient:
        self.start()
        assert self.client is not None
        return self.client

    def check(self, network: bool = True) -> Health:
        """What ``folderseal check`` proves: :mod:`.check`."""
        return checks.health(self, network)

    # -- lifecycle steps -------------------------------------------------------------------

    def prepare(self, batch: BatchView, ledger: Ledger) -> None:
        """Check the batch file, streamed; a bad one is rejected with its report and
        nothing is published or sent."""
        for extra in batch.documents[1:]:   # intake makes batches of one: never expected
            ledger.reject(extra, ONE_FILE, f"{extra.entry} was batched with another file, "
                          "but a Centrapay batch holds one file; it was not sent: "
                          "`folderseal retry` puts it back into the inbox")
        if not batch.documents:
            return None
        document = batch.documents[0]
        if warning := validate.suffix_warning(document.entry, self.cfg.batch_type):
            self.log.warning("centrapay.format", batch=batch.id, entry=document.entry,
                             warning=warning)
        fmt = validate.format_of(document.entry, self.cfg.batch_type)
        fd = self._open(batch, document)
        try:
            report = validate.validate(fd, fmt)
        except OSError as exc:
            raise TransientError(f"reading {document.entry} to check it failed "
                                 f"({exc.strerror}); checking again later") from None
        finally:
            os.close(fd)
        if report.no_external_id:
            self.log.warning("centrapay.no_external_id", batch=batch.id, entry=document.entry,
                             records=report.no_external_id,
                             lines=report.no_external_id_lines,
                             reason="records without a string externalId; Centrapay "
                             "reports each of them in the batch's report",
                             next_step="give every record its externalId")
        if report.ok:
            self.log.info("centrapay.valid", batch=batch.id, entry=document.entry,
                          format=fmt or "unknown", records=report.count)
            return None
        kind = validate.FORMAT_NAMES.get(fmt, "UTF-8 text")
        message = (f"{document.entry} is not a valid {kind} batch file for batch type "
                   f"{self.cfg.batch_type!r}: {report.error_count} bad line"
                   f"{'' if report.error_count == 1 else 's'} of {report.count} record"
                   f"{'' if report.count == 1 else 's'} ({report.summary()}); nothing was "
                   "published or sent: fix the file and drop it into the inbox again")
        self.log.warning("centrapay.invalid", batch=batch.id, entry=document.entry,
                         bad_lines=report.error_count, records=report.count)
        ledger.reject(document, INVALID, message, report.block())
        return None

    def create(self, batch: BatchView, ledger: Ledger) -> str:
        """Publish the batch file: its key recorded first, then the copy or upload.
        Published again (a restart, a retry), it reuses the key the batch recorded, its
        copy replaced whole; a recorded copy under another key (the configuration
        changed) is removed before the new key is recorded, so no copy is ever left
        readable with no batch naming it. Nothing remote yet: ""."""
        document = self._document(batch)
        recorded = batch.published
        key = self.publisher.key_for(batch.id, document.entry, recorded)
        if recorded and recorded != key:
            self.publisher.remove(recorded)
            self.log.info("centrapay.unpublished", batch=batch.id, key=self.shown(recorded),
                          why="published again under another key")
        if key != recorded:
            ledger.publishing(key)
        fd = self._open(batch, document)
        try:
            self.publisher.publish(key, fd, document.size,
                                   lambda: crashpoints.reached("centrapay:publishing"))
        finally:
            os.close(fd)
        crashpoints.reached("centrapay:published")
        self.log.info("centrapay.published", batch=batch.id, entry=document.entry,
                      key=self.shown(key),
                      to=self.publisher.where, bytes=document.size,
                      again=key == recorded)
        return ""

    def upload(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        """Nothing to send: create published the file, and Centrapay fetches it."""

    def holds_upload(self, batch: BatchView, status: RemoteStatus) -> bool:
        """The file is published whole."""
        return status.state == Remote.UPLOADED

    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus:
        """Before the create (no remote id): UPLOADED when the file is published whole,
        else NEW. After: Centrapay's status; 403 (a batch it does not know) is GONE."""
        if not remote_id:
            document = batch.documents[0] if batch.documents else None
            if document is None or not batch.published or \
                    not self.publisher.present(batch.published, document.size):
                return RemoteStatus(Remote.NEW, detail="not published")
            return RemoteStatus(Remote.UPLOADED, documents=(document.entry,),
                                detail="published")
        found = self._client.status(remote_id)
        if found is None:
            return RemoteStatus(Remote.GONE, detail="Centrapay answered 403", batch=remote_id)
        if found.final and not found.reported:
            # A final status without its counts proves nothing yet: asked again (until
            # max_wait_seconds), as a status that is still moving.
            if remote_id not in self._no_report:
                self._no_report[remote_id] = True
                self.log.warning("centrapay.no_report", batch=batch.id, remote=remote_id,
                                 status=found.status, treated_as="running",
                                 next_step="asked again at the next poll until "
                                 "max_wait_seconds; check the batch in Centrapay if it "
                                 "stays so")
            return RemoteStatus(Remote.RUNNING, detail=f"{found.status} without its "
                                "report; asking again", batch=remote_id)
        state = parse.remote_state(found.status)
        if state is None:
            if found.status not in self._unknown:  # once: a batch is polled for long
                self._unknown[found.status] = True
                self.log.warning("centrapay.unknown_status", batch=batch.id,
                                 remote=remote_id, status=found.status or "(none)",
                                 treated_as="running")
            state = Remote.RUNNING
        if found.final:
            self._finals[remote_id] = found
        return RemoteStatus(state, detail=found.status, batch=remote_id)

    def accept(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        """Create the Centrapay batch (creating is starting), with a URL made now; its id
        is recorded the moment it is answered."""
        document = self._document(batch)
        if not batch.published:
            raise NotSent(f"{document.entry} has no published copy to send; it is "
                          "published again")
        try:
            url = self.publisher.url(batch.published)
            client = self._client
            # Noted in the batch's manifest before it is sent: after a lost store,
            # `recover` knows a create may have gone out (and never sends it again unasked).
            ledger.sending(document, "")
        except NotSent:
            raise
        except (TransientError, ConfigError, OSError) as exc:
            # Nothing has left: the state machine goes back before the point of no return.
            raise NotSent(without_secrets(
                f"the create of the Centrapay batch for {document.entry} could not be "
                f"prepared ({exc}); nothing was sent, and it is tried again later")) from None
        crashpoints.reached("centrapay:creating")
        # NotSent from here on when the request never left (the limiter's turn, a
        # request that could not be built, no connection); anything else may have been
        # done.
        found = client.create(self.cfg.batch_type, url, self.cfg.account_id, self.cfg.test,
                              hide=(batch.published, self.shown(batch.published)))
        ledger.created(found.id)
        self.log.info("centrapay.created", batch=batch.id, remote=found.id,
                      entry=document.entry, key=self.shown(batch.published), status=found.status,
                      test=self.cfg.test)
        crashpoints.reached("centrapay:created")

    def download(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        """The one file's outcome from the final status: complete → delivered unchanged
        with the report (failed records are a warning); error → ``load_failed``."""
        document = self._document(batch)
        found = self._finals.pop(remote_id, None) or self._client.status(remote_id)
        if found is None or not found.final:
            said = "no longer knows it (403)" if found is None else f"shows {found.status}"
            return [DocumentResult(document.entry, provider_document=remote_id, pending=True,
                                   error_code="no_report", error_message=(
                                       f"Centrapay {said} for batch {remote_id}, so its "
                                       "report could not be read; the records may have "
                                       f"been loaded: check batch {remote_id} in Centrapay "
                                       "before retrying"))]
        try:
            report = parse.checked_report(found, self.cfg.test)
        except parse.PayloadError as exc:
            return [DocumentResult(document.entry, provider_document=remote_id, pending=True,
                                   error_code="no_report", error_message=(
                                       f"Centrapay's report for batch {remote_id} cannot be "
                                       f"read ({exc}); the records may have been loaded: "
                                       f"check batch {remote_id} in Centrapay"))]
        block = {"report": report}
        if found.status == "error":
            self.log.warning("centrapay.load_failed", batch=batch.id, remote=remote_id,
                             entry=document.entry, key=self.shown(batch.published))
            return [DocumentResult(document.entry, provider_document=remote_id,
                                   provider_block=block, error_code=LOAD_FAILED,
                                   error_message=(
                                       f"Centrapay could not read the batch file "
                                       f"{document.entry} (batch {remote_id} ended in "
                                       "error); nothing was loaded: `folderseal retry <id>` "
                                       "publishes and sends it again"))]
        failed = report["errorCount"] or 0
        if failed:
            self.log.warning("centrapay.records_failed", batch=batch.id, remote=remote_id,
                             entry=document.entry, records=report["count"],
                             failed=failed, listed=len(report["errors"]))
            if remote_id not in self._warned:   # a repeated download counts them once
                self._warned[remote_id] = True
                metrics.RECORDS_FAILED.labels(batch.folder, self.name).inc(failed)
        original = Output(role="original", staged="", suffix="", sha256=document.sha256,
                          bytes=document.size)
        return [DocumentResult(document.entry, outputs=(original,), provider_document=remote_id,
                               provider_block=block)]

    def salvage(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        """A batch Centrapay no longer shows proves nothing."""
        return []

    def delete(self, batch: BatchView, remote_id: str) -> None:
        """Remove the published copy (Centrapay keeps its batches: nothing to delete
        there). Nothing when it is gone already."""
        if batch.published:
            self.publisher.remove(batch.published)
            self.log.info("centrapay.unpublished", batch=batch.id,
                          key=self.shown(batch.published))
        for memo in (self._warned, self._no_report, self._finals):
            memo.pop(remote_id, None)

    def tidy(self, keep: Callable[[], set[str]]) -> int:
        return self.publisher.tidy(keep)

    def shown(self, key: str) -> str:
        """A publish key as logs show it: a served folder's name is a read key (a
        fingerprint of it), an S3 object key is not."""
        return self.publisher.shown(key)

    # -- helpers ---------------------------------------------------------------------------

    def _document(self, batch: BatchView) -> Document:
        if not batch.documents:
            raise TransientError(f"batch {batch.id} holds no file to load")
        return batch.documents[0]

    @staticmethod
    def _open(batch: BatchView, document: Document) -> int:
        assert batch.open_document is not None
        return batch.open_document(document)


class Capped(OrderedDict[str, V]):
    """A memo of at most ``size`` entries: the oldest is forgotten first."""

    def __init__(self, size: int = MEMO) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: str, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
