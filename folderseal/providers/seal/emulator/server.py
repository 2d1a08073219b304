"""The HTTP side of the SEAL emulator: its endpoints, its error shape, its authentication.

The plumbing (routing, request faults, replies) is ``httpd``'s. Paths are matched
byte-exact as documented (ASP.NET would match them case-blind; being strict catches a
client that misspells one). The documented response shapes are kept, quirks included:
CreateBatch answers ids and status as strings, AcceptBatch as numbers, and
AcceptBatch's status is always 0 as in the documentation's example, whatever the table
says. Errors have the ProblemDetails shape ASP.NET servers use.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import os
import re
from dataclasses import dataclass, field
from io import BufferedReader
from urllib.parse import SplitResult

from folderseal.providers.emulation.httpd import (
    ApiError,
    EmulatorApp,
    EmulatorHandler,
    EmulatorServer,
    Reply,
)
from folderseal.providers.seal.emulator.package import CHUNK_SIZE, UploadRejected, unpack_upload
from folderseal.providers.seal.emulator.params import (
    INT32_MAX,
    batch_id_in_json,
    loggable,
    parse_batch_id,
    positive_int,
)
from folderseal.providers.seal.emulator.signing import BatchSigner
from folderseal.providers.seal.emulator.state import Registry, Status

__all__ = ["SealApp", "SealHandler", "seal_server"]

MAX_SMALL_BODY = 64 * 1024  # AcceptBatch's JSON body, at most


@dataclass(kw_only=True)
class SealApp(EmulatorApp):
    """Everything the SEAL request handlers share."""

    registry: Registry
    signer: BatchSigner
    uploads: itertools.count[int] = field(default_factory=itertools.count)


def seal_server(address: tuple[str, int], app: SealApp) -> EmulatorServer:
    """The SEAL emulator's HTTP server (not yet serving)."""
    return EmulatorServer(address, app, SealHandler)


class SealHandler(EmulatorHandler):
    """SEAL's endpoints."""

    server_version = "SealEmulator/1.0"

    @property
    def app(self) -> SealApp:
        app: SealApp = self.server.app  # type: ignore[assignment]
        return app

    def error(self, status: int, message: str, **headers: str) -> Reply:
        """ProblemDetails, as ASP.NET servers answer."""
        return Reply(status, {"title": message, "status": status}, dict(headers))

    def unauthorized(self) -> Reply:
        return self.error(
            401,
            "missing or wrong API key: send it in the API-KEY header "
            "(or as the password of HTTP Basic)",
            **{"WWW-Authenticate": 'Basic realm="SEAL"'},
        )

    def loggable(self, split: SplitResult) -> str:
        return loggable(split)

    def authorized(self) -> bool:
        key = self.app.api_key
        if key is None:
            return True
        expected = key.encode("utf-8")
        given = self.headers.get("API-KEY")
        if given is not None and hmac.compare_digest(given.encode("utf-8"), expected):
            return True
        auth = self.headers.get("Authorization") or ""
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        _, sep, password = decoded.partition(b":")
        return bool(sep) and hmac.compare_digest(password, expected)

    # --- endpoints --------------------------------------------------------------

    def create_batch(self, arg: str | None, query: dict[str, str]) -> Reply:
        process_id = positive_int(arg)
        if process_id is None or process_id > INT32_MAX:
            raise ApiError(400, f"the processId value {arg!r} is not valid")
        batch = self.app.registry.create(process_id)
        return Reply(
            201,
            {
                "id": str(batch.id),
                "providerSettingsId": "1",
                "creationDate": batch.created,
                "status": str(int(Status.NEW)),
            },
        )

    def upload(self, arg: str | None, query: dict[str, str]) -> Reply:
        batch_id = parse_batch_id(arg)
        batch = self.app.registry.check_uploadable(batch_id)
        prefix = f"upload-{next(self.app.uploads)}"
        incoming = batch.directory / "incoming"
        zip_path = incoming / f"{prefix}.zip"
        try:
            with zip_path.open("wb") as out:
                while chunk := self.body.read(CHUNK_SIZE):
                    out.write(chunk)
            try:
                files = unpack_upload(zip_path, incoming, prefix)
            except UploadRejected as exc:
                raise ApiError(400, f"the package was refused: {exc}") from None
            finally:
                zip_path.unlink(missing_ok=True)  # halves the disk a 1 GiB upload needs
            try:
                documents = self.app.registry.add_documents(batch_id, files)
            except ApiError:
                for _, path, _ in files:
                    path.unlink(missing_ok=True)
                raise
        except FileNotFoundError:
            # BatchDeleteCache removed the batch's directory during the upload.
            raise ApiError(409, f"batch {batch_id} was deleted during the upload") from None
        finally:
            zip_path.unlink(missing_ok=True)
        return Reply(202, documents[0].upload_json(batch_id))

    def accept(self, arg: str | None, query: dict[str, str]) -> Reply:
        given: list[object] = []
        if arg is not None:
            given.append(arg)
        if "batchId" in query:
            given.append(query["batchId"])
        raw = self.body.read_all(MAX_SMALL_BODY)
        if raw.strip():
            given.append(batch_id_in_json(raw))
        if not given:
            raise ApiError(
                400,
                "batchId is missing: give it as ?batchId=N, as a JSON body "
                '{"batchId": N} or as /api/AcceptBatch/N',
            )
        ids = {parse_batch_id(str(value)) for value in given}
        if len(ids) > 1:
            raise ApiError(400, f"batchId given more than once, with different values: {ids}")
        batch = self.app.registry.accept(ids.pop(), self.app.faults.for_batch)
        self.app.signer.start(batch)
        return Reply(
            202,
            {
                "id": batch.id,
                "providerSettingsId": "1",
                "creationDate": batch.created,
                "status": 0,  # as in the documentation's example, though the batch is ACCEPTED
            },
        )

    def batch_status(self, arg: str | None, query: dict[str, str]) -> Reply:
        return Reply(200, self.app.registry.snapshot(parse_batch_id(arg)))

    def batch_file(self, arg: str | None, query: dict[str, str]) -> Reply:
        batch_id = parse_batch_id(arg)
        registry = self.app.registry
        with registry.lock:
            batch = registry.get(batch_id)
            if batch.status is not Status.CLOSED or batch.package is None:
                raise ApiError(
                    404, f"batch {batch_id} is {batch.status.name}; its package exists once CLOSED"
                )
            # Opened under the lock: a concurrent delete cannot remove it in between,
            # and once open it stays readable after the delete.
            file = batch.package.open("rb")
        return Reply(200, file=file, size=_size(file))

    def delete(self, arg: str | None, query: dict[str, str]) -> Reply:
        return Reply(200, self.app.registry.delete(parse_batch_id(arg)))


SealHandler.routes = [
    ("POST", re.compile(r"/api/CreateBatch/([^/]*)"), SealHandler.create_batch),
    ("POST", re.compile(r"/api/upload/([^/]*)"), SealHandler.upload),
    ("POST", re.compile(r"/api/AcceptBatch(?:/([^/]*))?"), SealHandler.accept),
    ("GET", re.compile(r"/api/BatchStatus/([^/]*)"), SealHandler.batch_status),
    ("GET", re.compile(r"/api/batchfile/([^/]*)"), SealHandler.batch_file),
    ("DELETE", re.compile(r"/api/BatchDeleteCache/([^/]*)"), SealHandler.delete),
]


def _size(file: BufferedReader) -> int:
    return os.fstat(file.fileno()).st_size
