"""The fenced provider: each acting call is made only under a lease confirmed right
before it, also when the process froze between the first check and the call."""

from __future__ import annotations

from typing import Any

import pytest

from folderseal.batches import fence
from folderseal.core.errors import LeaseLost


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def accept(self, *args: Any) -> str:
        self.calls.append("accept")
        return "accepted"

    def describe(self) -> str:  # not acting: never fenced
        return "seal"


def test_a_lease_that_lapsed_at_the_point_of_no_return_stops_the_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease confirmed, then the process froze (fenced:accept) while another node
    took the batch over: the call is never made, LeaseLost says why."""
    inner = Recorder()
    taken_over = False

    def confirm() -> None:
        if taken_over:
            raise LeaseLost("batch b1 was taken over")

    def frozen_past_the_lease(name: str) -> None:
        nonlocal taken_over
        taken_over = name == "fenced:accept"
    monkeypatch.setattr(fence.crashpoints, "reached", frozen_past_the_lease)
    provider: Any = fence.FencedProvider(inner, confirm)  # type: ignore[arg-type]
    assert provider.describe() == "seal"
    with pytest.raises(LeaseLost, match="taken over"):
        provider.accept("b1")
    assert inner.calls == []


def test_a_held_lease_lets_the_call_through_after_two_checks() -> None:
    inner = Recorder()
    checks: list[str] = []
    provider: Any = fence.FencedProvider(inner, lambda: checks.append("ok"))  # type: ignore[arg-type]
    assert provider.accept("b1") == "accepted"
    assert inner.calls == ["accept"] and checks == ["ok", "ok"]


def test_a_request_that_waited_past_the_lease_inside_the_call_is_never_sent() -> None:
    """Inside a fenced call a request may wait after the lease checks (a request
    budget's turn, a pause of the process): the HTTP layer confirms the lease once more
    as the request leaves, and a lease lost meanwhile stops it there. Outside a fenced
    call nothing is checked; a real request goes out over a real loopback server."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import httpx

    from folderseal.providers import http

    sent: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            sent.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    taken_over = False

    class Creates:
        def accept(self) -> int:
            nonlocal taken_over
            taken_over = True  # the budget's wait outlasted the lease
            with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}") as client:
                return http.send(client, "POST", "/api/batches", "a create",
                                 may_act=True).status_code

    def confirm() -> None:
        if taken_over:
            raise LeaseLost("batch b1 was taken over")

    try:
        provider: Any = fence.FencedProvider(Creates(), confirm)  # type: ignore[arg-type]
        with pytest.raises(LeaseLost):
            provider.accept()
        assert sent == []
        assert Creates().accept() == 200 and sent == ["/api/batches"]  # not fenced
    finally:
        server.shutdown()
