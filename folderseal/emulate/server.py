"""The HTTP side of the SEAL emulator: routing, authentication, faults, responses.

Paths are matched byte-exact as documented (ASP.NET would match them case-blind; being
strict catches a client that misspells one). Every handler returns a ``Reply`` instead
of writing to the socket, so the request faults can be applied in one place:

* ``429`` and ``500-before`` answer without calling the handler;
* ``500-after`` and ``drop`` call it (the work is done), then answer 500 or close the
  connection without a byte;
* ``slow`` sleeps just before the answer goes out, after the work: a client that
  times out has still caused the effect, which is the case it must handle;
* ``truncate`` cuts a package download in half after a full ``Content-Length``.

Whatever happens, the request body is read to its end before answering (or the
connection is closed), so a refused upload never leaves half a ZIP to be parsed as the
next request. The documented response shapes are kept, quirks included: CreateBatch
answers ids and status as strings, AcceptBatch as numbers, and AcceptBatch's status is
always 0 as in the documentation's example, whatever the table says.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedReader
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

from .body import BadFraming, Body, ClientGone
from .faults import Faults
from .package import CHUNK_SIZE, UploadRejected, unpack_upload
from .params import INT32_MAX, batch_id_in_json, loggable, parse_batch_id, positive_int
from .signing import BatchSigner
from .state import ApiError, Registry, Status, log_event

__all__ = ["EmulatorApp", "SealHandler", "SealServer"]

MAX_SMALL_BODY = 64 * 1024  # AcceptBatch's JSON body, at most


@dataclass
class EmulatorApp:
    """Everything the request handlers share."""

    registry: Registry
    faults: Faults
    signer: BatchSigner
    api_key: str | None
    slow_seconds: float
    uploads: itertools.count[int] = field(default_factory=itertools.count)


@dataclass
class Reply:
    """A response to send: JSON, or a file streamed with sendfile."""

    status: int
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    file: BufferedReader | None = None
    size: int = 0

    def discard(self) -> None:
        """Close the file of a reply that will not be sent."""
        if self.file is not None:
            self.file.close()


def error(status: int, message: str, **headers: str) -> Reply:
    """A JSON error in the ProblemDetails shape ASP.NET servers use."""
    return Reply(status, {"title": message, "status": status}, dict(headers))


class SealServer(ThreadingHTTPServer):
    """A threading HTTP server carrying the emulator's shared state."""

    daemon_threads = True  # a hung client connection never blocks stop()

    def __init__(self, address: tuple[str, int], app: EmulatorApp) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, SealHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request (a killed daemon) is ordinary: no traceback.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            log_event("emulator.client_gone", client=client_address[0])
            return
        super().handle_error(request, client_address)


Route = Callable[["SealHandler", str | None, dict[str, str]], Reply]


class SealHandler(BaseHTTPRequestHandler):
    """One connection; each request goes through ``_handle``."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real clients expect
    server_version = "SealEmulator/1.0"
    server: SealServer

    # --- plumbing ---------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _handle logs its own line, with the path stripped of query values

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # Only reached for protocol errors (bad request line...); never carries headers.
        log_event("emulator.http_error", client=self.client_address[0], message=format % args)

    @property
    def app(self) -> EmulatorApp:
        return self.server.app

    def _handle(self) -> None:
        started = time.monotonic()
        split = urlsplit(self.path)
        status: int | None = None
        self._fault: list[str] = []
        try:
            self._body = Body(self.rfile, self.headers)
        except BadFraming as exc:
            self.close_connection = True  # the body's end is unknown: cannot go on
            status = self._try_send(error(400, str(exc)))
        else:
            try:
                status = self._serve(split)
            except (ClientGone, ConnectionError, TimeoutError):
                self.close_connection = True
            except BadFraming as exc:
                self.close_connection = True
                status = self._try_send(error(400, str(exc)))
            except Exception as exc:  # a bug in the emulator: say so, answer 500
                log_event("emulator.internal_error", path=split.path, error=repr(exc))
                self.close_connection = True
                status = self._try_send(error(500, "internal error in the emulator"))
        log_event(
            "emulator.request",
            method=self.command,
            path=loggable(split),
            status=status,
            fault="+".join(self._fault) or None,
            ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _serve(self, split: SplitResult) -> int | None:
        route = self._route(split.path)
        if isinstance(route, Reply):
            return self._send(route)
        handler, arg = route
        if not self._authorized():
            return self._send(
                error(
                    401,
                    "missing or wrong API key: send it in the API-KEY header "
                    "(or as the password of HTTP Basic)",
                    **{"WWW-Authenticate": 'Basic realm="SEAL"'},
                )
            )
        faults = self.app.faults.for_request()
        if faults.outcome:
            self._fault.append(faults.outcome)
        if faults.outcome == "429":
            reply = error(429, "too many requests", **{"Retry-After": "1"})
        elif faults.outcome == "500-before":
            reply = error(500, "internal server error (injected before the work)")
        else:
            query = dict(parse_qsl(split.query, keep_blank_values=True))
            try:
                reply = handler(self, arg, query)
            except ApiError as exc:
                reply = error(exc.status, exc.message)
            if faults.outcome == "500-after":
                reply.discard()
                reply = error(500, "internal server error (injected after the work)")
        if faults.slow:
            self._fault.append("slow")
            time.sleep(self.app.slow_seconds)
        if faults.outcome == "drop":
            reply.discard()
            self._body.drain()
            # No status line at all: the client sees the connection close.
            self.close_connection = True
            return None
        return self._send(reply)

    def _route(self, path: str) -> tuple[Route, str | None] | Reply:
        allowed: list[str] = []
        for method, pattern, handler in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method == self.command:
                return handler, match.group(1)
            allowed.append(method)
        if allowed:
            return error(405, f"{self.command} is not allowed here", Allow=", ".join(allowed))
        return error(404, f"no such endpoint: {path}")

    def _authorized(self) -> bool:
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

    def _try_send(self, reply: Reply) -> int | None:
        try:
            return self._send(reply)
        except OSError:
            return None

    def _send(self, reply: Reply) -> int:
        try:
            if not self.close_connection and not self._body_finished():
                self._body.drain()
        except (BadFraming, ClientGone):
            self.close_connection = True
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.file is None:
            data = json.dumps(reply.payload).encode("utf-8")
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self._end_headers()
            self.wfile.write(data)
            return reply.status
        with reply.file:
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(reply.size))
            self._end_headers()
            length = reply.size
            if self.app.faults.truncate():
                self._fault.append("truncate")
                length = reply.size // 2
                self.close_connection = True  # the promised rest never comes
            if length:
                self.connection.sendfile(reply.file, 0, length)
        return reply.status

    def _body_finished(self) -> bool:
        body: Body | None = getattr(self, "_body", None)
        return body is None or body.finished

    def _end_headers(self) -> None:
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

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
                while chunk := self._body.read(CHUNK_SIZE):
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
        raw = self._body.read_all(MAX_SMALL_BODY)
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


ROUTES: list[tuple[str, re.Pattern[str], Route]] = [
    ("POST", re.compile(r"/api/CreateBatch/([^/]*)"), SealHandler.create_batch),
    ("POST", re.compile(r"/api/upload/([^/]*)"), SealHandler.upload),
    ("POST", re.compile(r"/api/AcceptBatch(?:/([^/]*))?"), SealHandler.accept),
    ("GET", re.compile(r"/api/BatchStatus/([^/]*)"), SealHandler.batch_status),
    ("GET", re.compile(r"/api/batchfile/([^/]*)"), SealHandler.batch_file),
    ("DELETE", re.compile(r"/api/BatchDeleteCache/([^/]*)"), SealHandler.delete),
]


def _size(file: BufferedReader) -> int:
    return os.fstat(file.fileno()).st_size
