"""`folderseal check` with a Centrapay provider, end to end over loopback HTTP: a stand-in
Centrapay (403 for a batch it does not know with the right key, 401 without) that also
serves publish_dir, as a web server would. Every outcome says the folder makes batches of
one file, whatever batch_max_files says; a rate above Centrapay's is a warning."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from folderseal.commands.check import run_checks
from folderseal.core.errors import ExitCode
from tests.helpers import Layout

KEY = "cp-key-for-the-check-tests"
ONE_FILE = "folders.scans: makes batches of one file (provider local takes 1 per batch), " \
    "whatever batch_max_files says (it says 50)"


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/api/"):
            ok = self.headers.get("X-Api-Key") == KEY
            body = b'{"message": "Forbidden"}' if ok else b'{"message": "Unauthorized"}'
            self.send_response(403 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    public = tmp_path / "public"
    public.mkdir(mode=0o711)
    handler = lambda *a: Handler(*a, directory=str(tmp_path))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _check(tmp_path: Path, capsys: pytest.CaptureFixture[str], base_url: str,
           **overrides: object) -> tuple[int, str]:
    layout = Layout(tmp_path, folder={"batch_max_files": 50}, provider={
        "kind": "centrapay", "base_url": base_url, "api_key": KEY,
        "account_id": "C4QnjXvj8At6SMsEN4LRi9", "batch_type": "farmlands-external-asset",
        "publish": "folder", "publish_dir": str(tmp_path / "public"),
        "publish_url_prefix": f"{base_url}/public/", **overrides})
    layout.write()
    code = run_checks(layout.config)
    return code, capsys.readouterr().out


def test_all_well(tmp_path: Path, capsys: pytest.CaptureFixture[str], server: str) -> None:
    code, out = _check(tmp_path, capsys, server)
    assert code == ExitCode.OK, out
    assert f"ok: {ONE_FILE}" in out
    assert "took the API key" in out and "fetched back from its URL" in out
    assert "max_requests_per_minute" not in out
    assert os.listdir(tmp_path / "public") == []


def test_a_refused_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       server: str) -> None:
    code, out = _check(tmp_path, capsys, server, api_key="wrong-key-for-the-check")
    assert code == ExitCode.CONFIG, out
    assert f"ok: {ONE_FILE}" in out
    problem = next(line for line in out.splitlines() if "refused the API key" in line)
    assert problem.startswith("problem: ") and "each Centrapay batch holds one file" in problem


def test_unreachable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(tmp_path, capsys, "http://127.0.0.1:9")
    assert code == ExitCode.FAILURE, out
    assert f"ok: {ONE_FILE}" in out
    problem = next(line for line in out.splitlines() if "cannot be reached" in line)
    assert "each Centrapay batch holds one file" in problem


def test_a_url_not_served_back(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               server: str) -> None:
    code, out = _check(tmp_path, capsys, server, publish_url_prefix=f"{server}/elsewhere/")
    assert code == ExitCode.CONFIG, out
    assert f"ok: {ONE_FILE}" in out
    problem = next(line for line in out.splitlines() if "not served back" in line)
    assert "each Centrapay batch holds one file" in problem


def test_a_rate_above_centrapays_is_a_warning(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              server: str) -> None:
    code, out = _check(tmp_path, capsys, server, max_requests_per_minute=300)
    assert code == ExitCode.OK, out
    assert "warning: provider local: max_requests_per_minute = 300 is above the about 200 " \
        "requests a minute Centrapay allows" in out
