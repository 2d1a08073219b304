"""The ``seal`` provider: Signius SEAL's batch API.

``prepare (the flat ZIP) → CreateBatch → upload → AcceptBatch → BatchStatus until
CLOSED → batchfile → BatchDeleteCache``. Exactly-once is the batch state machine's
(the remote id is stored before upload, ACCEPTING before accept, and the remote status
is read before anything is sent again); this adapter maps each step to its HTTP call,
SEAL's statuses to :class:`Remote`, proves an upload complete by BatchStatus's document
list, and turns the package into per-document results. Crash
points after each call that changes the remote batch let the tests kill the daemon
between the call and the state that records it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx

from folderseal.core import crashpoints, files
from folderseal.core.errors import ConfigError, TransientError
from folderseal.core.keyfiles import exposure, service_accounts, service_group
from folderseal.core.logs import get as get_logger
from folderseal.core.model import DocumentResult
from folderseal.providers import (
    BatchView,
    Health,
    Ledger,
    Remote,
    RemoteStatus,
    Steps,
    fingerprint,
)
from folderseal.providers.http import without_query
from folderseal.providers.seal import flatzip, package
from folderseal.providers.seal.client import SealClient
from folderseal.providers.seal.config import SealProviderConfig
from folderseal.signing import signer_of

KNOWN = {"NEW": Remote.NEW, "UPLOADED": Remote.UPLOADED, "ACCEPTED": Remote.RUNNING,
         "READY": Remote.RUNNING, "IN_PROGRESS": Remote.RUNNING, "FINISHING": Remote.RUNNING,
         "CLOSED": Remote.CLOSED, "DELETED": Remote.GONE}
PACKAGE = "package.zip"
PROBE_TIMEOUT = 10.0


class SealProvider:
    """The Signius SEAL provider. Its methods are the provider protocol's steps and checks; they
    share one client."""

    kind = "seal"
    # AcceptBatch starts billable signing: the point of no return, never sent twice.
    steps = Steps(remote=True, irrevocable=True, outcome="signed")
    max_batch_files: int | None = None   # the folder's batch_max_files

    def __init__(self, name: str, cfg: SealProviderConfig, state_dir: Path,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.state_dir = state_dir
        self.transport = transport
        self.poll_interval = cfg.poll_interval_seconds
        self.max_wait = cfg.max_wait_seconds
        self.retry_max_seconds = cfg.retry_max_seconds
        self.status_grace = cfg.status_grace_seconds
        self.client: SealClient | None = None
        self.limits = package.Limits(tuple(cfg.signature_suffixes), int(cfg.max_package_bytes),
                                     int(cfg.max_entry_bytes))
        self.log = get_logger(provider=name)

    # -- life cycle ----------------------------------------------------------------

    def check(self, network: bool = True) -> Health:
        """Reachability and the key: a status call on a batch that cannot exist.

        404 (or another answer past authentication) means SEAL answered and took the key;
        401/403 that it refused the key, a redirect that base_url is not SEAL's address
        (both ConfigError). No answer, a 5xx or a 429 vouches for nothing: ``unreachable``
        (``folderseal check`` fails; the daemon starts and its batches wait).
        """
        warnings = exposure(self.cfg.secret_files(), service_accounts(self.state_dir),
                            service_group(self.state_dir))
        if not self.cfg.verify_tls:
            warnings.append("TLS verification is off (verify_tls = false): anyone on the "
                            "path could pose as SEAL")
        if not network:
            return Health(warnings=tuple(warnings))
        where = f"SEAL at {self.cfg.base_url}"
        client = SealClient(self.cfg, self.name, self.transport, timeout=PROBE_TIMEOUT)
        try:
            status, location = client.probe()
        except TransientError as exc:
            return Health(warnings=tuple(warnings), unreachable=(
                f"{where} cannot be reached ({exc}): check base_url, the network, any "
                "firewall or proxy, and that SEAL is up; `folderseal run` starts anyway and "
                "its batches wait until SEAL answers"))
        finally:
            client.close()
        if status in (401, 403):
            variable = f"FOLDERSEAL_PROVIDERS__{self.name.upper()}__API_KEY"
            raise ConfigError(f"{where} refused the API key (HTTP {status}): check api_key, "
                              f"api_key_file or {variable} against the key SEAL's "
                              "administrator issued")
        if 300 <= status < 400:
            raise ConfigError(f"{where} answered a redirect (HTTP {status} to "
                              f"{without_query(location)}): "
                              "set base_url to the address SEAL really has")
        if status == 429 or status >= 500:
            return Health(warnings=tuple(warnings), unreachable=(
                f"{where} answered a test call with HTTP {status}, so the API key could not "
                "be checked: SEAL is overloaded or in trouble; ask its administrator and run "
                "check again; `folderseal run` starts anyway and its batches wait"))
        key = "no API key is sent (auth = \"none\")" if self.cfg.auth == "none" \
            else "the API key was accepted"
        return Health(verified=f"{where} answered; {key}", warnings=tuple(warnings))

    def start(self) -> None:
        if self.client is None:
            self.client = SealClient(self.cfg, self.name, self.transport)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    @property
    def _client(self) -> SealClient:
        self.start()
        assert self.client is not None
        return self.client

    # -- lifecycle steps -----------------------------------------------------------

    def prepare(self, batch: BatchView, ledger: Ledger) -> tuple[str, int] | None:
        """The flat ZIP of the batch's entries: made at ``batch.package`` only when none
        made before (by this holder or, in fleet mode, an earlier one) still matches the
        hash recorded for it."""
        if _prepared(batch) is not None:
            return batch.prepared
        return _build(batch)

    def create(self, batch: BatchView, ledger: Ledger) -> str:
        remote = self._client.create()
        self.log.info("seal.created", batch=batch.id, remote=remote.id)
        crashpoints.reached("seal:created")
        return remote.id

    def upload(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        """One ZIP, once: the state machine noted the upload before this call (SEAL adds what
        is uploaded, so a second upload would double the batch)."""
        package = _prepared(batch)
        if package is None:  # lost with a state folder, or its holder's staging: the
            # same entries make the same stored ZIP again (nothing was sent from it yet
            # that this upload would repeat: the state machine noted this one first)
            digest, _ = _build(batch)
            recorded = batch.prepared[0] if batch.prepared else None
            self.log.warning("seal.package_rebuilt", batch=batch.id, remote=remote_id,
                             package=str(batch.package), same_as_recorded=digest == recorded,
                             reason="the ZIP made before the upload is gone (a state folder "
                             "restored without it, or a node that took the batch over)",
                             next_step="none: made again from the batch's files, uploaded once")
            package = batch.package
        assert package is not None
        self._client.upload(remote_id, package)
        crashpoints.reached("seal:uploaded")

    def holds_upload(self, batch: BatchView, status: RemoteStatus) -> bool:
        """Not started, and its document list is exactly the batch's entries."""
        return status.state in (Remote.NEW, Remote.UPLOADED, Remote.RUNNING) and \
            sorted(status.documents) == sorted(d.entry for d in batch.documents)

    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus:
        info = self._client.status(remote_id)
        if info is None:
            return RemoteStatus(Remote.GONE, detail="SEAL answered 404")
        names = tuple(d.name for d in info.documents)
        state = KNOWN.get(info.status)
        if state is None:
            self.log.warning("seal.unknown_status", batch=batch.id, remote=remote_id,
                             status=info.status, treated_as="running")
            state = Remote.RUNNING
        return RemoteStatus(state, names, detail=info.status, trusted=info.named)

    def accept(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        self._client.accept(remote_id)
        self.log.info("seal.accepted", batch=batch.id, remote=remote_id)
        crashpoints.reached("seal:accepted")

    def download(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        info = self._client.status(remote_id)
        remote = {d.name: d for d in info.documents} if info else {}
        files.makedirs(batch.staging)
        path = _downloaded_before(batch, remote_id)
        if path is not None:
            self.log.info("seal.package_reused", batch=batch.id, remote=remote_id,
                          package=str(path))
        else:
            path = batch.staging / PACKAGE
            size = self._client.download(remote_id, path, self.limits.max_total)
            _note_package(path, remote_id)
            self.log.info("seal.downloaded", batch=batch.id, remote=remote_id, bytes=size)
        results = package.extract(path, batch.staging, batch.documents, remote, self.limits,
                                  remote_id, self.log.warning)
        return [_with_signer(result) for result in results]

    def salvage(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        return []  # a batch SEAL no longer knows proves nothing about its files

    def tidy(self, keep: Callable[[], set[str]]) -> int:
        return 0  # it publishes nothing

    def shown(self, key: str) -> str:
        return fingerprint(key)  # it publishes nothing: never called with a key

    def delete(self, batch: BatchView, remote_id: str) -> None:
        if remote_id:
            self._client.delete(remote_id)


PACKAGE_NOTE = PACKAGE + ".json"  # beside it: its sha256, size and remote batch


def _note_package(path: Path, remote_id: str) -> None:
    """Note, durably, what a whole downloaded package holds (written after the package
    itself is durable): a node that takes the batch over uses the package only if its
    bytes still match this."""
    digest, size = files.hash_path(path)
    body = json.dumps({"sha256": digest, "bytes": size, "remote": remote_id}).encode()
    note = path.with_name(PACKAGE_NOTE)
    with files.temp_file(path.parent, 0o600, "package") as (fd, tmp):
        files.write_all(fd, body)
        os.fsync(fd)
        os.replace(tmp, note)
    files.fsync_dir(path.parent)


def _prepared(batch: BatchView) -> Path | None:
    """Where the ZIP a prepare made and recorded still is, whole (this holder's place
    first, then earlier holders', only ever read there); None if nowhere."""
    recorded = batch.prepared[0] if batch.prepared else None
    return next((p for p in batch.prepared_in if flatzip.package_matches(p, recorded)), None)


def _build(batch: BatchView) -> tuple[str, int]:
    """Make the flat ZIP of the batch's entries at ``batch.package``: its sha256, size."""
    assert batch.package is not None and batch.open_document is not None
    files.makedirs(batch.package.parent)
    return flatzip.build_package(batch.package, [
        (d.entry, partial(batch.open_document, d)) for d in batch.documents])


def _downloaded_before(batch: BatchView, remote_id: str) -> Path | None:
    """Fleet mode: the package of ``remote_id`` an earlier holder of the batch downloaded
    whole (newest epoch first), if its bytes match the sha256 noted beside it; else
    None (downloaded again: that costs a download, never a signature). Only ever read
    there: this holder extracts into its own staging folder."""
    for folder in batch.staged_before:
        try:
            note = json.loads((folder / PACKAGE_NOTE).read_bytes())
            if note.get("remote") != remote_id:
                continue
            found = files.hash_path(folder / PACKAGE)
        except (OSError, ValueError, AttributeError):
            continue  # none there, torn, or a note of another shape
        if found == (note.get("sha256"), note.get("bytes")):
            return folder / PACKAGE
    return None


def _with_signer(result: DocumentResult) -> DocumentResult:
    """SEAL reports nothing about the certificate it sealed with: it is read from the
    signature of the signed output (a signed PDF, or a .p7s/.p7m beside the file)."""
    for output in result.outputs if result.ok else ():
        if output.staged and (signer := signer_of(Path(output.staged))) is not None:
            return dataclasses.replace(result, signer=signer)
    return result
