"""The HTTP side every emulator shares: routing, authentication, request faults, replies.

An emulator subclasses ``EmulatorHandler`` with its ``routes``, its error shape
(``error``) and its authentication (``authorized``, ``unauthorized``). Every route
handler returns a ``Reply`` instead of writing to the socket, so the request faults
are applied in one place, after authentication:

* ``429``, ``500-before`` and ``drop-before`` answer without calling the handler (the
  last closes the connection without reading the body: the client sees it cut);
* ``500-after`` and ``drop`` call it (the work is done), then answer 500 or close the
  connection without a byte;
* ``slow`` sleeps just before the answer goes out, after the work: a client that
  times out has still caused the effect, which is the case it must handle;
* ``truncate`` cuts a file download in half after a full ``Content-Length``.

Apart from faults, ``EmulatorApp.latency`` makes every authenticated call wait that
long before it is served: a server far away, for benchmarks (no fault is counted).

Whatever happens, the request body is read to its end before answering (or the
connection is closed), so a refused upload never leaves half a body to be parsed as
the next request. Authenticated requests are counted per route (``EmulatorApp.requests``);
the routes an emulator names ``public`` (download links) need no key and see no faults.
Two hooks let an emulator add its own rules: ``admit`` may refuse an authenticated
request before any fault is drawn (a rate limit), and ``faulted`` hears of every request
fault that hit a request (to journal, say, a create whose answer was lost).
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedReader
from typing import Any, ClassVar
from urllib.parse import SplitResult, parse_qsl, urlsplit

from folderseal.providers.emulation.body import BadFraming, Body, ClientGone
from folderseal.providers.emulation.faults import Faults, RequestFaults
from folderseal.providers.emulation.journal import log_event

__all__ = ["ApiError", "EmulatorApp", "EmulatorHandler", "EmulatorServer", "Reply", "Route"]


class ApiError(Exception):
    """A request the emulator refuses: the HTTP status and a message for the JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(kw_only=True)
class EmulatorApp:
    """What the request handlers of every emulator share; emulators add their state."""

    faults: Faults
    api_key: str | None
    slow_seconds: float
    latency: float = 0.0  # seconds every authenticated call waits: a distant server
    requests: Counter[str] = field(default_factory=Counter)  # route name → requests
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, route: str) -> None:
        with self._count_lock:
            self.requests[route] += 1

    def request_counts(self) -> dict[str, int]:
        """Authenticated requests so far, per route (faulty ones included)."""
        with self._count_lock:
            return dict(self.requests)


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


class EmulatorServer(ThreadingHTTPServer):
    """A threading HTTP server carrying the emulator's shared state."""

    daemon_threads = True  # a hung client connection never blocks stop()

    def __init__(
        self, address: tuple[str, int], app: EmulatorApp, handler: type[EmulatorHandler]
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request (a killed daemon) is ordinary: no traceback.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            log_event("emulator.client_gone", client=client_address[0])
            return
        super().handle_error(request, client_address)


# A route handler: (handler, the path's captured group or None, the query) → Reply.
Route = Callable[[Any, str | None, dict[str, str]], Reply]


class EmulatorHandler(BaseHTTPRequestHandler):
    """One connection; each request goes through ``_handle``.

    Its methods are http.server's per-verb handlers and the reply, body and fault helpers they
    share."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real clients expect
    # Headers and body go out in two writes: without TCP_NODELAY the second waits for
    # the client's delayed ACK (~40 ms a request on Linux).
    disable_nagle_algorithm = True
    server: EmulatorServer
    # (method, path pattern with at most one group, handler); matched byte-exact.
    routes: ClassVar[list[tuple[str, re.Pattern[str], Route]]] = []
    # Handlers anyone may call (public download links): no key, no faults, not counted.
    public: ClassVar[frozenset[str]] = frozenset()

    # --- what each emulator says its own way ------------------------------------

    def error(self, status: int, message: str, **headers: str) -> Reply:
        """A JSON error in the emulated server's shape."""
        return Reply(status, {"message": message, "status": status}, dict(headers))

    def authorized(self) -> bool:
        """Whether the request carries the API key (always, when there is none)."""
        return self.app.api_key is None

    def unauthorized(self) -> Reply:
        return self.error(401, "missing or wrong API key")

    def admit(self, route: str) -> Reply | None:
        """A refusal of this authenticated request before any fault is drawn (e.g. a rate
        limit's 429), or None to serve it. ``route`` is the handler's name."""
        return None

    def faulted(self, route: str, faults: RequestFaults, done: Reply | None) -> None:
        """Called when request faults hit a request, before its (lost or late) answer
        goes out; ``done`` is the handler's own reply, None when it did not run."""

    def loggable(self, split: SplitResult) -> str:
        """The path for the log; the query is hidden (it may hold a key)."""
        return split.path + ("?***" if split.query else "")

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
    def app(self) -> Any:
        """The emulator's ``EmulatorApp`` (its subclass: typed by each emulator)."""
        return self.server.app

    @property
    def body(self) -> Body:
        """The request's body, read in pieces."""
        return self._body

    def note_fault(self, kind: str) -> None:
        """Name a fault a route handler injected in this request's log line."""
        self._fault.append(kind)

    def _handle(self) -> None:
        started = time.monotonic()
        split = urlsplit(self.path)
        status: int | None = None
        self._fault: list[str] = []
        try:
            self._body = Body(self.rfile, self.headers)
        except BadFraming as exc:
            self.close_connection = True  # the body's end is unknown: cannot go on
            status = self._try_send(self.error(400, str(exc)))
        else:
            try:
                status = self._serve(split)
            except (ClientGone, ConnectionError, TimeoutError):
                self.close_connection = True
            except BadFraming as exc:
                self.close_connection = True
                status = self._try_send(self.error(400, str(exc)))
            except Exception as exc:  # a bug in the emulator: say so, answer 500
                log_event("emulator.internal_error", path=split.path, error=repr(exc))
                self.close_connection = True
                status = self._try_send(self.error(500, "internal error in the emulator"))
        log_event(
            "emulator.request",
            method=self.command,
            path=self.loggable(split),
            status=status,
            fault="+".join(self._fault) or None,
            ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _serve(self, split: SplitResult) -> int | None:
        route = self._route(split.path)
        if isinstance(route, Reply):
            return self._send(route)
        handler, arg = route
        if handler.__name__ in self.public:
            try:
                return self._send(handler(self, arg, {}))
            except ApiError as exc:
                return self._send(self.error(exc.status, exc.message))
        if not self.authorized():
            return self._send(self.unauthorized())
        self.app.count(handler.__name__)
        if self.app.latency:
            time.sleep(self.app.latency)
        refusal = self.admit(handler.__name__)
        if refusal is not None:
            return self._send(refusal)
        faults = self.app.faults.for_request()
        if faults.outcome:
            self._fault.append(faults.outcome)
        done: Reply | None = None
        if faults.outcome == "429":
            reply = self.error(429, "too many requests", **{"Retry-After": "1"})
        elif faults.outcome == "500-before":
            reply = self.error(500, "internal server error (injected before the work)")
        elif faults.outcome == "drop-before":
            reply = Reply(0)  # never sent
        else:
            query = dict(parse_qsl(split.query, keep_blank_values=True))
            try:
                reply = handler(self, arg, query)
            except ApiError as exc:
                reply = self.error(exc.status, exc.message)
            done = reply
            if faults.outcome == "500-after":
                reply.discard()
                reply = self.error(500, "internal server error (injected after the work)")
        if faults.outcome or faults.slow:
            self.faulted(handler.__name__, faults, done)
        if faults.slow:
            self._fault.append("slow")
            time.sleep(self.app.slow_seconds)
        if faults.outcome == "drop-before":
            # Closed with the body unread: the client sees the connection cut mid-send.
            self.close_connection = True
            return None
        if faults.outcome == "drop":
            reply.discard()
            self._body.drain()
            # No status line at all: the client sees the connection close.
            self.close_connection = True
            return None
        return self._send(reply)

    def _route(self, path: str) -> tuple[Route, str | None] | Reply:
        allowed: list[str] = []
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method == self.command:
                return handler, match.group(1) if pattern.groups else None
            allowed.append(method)
        if allowed:
            return self.error(405, f"{self.command} is not allowed here", Allow=", ".join(allowed))
        return self.error(404, f"no such endpoint: {path}")

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
