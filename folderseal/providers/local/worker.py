"""What runs inside a signing worker process of the local provider.

``setup`` loads the seal once per worker (the private key stays in memory: loading
it per signature costs more than the signature). ``sign`` seals one batched file into
the batch's staging folder and checks the result before anyone may publish it:

* the input opened is the claimed file (same device and inode, no symlink);
* a PAdES output begins with the exact bytes of the claimed input (its sha256), so
  no output is ever matched to the wrong file;
* a detached signature was computed over content whose sha256 is the claimed one.

A file that cannot be signed comes back as a failed :class:`DocumentResult`; only a
crash or a hang of the worker itself is left to the pool to report.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from folderseal import signing
from folderseal.core import files
from folderseal.core.errors import FileRejected, TransientError
from folderseal.core.model import DocumentResult, Output, Signer
from folderseal.core.safety import open_claimed, open_dir
from folderseal.signing.credentials import Credentials
from folderseal.signing.signer import describe_certificate


@dataclass(frozen=True, slots=True)
class CredentialsSource:
    """How a worker finds the seal; the password travels over the pool's pipe."""

    certificate: Path
    key: Path | None
    password: bytes | None
    timestamp_url: str

    def __repr__(self) -> str:  # never show the password
        return f"CredentialsSource(certificate={self.certificate!s}, key={self.key!s})"


@dataclass(frozen=True, slots=True)
class SignTask:
    files_dir: str
    entry: str
    dev: int
    ino: int
    sha256: str
    size: int
    staging: str
    is_pdf: bool
    mode: int      # given to the outputs once written: the mode they are published with


@dataclass(slots=True)
class WorkerState:
    credentials: Credentials
    timestamp_url: str
    signer: Signer   # the seal's certificate, as every sidecar of this seal records it


def load_credentials(source: CredentialsSource) -> Credentials:
    if source.key is not None:
        return Credentials.from_pem(source.key, source.certificate, source.password)
    return Credentials.from_pkcs12(source.certificate, source.password)


def setup(source: CredentialsSource) -> WorkerState:
    # Imported now, while the worker warms up, not on its first file.
    importlib.import_module("folderseal.signing.pades")
    importlib.import_module("folderseal.signing.cades")
    credentials = load_credentials(source)
    return WorkerState(credentials=credentials, timestamp_url=source.timestamp_url,
                       signer=describe_certificate(credentials.certificate.dump()))


def sign(state: WorkerState, task: SignTask) -> None:
    """Seal one file; its outputs and its result are on disk (fsynced) when this returns.
    (The provider reads the result there, so nothing else travels back over the pipe.)"""
    try:
        result = _sign(state, task)
    except FileRejected as exc:
        result = DocumentResult(entry=task.entry, error_code=exc.code, error_message=exc.message)
    save_result(Path(task.staging), result)


# Each process appends the results it saves in a staging folder to a log of its own there:
# one line per file, so saving a result makes no file (making files is what costs, on a
# busy filesystem). Results saved by a version before the logs are files of their own.
RESULTS_LOG = "results-{pid}-{token}.jsonl"
_LOG_TOKEN = secrets.token_hex(4)  # a restarted process (same pid?) starts a log of its own
_OLD_RESULT = ".result.json"


def save_result(staging: Path, result: DocumentResult) -> None:
    """Append a file's result durably to this process's results log in ``staging`` (the
    provider's record of it). The folder is synced first, so that the names of the
    outputs the result names are durable before it is, and again when the log is new.
    The line records when it was saved (the newest line of a file counts) and begins
    with a line end of its own: one a failed write left unended (a full disk) is then a
    line apart, skipped when read like a line a crash tore, and that file is signed
    again."""
    files.fsync_dir(staging)
    path = staging / RESULTS_LOG.format(pid=os.getpid(), token=_LOG_TOKEN)
    line = f'\n{{"saved_ns": {time.time_ns()}, {result.to_json()[1:]}\n'.encode()
    try:
        fd, new = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL
                          | os.O_CLOEXEC, 0o600), True
    except FileExistsError:
        fd, new = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC), False
    try:
        files.write_all(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        files.fsync_dir(staging)  # the log's own name


def saved_results(folder: Path, unusable: set[str] | None = None,
                  ) -> dict[str, DocumentResult]:
    """The results saved in one staging folder, by entry: for each, the newest line of
    every process's log (or a result file of an earlier version). A line that does not
    end, or is no result, was torn by a crash and is skipped; so is a result one of
    whose staged outputs is not in ``folder`` (by its name) with its size: that file is
    signed again (its entry is added to ``unusable`` when no other result counts)."""
    found: dict[str, tuple[int, DocumentResult]] = {}
    passed_over: set[str] = set()
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return {}
    for name in names:
        log = name.startswith("results-") and name.endswith(".jsonl")
        if not (log or name.endswith(_OLD_RESULT)):
            continue
        try:
            data = (folder / name).read_bytes()
        except OSError:
            continue
        lines = data.split(b"\n")[:-1] if log else [data]  # [:-1]: the unended rest
        for line in lines:
            saved = _parsed(line)
            if saved is None:
                continue
            if not _outputs_there(saved[1], folder):
                passed_over.add(saved[1].entry)
            elif saved[0] >= found.get(saved[1].entry, (-1,))[0]:
                found[saved[1].entry] = saved
    if unusable is not None:
        unusable |= passed_over - found.keys()
    return {entry: result for entry, (_, result) in found.items()}


def _parsed(line: bytes) -> tuple[int, DocumentResult] | None:
    """A saved line's time and result, if it is whole."""
    if not line:
        return None
    try:
        data = json.loads(line)
        return int(data.get("saved_ns", 0)), DocumentResult.from_data(data)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _outputs_there(result: DocumentResult, folder: Path) -> bool:
    """Whether each staged output of ``result`` is in ``folder`` (by its name: another
    node may see the share elsewhere) with its size."""
    for output in result.outputs:
        if output.staged:
            try:
                if (folder / Path(output.staged).name).stat().st_size != output.bytes:
                    return False
            except OSError:
                return False
    return True


def _sign(state: WorkerState, task: SignTask) -> DocumentResult:
    folder = open_dir(task.files_dir)
    try:
        src_fd = open_claimed(folder, task.entry, task.dev, task.ino, task.sha256)
    finally:
        os.close(folder)
    with os.fdopen(src_fd, "rb") as src:
        if os.fstat(src.fileno()).st_size != task.size:
            raise _changed("size")
        if task.is_pdf:
            return _pades(state, task, src)
        return _cades(state, task, src)


def _changed(what: str) -> FileRejected:
    return FileRejected(
        "input_changed",
        f"the file changed after it was claimed (its {what} differs), so it was not sealed: "
        "a program was still writing it after it looked finished. Check that the file here "
        "is complete, then `folderseal retry` it (the id is in `folderseal status`); to "
        "prevent this, have the writer write under a temporary name and rename it when "
        "done, or raise settle_seconds")


def _staged(task: SignTask, suffix: str) -> Path:
    return Path(task.staging) / (task.entry + suffix)


def _open_output(path: Path) -> int:
    """A staged output, made afresh: what an interrupted attempt left there is removed
    first (it may be read-only, see :func:`_made_durable`, or linked into the outbox)."""
    for _ in range(3):  # another writer between the two (a worker thought dead?)
        path.unlink(missing_ok=True)
        with contextlib.suppress(FileExistsError):
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                           | os.O_CLOEXEC, 0o600)
    raise TransientError(f"{path} is made again as soon as it is removed; folderseal "
                         "retries")


def _made_durable(fd: int, mode: int) -> None:
    """Give a written output the mode it is published with (whatever the umask; even a
    read-only one), so that publishing need not change it and sync it again; then sync
    it. A filesystem that refuses the mode leaves that to publishing."""
    with contextlib.suppress(OSError):
        os.fchmod(fd, mode)
    os.fsync(fd)


def _pades(state: WorkerState, task: SignTask, src: BinaryIO) -> DocumentResult:
    out_path = _staged(task, "")
    with os.fdopen(_open_output(out_path), "w+b") as dst:
        signing.sign_pdf(state.credentials, src, dst, timestamp_url=state.timestamp_url)
        dst.flush()
        _made_durable(dst.fileno(), task.mode)
        whole, prefix, size = files.hash_with_prefix(dst.fileno(), task.size)
    if prefix != task.sha256:
        out_path.unlink(missing_ok=True)
        raise FileRejected("output_mismatch", "the signed PDF does not begin with the exact "
                           "bytes of the claimed file; it was not published")
    return DocumentResult(entry=task.entry, signer=state.signer, outputs=(
        Output(role="signed", staged=str(out_path), suffix="", sha256=whole, bytes=size,
               synced=True),))


def _cades(state: WorkerState, task: SignTask, src: BinaryIO) -> DocumentResult:
    signature = signing.sign_detached(state.credentials, src, timestamp_url=state.timestamp_url)
    if signature.content_sha256 != task.sha256:
        raise _changed("content")
    # The original is published as it is, beside its signature: its content reaches the
    # disk here, in parallel worker processes, so that publishing it syncs only its name.
    os.fsync(src.fileno())
    sig_path = _staged(task, ".p7s")
    fd = _open_output(sig_path)
    try:
        files.write_all(fd, signature.der)
        _made_durable(fd, task.mode)
    finally:
        os.close(fd)
    return DocumentResult(entry=task.entry, signer=state.signer, outputs=(
        Output(role="original", staged="", suffix="", sha256=task.sha256, bytes=task.size,
               synced=True),
        Output(role="signature", staged=str(sig_path), suffix=".p7s",
               sha256=hashlib.sha256(signature.der).hexdigest(), bytes=len(signature.der),
               synced=True),
    ))
