"""The ``clevver`` provider: each document stored on a blockchain, with a receipt.

``POST /api/batches → attach each document (POST …/files) → start (the point of no
return) → GET /api/batches/{id} until delivered → each asset's receipt (GET
/api/files/{asset id})``. Nothing is stored until start, so an attach whose answer was
lost (its note in the ledger still in doubt) makes this remote batch unusable: it may
hold that document twice. It is abandoned, never started, and the files go to a new
one (:class:`Abandon`); the same when Clevver says it holds other bytes than were sent
(its checksum is not the file's sha256). A file is delivered only with a receipt that
has a transaction id and the file's checksum. The file itself comes out unchanged.

A note answered with the id ``""`` means Clevver surely did not take the file (429, no
connection, a refusal): it is sent again, to the same remote batch, without doubt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx

from folderseal.core import crashpoints
from folderseal.core.errors import ConfigError, NotSent, TransientError
from folderseal.core.keyfiles import exposure, service_accounts, service_group
from folderseal.core.logs import get as get_logger
from folderseal.core.model import DocumentResult, Output
from folderseal.providers import (
    Abandon,
    BatchView,
    Document,
    Health,
    Ledger,
    Remote,
    RemoteDocument,
    RemoteStatus,
    Steps,
    fingerprint,
)
from folderseal.providers.clevver import parse
from folderseal.providers.clevver.client import ClevverClient, Refused
from folderseal.providers.clevver.config import ClevverProviderConfig
from folderseal.providers.http import without_query

PROBE_TIMEOUT = 10.0
NO_RECEIPT = ("Clevver took the file but gave no transaction id; `folderseal retry` asks "
              "again, never re-sends")
# An attach refused with these says the remote batch is not there to attach to (gone,
# or started): the batch is abandoned, not the file.
BATCH_REFUSED = ("http_404", "http_409", "http_410")


class ClevverProvider:
    """The Clevver provider. Its methods are the provider protocol's steps and checks plus
    Clevver's per-document attach and receipt helpers; they share one client and one ledger,
    so they stay one class."""

    kind = "clevver"
    steps = Steps(remote=True, irrevocable=True, outcome="stored",
                  ask_again=frozenset({"no_receipt"}),
                  not_sent=frozenset({"refused", "not_attached"}))

    def __init__(self, name: str, cfg: ClevverProviderConfig, state_dir: Path,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.state_dir = state_dir
        self.transport = transport
        self.max_batch_files: int | None = cfg.batch_max_files
        self.poll_interval = cfg.poll_interval_seconds
        self.max_wait = cfg.max_wait_seconds
        self.retry_max_seconds = cfg.retry_max_seconds
        self.status_grace = cfg.status_grace_seconds
        self.client: ClevverClient | None = None
        self.log = get_logger(provider=name)
        self._unknown: set[str] = set()               # statuses already warned about
        self._stored: dict[str, parse.Asset] = {}     # receipts with a txid, by asset id

    # -- life cycle ----------------------------------------------------------------

    def check(self, network: bool = True) -> Health:
        """Reachability and the token: the list of active batches.

        200 means Clevver answered and took the token; 401/403 that it refused it, a
        redirect or a 404 that base_url is not Clevver's host root (all ConfigError). No
        answer, a 5xx or a 429 vouches for nothing: ``unreachable``.
        """
        warnings = exposure(self.cfg.secret_files(), service_accounts(self.state_dir),
                            service_group(self.state_dir))
        if not self.cfg.verify_tls:
            warnings.append("TLS verification is off (verify_tls = false): anyone on the "
                            "path could pose as Clevver")
        if not network:
            return Health(warnings=tuple(warnings))
        where = f"Clevver at {self.cfg.base_url}"
        client = ClevverClient(self.cfg, self.name, self.transport, timeout=PROBE_TIMEOUT)
        try:
            status, location, said = client.probe()
        except TransientError as exc:
            return Health(warnings=tuple(warnings), unreachable=(
                f"{where} cannot be reached ({exc}): check base_url, the network, any "
                "firewall or proxy; `folderseal run` starts anyway and its batches wait "
                "until Clevver answers"))
        finally:
            client.close()
        if status in (401, 403):
            variable = f"FOLDERSEAL_PROVIDERS__{self.name.upper()}__API_TOKEN"
            raise ConfigError(f"{where} refused the API token (HTTP {status}): check "
                              f"api_token, api_token_file or {variable}, and auth")
        if 300 <= status < 400:
            raise ConfigError(f"{where} answered a redirect (HTTP {status} to "
                              f"{without_query(location)}): set base_url to the address "
                              "Clevver really has")
        if status == 429 or status >= 500:
            return Health(warnings=tuple(warnings), unreachable=(
                f"{where} answered a test call with HTTP {status}, so the API token could "
                "not be checked; run check again later; `folderseal run` starts anyway and "
                "its batches wait"))
        if status >= 400:
            raise ConfigError(f"{where} answered GET /api/batches with HTTP {status}"
                              f"{' (' + said + ')' if said else ''}: base_url is the host "
                              "root (e.g. https://clevver.org; the paths start with /api/)")
        token = "no API token is sent (auth = \"none\")" if self.cfg.auth == "none" \
            else "the API token was accepted"
        return Health(verified=f"{where} answered; {token}", warnings=tuple(warnings))

    def start(self) -> None:
        if self.client is None:
            self.client = ClevverClient(self.cfg, self.name, self.transport)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    @property
    def _client(self) -> ClevverClient:
        self.start()
        assert self.client is not None
        return self.client

    # -- lifecycle steps -----------------------------------------------------------

    def prepare(self, batch: BatchView, ledger: Ledger) -> None:
        """Nothing to make: each document goes up as it is."""
        return None

    def create(self, batch: BatchView, ledger: Ledger) -> str:
        remote = self._client.create()
        self.log.info("clevver.created", batch=batch.id, remote=remote.id)
        crashpoints.reached("clevver:created")
        return remote.id

    def upload(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        """Attach each document not yet answered for ``remote_id``, noting it in the
        ledger before and after."""
        doubt = [d.entry for d in batch.documents
                 if (note := _note(d, remote_id)) is not None and note.in_doubt]
        if doubt:
            raise Abandon(f"the answer to attaching {_some(doubt)} to Clevver batch "
                          f"{remote_id} was lost, so it may hold a file twice: it is never "
                          "started, and the files go to a new batch", lost_answer=True)
        for document in batch.documents:
            note = _note(document, remote_id)
            if note is not None and note.id:  # answered before a restart
                self._compare(document, self._checksum(document, note, ledger), None, ledger)
                continue
            if ledger.stopping():
                raise TransientError("folderseal is stopping; the other files are attached "
                                     "when it runs again")
            previous = document.remote
            ledger.sending(document, remote_id)
            asset = self._attach(batch, document, remote_id, ledger)
            if asset is None:
                continue
            crashpoints.reached("clevver:attached")
            answered = RemoteDocument(batch=remote_id, id=asset.id, checksum=asset.checksum)
            ledger.answered(document, answered)
            self.log.info("clevver.attached", batch=batch.id, remote=remote_id,
                          entry=document.entry, asset=asset.id, duplicate=asset.duplicate)
            self._compare(document, self._checksum(document, answered, ledger), previous,
                          ledger)

    def _checksum(self, document: Document, note: RemoteDocument,
                  ledger: Ledger) -> RemoteDocument:
        """The note with Clevver's checksum: asked of the asset when the attach answer
        left it out."""
        if note.checksum:
            return note
        asset = self._client.asset(note.id or "")
        if asset is None or not asset.checksum:
            return note
        note = RemoteDocument(batch=note.batch, id=note.id, checksum=asset.checksum)
        ledger.answered(document, note)
        return note

    def _attach(self, batch: BatchView, document: Document, remote_id: str,
                ledger: Ledger) -> parse.Asset | None:
        """One attach; None when Clevver refused the file (it is rejected)."""
        assert batch.open_document is not None
        fd = batch.open_document(document)
        try:
            asset = self._client.attach(remote_id, document.entry, fd)
        except NotSent:
            ledger.answered(document, RemoteDocument(batch=remote_id, id=""))
            raise
        except Refused as exc:
            if exc.code in BATCH_REFUSED:
                raise Abandon(f"{exc.message}: Clevver batch {remote_id} takes no more "
                              "files; the files go to a new batch", lost_answer=False) from None
            ledger.answered(document, RemoteDocument(batch=remote_id, id=""))
            ledger.reject(document, "refused", f"{exc.message}; Clevver will not take this "
                          "file: check it, then drop it into the inbox again")
            return None
        finally:
            os.close(fd)
        return asset

    def _compare(self, document: Document, note: RemoteDocument,
                 previous: RemoteDocument | None, ledger: Ledger) -> None:
        """Clevver holds the file's bytes, or this remote batch is abandoned; a file
        whose previous remote batch held other bytes too is rejected as well (its wrong
        copy must never be stored, so the batch holding it is never started)."""
        if note.checksum == document.sha256:
            return
        said = note.checksum or "no checksum"
        why = (f"Clevver batch {note.batch} holds {document.entry} with {said}, not its "
               f"sha256 {document.sha256}")
        if previous is not None and previous.batch != note.batch and previous.id \
                and previous.checksum and previous.checksum != document.sha256:
            ledger.reject(document, "checksum_mismatch", (
                f"{why}, and batch {previous.batch} held it with {previous.checksum}: the "
                "bytes change on the way to Clevver (a proxy?); the file is not sent again: "
                "check the path to Clevver, then `folderseal retry` it"))
            self.log.warning("clevver.checksum_mismatch", remote=note.batch,
                             entry=document.entry, rejected=True)
            # Its wrong copy is attached here: this batch is never started either.
            raise Abandon(f"{why}; the file is rejected, and the other files go to a new "
                          "batch", lost_answer=False)
        raise Abandon(f"{why}: the batch is never started, and the files go to a new one",
                      lost_answer=False)

    def holds_upload(self, batch: BatchView, status: RemoteStatus) -> bool:
        """Open, and every document answered for this remote batch with its sha256."""
        return status.state not in (Remote.GONE, Remote.FAILED) and bool(status.batch) \
            and all((note := _note(d, status.batch)) is not None and bool(note.id)
                    and note.checksum == d.sha256 for d in batch.documents)

    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus:
        info = self._client.status(remote_id)
        if info is None:
            return RemoteStatus(Remote.GONE, detail="Clevver answered 404", batch=remote_id)
        state = parse.remote_state(info.status)
        if state is None:
            if info.status not in self._unknown:  # once: a slow batch is polled for hours
                self._unknown.add(info.status)
                self.log.warning("clevver.unknown_status", batch=batch.id, remote=remote_id,
                                 status=info.status, treated_as="running")
            state = Remote.RUNNING
        return RemoteStatus(state, detail=info.status, progress=info.progress,
                            batch=remote_id)

    def accept(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        crashpoints.reached("clevver:starting")
        info = self._client.start(remote_id)
        self.log.info("clevver.started", batch=batch.id, remote=remote_id,
                      status=info.status, progress=info.progress)
        crashpoints.reached("clevver:started")

    def download(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        """Each document's receipt; ``pending`` while it has no transaction id."""
        return [self._result(d, remote_id) for d in batch.documents]

    def salvage(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        """After Clevver lost a started batch: the documents whose receipt has a txid."""
        results = []
        for document in batch.documents:
            note = _note(document, remote_id)
            if note is not None and note.id:
                result = self._result(document, remote_id)
                if not result.pending:
                    results.append(result)
        return results

    def tidy(self, keep: Callable[[], set[str]]) -> int:
        return 0  # it publishes nothing

    def shown(self, key: str) -> str:
        return fingerprint(key)  # it publishes nothing: never called with a key

    def delete(self, batch: BatchView, remote_id: str) -> None:
        """Clevver has no call to delete a batch (an unstarted one stores nothing)."""
        for document in batch.documents:
            if (note := _note(document, remote_id)) is not None and note.id:
                self._stored.pop(note.id, None)

    # -- results ---------------------------------------------------------------------

    def _result(self, document: Document, remote_id: str) -> DocumentResult:
        note = _note(document, remote_id)
        if note is None or not note.id:
            return DocumentResult(document.entry, error_code="not_attached", error_message=(
                f"{document.entry} was never attached to Clevver batch {remote_id}, so it "
                "was not stored; drop it into the inbox again"))
        asset = self._stored.get(note.id) or self._client.asset(note.id)
        if asset is None or not asset.txid:
            missing = "" if asset else f" (Clevver does not know asset {note.id} yet)"
            return DocumentResult(document.entry, provider_document=note.id, pending=True,
                                  error_code="no_receipt", error_message=NO_RECEIPT + missing)
        self._stored[asset.id] = asset
        if asset.duplicate:
            self.log.info("clevver.duplicate", remote=remote_id, entry=document.entry,
                          asset=asset.id)
        receipt = asset.receipt()
        receipt["checksum"] = asset.checksum or note.checksum
        if receipt["checksum"] != document.sha256:
            return DocumentResult(
                document.entry, provider_document=asset.id,
                provider_block={"receipt": receipt}, error_code="checksum_mismatch",
                error_message=(f"Clevver's receipt for {document.entry} has checksum "
                               f"{receipt['checksum']}, not the file's sha256 "
                               f"{document.sha256}: what it stored is not this file. "
                               "Tell Clevver (asset " + asset.id + "), then drop the file "
                               "into the inbox again to store it anew"))
        original = Output(role="original", staged="", suffix="", sha256=document.sha256,
                          bytes=document.size)
        return DocumentResult(document.entry, outputs=(original,), provider_document=asset.id,
                              provider_block={"receipt": receipt})


def _note(document: Document, remote_id: str) -> RemoteDocument | None:
    """The document's note for ``remote_id``, if its latest note is for that batch."""
    note = document.remote
    return note if note is not None and note.batch == remote_id else None


def _some(entries: list[str]) -> str:
    return entries[0] + (f" (and {len(entries) - 1} more)" if len(entries) > 1 else "")
