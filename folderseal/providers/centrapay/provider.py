"""The ``centrapay`` provider: each dropped file is a batch file Centrapay loads into an
account, fetching it from a URL.

``prepare`` checks the file (UTF-8, and JSON objects per line or CSV rows as wide as
the header): a bad file is rejected with its report and nothing is published or sent.
``create`` publishes it (nothing remote exists yet, so it may be repeated): its key is
recorded first, then the copy or upload. The published object standing whole is the
"upload". ``accept`` is the point of no return: it makes the URL right then (a
pre-signed URL starts its expiry now) and creates the Centrapay batch, whose id is
recorded the moment it is answered; creating is starting, and a create whose answer is
lost cannot be looked up (the manager fails the file as ``outcome_unknown``). Then the
batch is polled (``created → copied → chunked → complete | error``); its report goes
into the sidecar, and the original file comes out unchanged. ``delete`` removes what
was published. A batch holds exactly one file, so the report's line indexes are that
file's.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from pathlib import Path

import httpx

from folderseal import crashpoints, metrics
from folderseal.errors import ConfigError, NotSent, TransientError
from folderseal.keyfiles import exposure, service_accounts, service_group
from folderseal.logs import get as get_logger
from folderseal.model import DocumentResult, Output
from folderseal.providers import BatchView, Document, Health, Ledger, Remote, RemoteStatus, Steps
from folderseal.providers.centrapay import parse, publish, validate
from folderseal.providers.centrapay.client import CentrapayClient, RateLimiter, scrub
from folderseal.providers.centrapay.config import BATCH_TYPES, CentrapayProviderConfig
from folderseal.providers.http import tls_context, without_query

PROBE_TIMEOUT = 10.0
INVALID = "invalid_batch_file"
LOAD_FAILED = "load_failed"
ONE_FILE = "one_file_per_batch"
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ONE_FILE_NOTE = ("each Centrapay batch holds one file, so the folders' batch_max_files is "
                 "capped at 1 (one file = one batch = one job)")


class CentrapayProvider:
    kind = "centrapay"
    steps = Steps(remote=True, irrevocable=True, outcome="loaded", accept_creates=True,
                  publishes=True,
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
        self.limiter = RateLimiter(cfg.max_requests_per_minute)  # every call of this account
        self.publisher = publisher or publish.make(cfg)
        self.client: CentrapayClient | None = None
        self.log = get_logger(provider=name)
        self._unknown: set[str] = set()     # statuses already warned about
        self._warned: set[str] = set()      # batches whose failed records were counted
        # The final answer a poll read, so that download need not ask again (every call
        # counts against the account's rate).
        self._finals: dict[str, parse.Batch] = {}

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.client is None:
            self.client = CentrapayClient(self.cfg, self.name, self.limiter, self.transport)
            self.log.info("centrapay.ready", publish=self.cfg.publish,
                          to=self.publisher.where, batch_type=self.cfg.batch_type,
                          max_requests_per_minute=self.cfg.max_requests_per_minute,
                          note=ONE_FILE_NOTE)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    @property
    def _client(self) -> CentrapayClient:
        self.start()
        assert self.client is not None
        return self.client

    def check(self, network: bool = True) -> Health:
        """The key (a GET of a batch that does not exist answers 403 with it, 401
        without), then a probe published, fetched back from its URL and removed.

        A refused key, a redirect, a wrong address, a bucket or folder folderseal may
        not write, a URL that answers but not with the probe: ConfigError. No answer, a
        5xx or a 429: ``unreachable`` (the daemon starts anyway; its batches wait)."""
        warnings = exposure(self.cfg.secret_files(), service_accounts(self.state_dir),
                            service_group(self.state_dir))
        if not self.cfg.verify_tls:
            warnings.append("TLS verification is off (verify_tls = false): anyone on the "
                            "path could pose as Centrapay")
        if self.cfg.publish == "folder":
            warnings += _listable(self.cfg.publish_dir)
        elif not self.cfg.s3_prefix:
            warnings.append(f"s3_prefix is empty: folderseal's batch files go to the root of "
                            f"bucket {self.cfg.s3_bucket}, beside everything else there; "
                            'give them a prefix of their own, e.g. s3_prefix = "folderseal/"')
        if not self.cfg.format:
            warnings.append(f"batch_type {self.cfg.batch_type!r} is not one folderseal knows "
                            "(" + ", ".join(BATCH_TYPES) + "): each file's format is told by "
                            "its suffix (.jsonl, .ndjson, .csv), and a file with another suffix "
                            "is checked for UTF-8 only")
        if not network:
            return Health(warnings=tuple(warnings))
        where = f"Centrapay at {self.cfg.base_url}"
        client = CentrapayClient(self.cfg, self.name, self.limiter, self.transport,
                                 timeout=PROBE_TIMEOUT)
        try:
            status, location, said = client.probe(_unknown_id())
        except TransientError as exc:
            return Health(warnings=tuple(warnings), unreachable=(
                f"{where} cannot be reached ({exc}): check base_url, the network, any "
                "firewall or proxy; `folderseal run` starts anyway and its batches wait "
                "until Centrapay answers"))
        finally:
            client.close()
        if status == 401:
            variable = f"FOLDERSEAL_PROVIDERS__{self.name.upper()}__API_KEY"
            raise ConfigError(f"{where} refused the API key (HTTP 401): check api_key_file, "
                              f"api_key or {variable}")
        if 300 <= status < 400:
            raise ConfigError(f"{where} answered a redirect (HTTP {status} to "
                              f"{without_query(location)}): set base_url to the address "
                              "Centrapay really has")
        if status == 429 or status >= 500:
            return Health(warnings=tuple(warnings), unreachable=(
                f"{where} answered a test call with HTTP {status}, so the API key could not "
                "be checked; run check again later; `folderseal run` starts anyway and its "
                "batches wait"))
        if status != 403:
            raise ConfigError(f"{where} answered GET /api/batches/<a batch that does not "
                              f"exist> with HTTP {status}{' (' + said + ')' if said else ''}, "
                              "not 403: base_url is the host root (e.g. "
                              "https://service.centrapay.com; the paths start with /api/)")
        unreachable = self._probe_publish()
        verified = f"{where} took the API key; {ONE_FILE_NOTE}"
        if not unreachable:
            verified += (f"; a probe published to {self.publisher.where} was fetched back "
                         "from its URL and removed")
        return Health(verified=verified, warnings=tuple(warnings), unreachable=unreachable)

    def _probe_publish(self) -> str:
        """Publish a tiny probe, fetch it back from its URL, remove it. ConfigError for
        what must be fixed; the reason for what could not be tried now."""
        key = self.publisher.probe_key()
        body = f"folderseal check {secrets.token_hex(8)}\n".encode()
        with tempfile.TemporaryFile() as probe:
            probe.write(body)
            probe.flush()
            try:
                self.publisher.publish(key, probe.fileno(), len(body), lambda: None)
            except publish.PublishError as exc:
                if exc.config:
                    raise ConfigError(f"publishing a probe failed: {exc}") from None
                return (f"a probe could not be published ({exc}); `folderseal run` starts "
                        "anyway and its batches wait")
        try:
            return self._fetch_probe(key, body)
        finally:
            try:
                self.publisher.remove(key)
            except publish.PublishError as exc:
                self.log.warning("centrapay.probe_left", key=self.shown_key(key),
                                 reason=str(exc),
                                 next_step="it is removed at the next start")

    def _fetch_probe(self, key: str, body: bytes) -> str:
        url = self.publisher.url(key)
        shown = without_query(url)
        fix = ("the bucket's endpoint must be reachable from Centrapay: check s3_endpoint_url"
               if self.cfg.publish == "s3" else "serve publish_dir at publish_url_prefix")
        try:
            context = tls_context(self.cfg.model_copy(update={"client_certificate": None,
                                                              "client_key": None}))
            with httpx.Client(verify=context, timeout=PROBE_TIMEOUT,
                              follow_redirects=False) as fetcher:
                response = fetcher.get(url)
        except httpx.HTTPError as exc:
            return (f"the probe published at {shown} could not be fetched "
                    f"({type(exc).__name__}: {scrub(str(exc))}); {fix}; `folderseal run` "
                    "starts anyway")
        if response.status_code >= 500:
            return (f"fetching the probe published at {shown} answered HTTP "
                    f"{response.status_code}; {fix}; run check again later")
        if response.status_code != 200 or response.content != body:
            got = f"HTTP {response.status_code}" if response.status_code != 200 \
                else "other content"
            raise ConfigError(f"the probe published as {key} in {self.publisher.where} was "
                              f"not served back at {shown} ({got}): {fix}")
        return ""

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
        """Publish the batch file: its key recorded first, then the copy or upload; an
        earlier copy under another key is removed. Nothing remote yet: ""."""
        document = self._document(batch)
        key = self.publisher.key_for(batch.id, document.entry)
        ledger.publishing(key)
        fd = self._open(batch, document)
        try:
            self.publisher.publish(key, fd, document.size,
                                   lambda: crashpoints.reached("centrapay:publishing"))
        finally:
            os.close(fd)
        crashpoints.reached("centrapay:published")
        self.log.info("centrapay.published", batch=batch.id, entry=document.entry,
                      key=self.shown_key(key),
                      to=self.publisher.where, bytes=document.size)
        if batch.published and batch.published != key:
            try:
                self.publisher.remove(batch.published)
            except publish.PublishError as exc:  # no batch names it now: tidy removes it
                self.log.warning("centrapay.unpublish_failed", batch=batch.id,
                                 key=self.shown_key(batch.published), reason=str(exc),
                                 next_step="it is removed at the next start")
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
        state = parse.remote_state(found.status)
        if state is None:
            if found.status not in self._unknown:  # once: a batch is polled for long
                self._unknown.add(found.status)
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
        url = self.publisher.url(batch.published)
        # Noted in the batch's manifest before it is sent: after a lost store, `recover`
        # knows a create may have gone out (and never sends it again unasked).
        ledger.sending(document, "")
        crashpoints.reached("centrapay:creating")
        found = self._client.create(self.cfg.batch_type, url, self.cfg.account_id,
                                    self.cfg.test)
        ledger.created(found.id)
        self.log.info("centrapay.created", batch=batch.id, remote=found.id,
                      entry=document.entry, key=self.shown_key(batch.published),
                      status=found.status,
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
                             entry=document.entry, key=self.shown_key(batch.published))
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
                self._warned.add(remote_id)
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
                          key=self.shown_key(batch.published))
        self._warned.discard(remote_id)
        self._finals.pop(remote_id, None)

    def tidy(self, keep: set[str]) -> int:
        return self.publisher.tidy(keep)

    # -- helpers ---------------------------------------------------------------------------

    def shown_key(self, key: str) -> str:
        """A published key as logs and messages show it: an S3 object key as it is (its
        URL is signed), a name in publish_dir by a fingerprint of it (the name with
        publish_url_prefix reads the records): ``sha256:`` and the first 16 hex digits
        of the name's sha256."""
        if self.cfg.publish == "s3" or not key:
            return key
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]

    def _document(self, batch: BatchView) -> Document:
        if not batch.documents:
            raise TransientError(f"batch {batch.id} holds no file to load")
        return batch.documents[0]

    @staticmethod
    def _open(batch: BatchView, document: Document) -> int:
        assert batch.open_document is not None
        return batch.open_document(document)


def _unknown_id() -> str:
    """A batch id that looks like Centrapay's (22 base58 characters) and names none."""
    return "".join(secrets.choice(BASE58) for _ in range(22))


def _listable(folder: Path | None) -> list[str]:
    """A warning when other accounts may list publish_dir: the names are the only key to
    the records in it."""
    if folder is None:
        return []
    try:
        mode = folder.stat().st_mode
    except OSError:
        return []
    if mode & 0o004:
        return [f"publish_dir {folder} may be listed by every account (mode "
                f"{mode & 0o777:o}), and the file names are the only key to the records: "
                f"chmod o-r {folder} (keep o+x for the web server), and turn off directory "
                "listing in the web server"]
    return []
