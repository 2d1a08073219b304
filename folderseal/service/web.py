"""The daemon's HTTP listener (``[metrics] listen``): ``/metrics``, ``/healthz`` and ``/``.

Read-only and without authentication, so it listens on loopback unless the operator
names another address. ``/metrics`` is Prometheus text; ``/healthz`` answers 200 when
the main loop, every thread and every folder's watcher make progress, no folder's intake
waits on a share that hangs, and the store answers, 503 with the reasons otherwise. A
watcher backing off from a share outage is alive (the outage shows in ``/metrics``,
``/`` and ``folderseal status``). ``/`` is the status page for a person. The page and
``/metrics`` show a report made on a thread of its own (:class:`FreshReport`): asked
often, they answer at once however big the store is.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from folderseal.core import metrics
from folderseal.core.errors import ConfigError
from folderseal.core.logs import get as get_logger
from folderseal.service import gauges, page

Report = Callable[[], dict[str, Any]]
Problems = Callable[[], list[str]]

REFRESH_SECONDS = 1.0  # a report is made again at most this often, after a request
STALE_SECONDS = 2.0    # a request finding only an older one waits for a fresh one
WAIT_SECONDS = 30.0    # how long such a request waits


class FreshReport:
    """The status report for the page and ``/metrics``, made on a thread of its own.

    Reading a report from the store takes tens of milliseconds with 100,000 files in it,
    several times that while every core is busy sealing; and a request thread that read
    it would leave its allocations in a C allocator arena of its own. So the page and
    ``/metrics`` take the last report, which a request has made again (after
    REFRESH_SECONDS at the soonest) for the next one; a request finding none younger
    than STALE_SECONDS waits for a fresh one.
    """

    def __init__(self, make: Report) -> None:
        self.make = make
        self._cond = threading.Condition()
        self._report: dict[str, Any] | None = None
        self._made = -1.0e9     # time.monotonic() when the last report was begun
        self._asked = -1.0e9    # when one was last asked for
        self._wanted = False    # a request waits for a fresh one
        self._stopped = False
        self.thread = threading.Thread(target=self._refresh, name="report", daemon=True)

    def __call__(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._cond:
            self._asked = now
            if self._report is None or now - self._made > STALE_SECONDS:
                self._wanted = True
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._made >= now or self._stopped, WAIT_SECONDS)
            if self._report is None:
                raise RuntimeError("no status report could be made yet (the log says why)")
            return self._report

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _due(self) -> bool:
        """A request waits, or one came since the last report and that is a second old:
        at most one report a second, and none for nobody."""
        return self._wanted or (self._asked > self._made
                                and time.monotonic() - self._made >= REFRESH_SECONDS)

    def _refresh(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopped or self._due(), REFRESH_SECONDS)
                if self._stopped:
                    return
                if not self._due():
                    continue
                self._wanted = False
            began = time.monotonic()
            try:
                report: dict[str, Any] | None = self.make()
            except Exception:  # noqa: BLE001 - a report that fails must not end the daemon
                get_logger().exception("web.report_failed")
                report = None
            with self._cond:
                self._report = report if report is not None else self._report
                self._made = began
                self._cond.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    report: Report
    problems: Problems

    def __init__(self, address: tuple[str, int]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "folderseal"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.REGISTRY))
            elif path == "/healthz":
                problems = self.server.problems()
                body = "\n".join(problems) if problems else "ok"
                self._send(503 if problems else 200, "text/plain; charset=utf-8",
                           (body + "\n").encode())
            elif path == "/":
                self._send(200, "text/html; charset=utf-8",
                           page.render(self.server.report()).encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /, /metrics "
                           b"or /healthz\n")
        except Exception:  # noqa: BLE001 - a page that fails must not touch the daemon
            get_logger().exception("web.request_failed", path=path)
            self._send(500, "text/plain; charset=utf-8", b"internal error; see the log\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's
        get_logger().debug("web.request", request=format % args)


class WebServer:
    def __init__(self, address: tuple[str, int], report: Report, problems: Problems) -> None:
        self.address = address
        self.report = FreshReport(report)
        self.collector = gauges.ReportCollector(self.report)
        try:
            self.server = _Server(address)
        except OSError as exc:
            raise ConfigError(f"[metrics] listen = \"{address[0]}:{address[1]}\" cannot be "
                              f"used: {exc.strerror}; choose a free port, or listen = \"\" "
                              "to turn it off (FOLDERSEAL_METRICS__LISTEN)") from None
        self.server.report = self.report
        self.server.problems = problems
        self.thread = threading.Thread(target=self.server.serve_forever, name="web",
                                       daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        metrics.REGISTRY.register(self.collector)
        self.report.start()
        self.thread.start()
        log = get_logger()
        log.info("web.listening", url=f"http://{_host(self.address[0])}:{self.port}/")
        if not _is_loopback(self.address[0]):
            log.warning("web.exposed", listen=self.address[0],
                        advice="the status page and metrics have no login; keep them on "
                               "loopback or behind a proxy that has one")

    def close(self) -> None:
        self.report.stop()
        if self.thread.is_alive():
            self.server.shutdown()
            metrics.REGISTRY.unregister(self.collector)
        self.server.server_close()


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
