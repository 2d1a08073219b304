"""The Centrapay emulator: the documented API, the fetch of each batch file from its URL,
the per-line report, the rate limit, its journal and violations, every fault kind.

Each test runs a real emulator in-process (``start_centrapay``) and talks to it over
loopback with httpx; the batch files are served by a real ``http.server`` from a
temporary folder, so the emulator's fetch is a real HTTP GET. The command-line and
memory tests run the emulator in a subprocess.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from folderseal import commands as cli
from folderseal.commands import emulate
from folderseal.providers.centrapay.emulator import (
    ERRORS_KEPT,
    MAX_LINE,
    CentrapayEmulator,
    run_centrapay,
    start_centrapay,
)
from tests.helpers import emulator_listening, emulators, proc_memory

KEY = "centrapay-key-0123"
AUTH = {"X-Api-Key": KEY}
ACCOUNT = "C4QnjXvj8At6SMsEN4LRi9"
SIGNED = "X-Amz-Signature=f00dfeedsecret&X-Amz-Expires=600"  # a pre-signed URL's read key
BASE62_ID = re.compile(r"[0-9A-Za-z]{22}")
JSONL_TYPE, CSV_TYPE = "ticketek-ticket", "business-onboard"


class Files:
    """A folder served over HTTP (as folder publishing does), noting every path asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requested: list[str] = []
        files = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                files.requested.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def put(self, name: str, data: bytes) -> str:
        """Serve ``data`` as ``name``; its URL with a pre-signed-like query."""
        (self.folder / name).write_bytes(data)
        return f"{self.base}/{name}?{SIGNED}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Files]:
    folder = tmp_path / "published"
    folder.mkdir()
    served = Files(folder)
    yield served
    served.stop()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """A factory starting emulators (key KEY, a status step per read) in tmp_path."""
    yield from emulators(start_centrapay, tmp_path, api_key=KEY, step_seconds=0.0)


@pytest.fixture
def emu(start: Any) -> CentrapayEmulator:
    handle: CentrapayEmulator = start()
    return handle


def client(handle: CentrapayEmulator) -> httpx.Client:
    return httpx.Client(base_url=handle.url, headers=AUTH, timeout=30)


def create(c: httpx.Client, url: str, batch_type: str = JSONL_TYPE,
           **extra: Any) -> httpx.Response:
    return c.post("/api/batches",
                  json={"type": batch_type, "url": url, "accountId": ACCOUNT, **extra})


def created(c: httpx.Client, url: str, batch_type: str = JSONL_TYPE) -> str:
    r = create(c, url, batch_type)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def poll_until_final(c: httpx.Client, batch: str, reads: int = 200) -> list[dict[str, Any]]:
    """Status reads until complete or error; every answer."""
    seen: list[dict[str, Any]] = []
    for _ in range(reads):
        r = c.get(f"/api/batches/{batch}")
        assert r.status_code == 200, r.text
        seen.append(r.json())
        if seen[-1]["status"] in ("complete", "error"):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"batch {batch} never ended: {seen[-3:]}")


def events(handle: CentrapayEmulator, *names: str) -> list[dict[str, Any]]:
    return [e for e in handle.read_journal() if not names or e["event"] in names]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


JSONL = (b'{"externalId": "a-1", "name": "first"}\n'
         b"[1, 2]\n"
         b"\n"
         b'{"name": "no id"}\n'
         b'{"externalId": 77}\n'
         b"not json at all\n"
         b'{"externalId": "a-7"}')  # no newline at the end


def test_lifecycle_fetches_the_url_and_reports_per_line(
        emu: CentrapayEmulator, files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    """create answers the Batch model; the file is fetched from its URL (query and all);
    statuses walk created → copied → chunked → complete with BigNumber strings, the
    count shown from chunked, the errors with their 0-based line index at complete; the
    journal has create (URL without its query), fetched and complete."""
    url = files.put("tickets.jsonl", JSONL)
    with client(emu) as c:
        r = create(c, url, test=True)
        assert r.status_code == 200
        answer = r.json()
        assert BASE62_ID.fullmatch(answer["id"])
        batch = answer["id"]
        assert answer == {"id": batch, "status": "created", "type": JSONL_TYPE, "count": "0",
                          "errorCount": "0", "errors": []}
        seen = poll_until_final(c, batch)
    statuses = [s["status"] for s in seen]
    assert statuses[-3:] == ["copied", "chunked", "complete"]
    assert set(statuses[:-3]) <= {"created"}
    assert [(s["count"], s["errorCount"]) for s in seen[-3:]] == [("0", "0"), ("6", "0"),
                                                                  ("6", "4")]
    assert seen[-1]["errors"] == [
        {"index": "1", "message": "the line is not a JSON object"},
        {"index": "3", "message": "the record has no externalId"},
        {"index": "4", "message": "externalId must be a string", "externalId": "77"},
        {"index": "5", "message": "not valid JSON: Expecting value"},
    ]
    assert files.requested == [f"/tickets.jsonl?{SIGNED}"]  # the whole URL was fetched

    create_line, fetched, complete = emu.read_journal()
    assert create_line["event"] == "create" and create_line["batch"] == batch
    assert create_line["url"] == f"{files.base}/tickets.jsonl"  # no query: a read key
    assert (create_line["type"], create_line["accountId"], create_line["test"]) == (
        JSONL_TYPE, ACCOUNT, True)
    assert fetched == {"event": "fetched", "batch": batch, "sha256": sha(JSONL),
                       "bytes": len(JSONL), "count": 6, "errorCount": 4, "at": fetched["at"]}
    assert (complete["event"], complete["count"], complete["errorCount"]) == ("complete", 6, 4)
    assert emu.violations() == []
    assert emu.request_counts()["create_batch"] == 1
    logged = capsys.readouterr().err
    assert "f00dfeedsecret" not in logged and "f00dfeedsecret" not in emu.journal_path.read_text()


def test_a_csv_file_is_a_header_and_rows(emu: CentrapayEmulator, files: Files) -> None:
    """business-onboard: the header counts as line 0 but not as a record; blank lines
    are skipped; a quoted field may span lines; CRLF and a BOM are fine; a row with the
    wrong number of columns is an error at the index of its first line."""
    data = ("\ufeffname,email,phone\r\n"
            "Ann,ann@example.com,1\r\n"
            "Bob,bob@example.com\r\n"
            "\r\n"
            '"Cat\r\nand Co",cat@example.com,3\r\n'
            "Dan,dan@example.com,4,extra\r\n").encode()
    with client(emu) as c:
        batch = created(c, files.put("onboard.csv", data), CSV_TYPE)
        final = poll_until_final(c, batch)[-1]
    assert (final["status"], final["count"], final["errorCount"]) == ("complete", "4", "2")
    assert final["errors"] == [
        {"index": "2", "message": "the row has 2 columns; the header has 3"},
        {"index": "6", "message": "the row has 4 columns; the header has 3"},
    ]


def test_counts_are_exact_and_a_long_line_is_not_held(emu: CentrapayEmulator,
                                                      files: Files) -> None:
    """errorCount counts every bad line though only ERRORS_KEPT are listed; a line
    longer than MAX_LINE is one error and the lines after it are read as usual."""
    bad = ERRORS_KEPT + 7
    data = (b"[]\n" * bad + b'{"externalId": "' + b"x" * (MAX_LINE + 10) + b'"}\n'
            + b'{"externalId": "after"}\n')
    with client(emu) as c:
        final = poll_until_final(c, created(c, files.put("many.jsonl", data)))[-1]
    assert final["count"] == str(bad + 2) and final["errorCount"] == str(bad + 1)
    assert len(final["errors"]) == ERRORS_KEPT
    assert final["errors"][-1]["index"] == str(ERRORS_KEPT - 1)
    [fetched] = events(emu, "fetched")
    assert (fetched["count"], fetched["errorCount"], fetched["bytes"]) == (
        bad + 2, bad + 1, len(data))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_file_that_cannot_be_read_ends_in_error(
        emu: CentrapayEmulator, files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    """A URL answering 404, a refused connection, a file that is not UTF-8, a CSV with
    no header: created → error, one error naming the cause, an ``error`` journal line;
    the signed query shows nowhere."""
    cases = {
        "404": (f"{files.base}/missing.jsonl?{SIGNED}", JSONL_TYPE, "HTTP 404"),
        "refused": (f"http://127.0.0.1:{_closed_port()}/x.jsonl?{SIGNED}", JSONL_TYPE,
                    "ConnectError"),
        "latin-1": (files.put("latin.jsonl", '{"externalId": "Müller"}\n'.encode("latin-1")),
                    JSONL_TYPE, "not UTF-8"),
        "empty csv": (files.put("empty.csv", b"\n\n"), CSV_TYPE, "no header row"),
    }
    with client(emu) as c:
        batches = {case: created(c, url, kind) for case, (url, kind, _) in cases.items()}
        for case, batch in batches.items():
            seen = poll_until_final(c, batch)
            assert {s["status"] for s in seen} <= {"created", "error"}, case
            final = seen[-1]
            assert (final["status"], final["count"], final["errorCount"]) == ("error", "0", "1")
            [error] = final["errors"]
            assert cases[case][2] in error["message"] and "index" not in error, case
            assert "f00dfeedsecret" not in error["message"]
    errors = {e["batch"]: e for e in events(emu, "error")}
    assert set(errors) == set(batches.values())
    assert errors[batches["latin-1"]]["sha256"] == sha((files.folder / "latin.jsonl").read_bytes())
    assert events(emu, "fetched", "complete") == []
    assert "f00dfeedsecret" not in capsys.readouterr().err
    assert "f00dfeedsecret" not in emu.journal_path.read_text()


def test_an_s3_pre_signed_url_is_fetched(emu: CentrapayEmulator,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A real S3-compatible server on loopback (moto's server mode): the emulator fetches
    the object by its pre-signed URL and loads it; a pre-signed URL of a missing object
    ends in error. The signature shows in no journal line or log."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="test-key-id", aws_secret_access_key="test-secret",
                          config=Config(signature_version="s3v4"))
        s3.create_bucket(Bucket="loads")
        s3.put_object(Bucket="loads", Key="batches/b1/tickets.jsonl", Body=JSONL)
        signed, missing = (
            s3.generate_presigned_url("get_object", Params={"Bucket": "loads", "Key": key},
                                      ExpiresIn=600)
            for key in ("batches/b1/tickets.jsonl", "batches/b2/gone.jsonl"))
        signature = signed.split("X-Amz-Signature=")[1].split("&")[0]
        with client(emu) as c:
            final = poll_until_final(c, created(c, signed))[-1]
            gone = poll_until_final(c, created(c, missing))[-1]
    finally:
        server.stop()
    assert (final["status"], final["count"], final["errorCount"]) == ("complete", "6", "4")
    assert gone["status"] == "error" and "HTTP 404" in gone["errors"][0]["message"]
    [fetched] = events(emu, "fetched")
    assert fetched["sha256"] == sha(JSONL)
    urls = [e["url"] for e in events(emu, "create")]
    assert urls == [f"http://{host}:{port}/loads/batches/b1/tickets.jsonl",
                    f"http://{host}:{port}/loads/batches/b2/gone.jsonl"]
    assert signature not in emu.journal_path.read_text()
    assert signature not in capsys.readouterr().err


def test_steps_are_paced_by_step_seconds(start: Any, files: Files) -> None:
    """With step_seconds, reads in quick succession move a batch at most one step; the
    next step shows once the time has passed."""
    emu = start(step_seconds=0.3)
    with client(emu) as c:
        batch = created(c, files.put("a.jsonl", b'{"externalId": "1"}\n'))
        time.sleep(0.35)
        assert c.get(f"/api/batches/{batch}").json()["status"] == "copied"
        assert c.get(f"/api/batches/{batch}").json()["status"] == "copied"
        time.sleep(0.35)
        assert c.get(f"/api/batches/{batch}").json()["status"] == "chunked"


def test_the_key_is_required(emu: CentrapayEmulator, files: Files,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """Without the right X-Api-Key every call is 401 and nothing is created or fetched;
    the key is not echoed or logged. Without a configured key no header is needed."""
    url = files.put("a.jsonl", b'{"externalId": "1"}\n')
    with httpx.Client(base_url=emu.url) as c:
        for headers in ({}, {"X-Api-Key": "wrong"}, {"Authorization": f"Bearer {KEY}"}):
            r = c.post("/api/batches", headers=headers,
                       json={"type": JSONL_TYPE, "url": url, "accountId": ACCOUNT})
            assert r.status_code == 401 and "X-Api-Key" in r.json()["message"]
            assert KEY not in r.text
            assert c.get("/api/batches/abc", headers=headers).status_code == 401
    assert emu.read_journal() == [] and files.requested == []
    assert KEY not in capsys.readouterr().err


def test_no_key_configured(start: Any, files: Files) -> None:
    emu = start(api_key=None)
    with httpx.Client(base_url=emu.url) as c:
        assert create(c, files.put("a.jsonl", b"")).status_code == 200


def test_refusals(emu: CentrapayEmulator, files: Files) -> None:
    """A body that is no JSON object, a missing field, an unknown type, a URL that is
    not http(s) or a test that is not a boolean: 400 with a message, nothing created.
    An unknown batch id is 403 (Centrapay's convention); a wrong method 405."""
    url = files.put("a.jsonl", b"")
    good = {"type": JSONL_TYPE, "url": url, "accountId": ACCOUNT}
    with client(emu) as c:
        assert c.post("/api/batches", content=b"not json").status_code == 400
        assert c.post("/api/batches", json=[good]).status_code == 400
        for field in ("type", "url", "accountId"):
            r = c.post("/api/batches", json={k: v for k, v in good.items() if k != field})
            assert r.status_code == 400 and field in r.json()["message"]
        r = c.post("/api/batches", json={**good, "type": "gift-cards"})
        assert r.status_code == 400 and "business-onboard" in r.json()["message"]
        r = c.post("/api/batches", json={**good, "url": "ftp://example.com/a.jsonl"})
        assert r.status_code == 400 and "http" in r.json()["message"]
        assert c.post("/api/batches", json={**good, "test": "yes"}).status_code == 400
        r = c.get("/api/batches/C4QnjXvj8At6SMsEN4LRi9")
        assert r.status_code == 403 and r.json() == {"message": "Forbidden"}
        assert c.get("/api/batches").status_code == 405
        assert c.delete("/api/batches/abc").status_code == 405
    assert emu.read_journal() == [] and files.requested == []


def test_the_same_content_loaded_twice_is_a_violation(start: Any, files: Files) -> None:
    """Two batches that both fetched the same content: a ``loaded twice`` violation. A
    batch that could not fetch it (bad-url) loaded nothing: no violation. A restart on
    the same data folder still knows what was loaded."""
    emu = start()
    data = b'{"externalId": "same"}\n'
    url = files.put("same.jsonl", data)
    with client(emu) as c:
        emu.set_faults("bad-url")
        failed = created(c, url)
        emu.set_faults("")
        first = created(c, url)
        poll_until_final(c, failed)
        poll_until_final(c, first)
        assert emu.violations() == []
        second = created(c, files.put("copy.jsonl", data))
        poll_until_final(c, second)
        created(c, files.put("other.jsonl", b'{"externalId": "other"}\n'))
    [violation] = emu.violations()
    assert (violation["kind"], violation["batch"], violation["earlier_batch"],
            violation["sha256"]) == ("loaded twice", second, first, sha(data))
    emu.stop()
    again = start_centrapay(api_key=KEY, data_dir=emu.data_dir, step_seconds=0)
    try:
        with client(again) as c:
            assert c.get(f"/api/batches/{first}").status_code == 403  # state is in memory
            third = created(c, url)
            poll_until_final(c, third)
        assert [(v["batch"], v["earlier_batch"]) for v in again.violations()] == [
            (second, first), (third, first)]
    finally:
        again.stop()


def test_the_rate_limit(start: Any, files: Files) -> None:
    """More than rate_limit calls in a minute: 429 with Retry-After (whole seconds, at
    most 60), journaled; refused calls and calls without the key do not count."""
    emu = start(rate_limit=5)
    url = files.put("a.jsonl", b"")
    with client(emu) as c:
        httpx.get(f"{emu.url}/api/batches/x")  # no key: 401, not counted
        batch = created(c, url)
        for _ in range(4):
            assert c.get(f"/api/batches/{batch}").status_code == 200
        for _ in range(3):
            r = c.get(f"/api/batches/{batch}")
            assert r.status_code == 429, r.text
            assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert create(c, url).status_code == 429
    limited = events(emu, "rate_limited")
    assert [e["route"] for e in limited] == ["get_batch"] * 3 + ["create_batch"]
    assert len(events(emu, "create")) == 1


def test_no_rate_limit(start: Any, files: Files) -> None:
    emu = start(rate_limit=0)
    with client(emu) as c:
        batch = created(c, files.put("a.jsonl", b""))
        for _ in range(250):
            assert c.get(f"/api/batches/{batch}").status_code == 200


# --- faults -------------------------------------------------------------------------


def test_fault_500_before_creates_nothing(emu: CentrapayEmulator, files: Files) -> None:
    """500-before: no batch, no fetch; create_fault names the file's URL (no query)."""
    url = files.put("a.jsonl", b'{"externalId": "1"}\n')
    with client(emu) as c:
        emu.set_faults("500-before")
        r = create(c, url)
        assert r.status_code == 500 and "message" in r.json()
        emu.set_faults("")
    [fault] = emu.read_journal()
    assert (fault["event"], fault["kind"], fault["created"], fault["batch"], fault["url"]) == (
        "create_fault", "500-before", False, None, f"{files.base}/a.jsonl")
    time.sleep(0.2)
    assert files.requested == []


def test_fault_500_after_creates_and_loads(emu: CentrapayEmulator, files: Files) -> None:
    """500-after: the batch IS created and its file loaded, though the answer was 500;
    create_fault says so and names the batch."""
    url = files.put("a.jsonl", b'{"externalId": "1"}\n')
    with client(emu) as c:
        emu.set_faults("500-after")
        assert create(c, url).status_code == 500
        emu.set_faults("")
        [create_line] = events(emu, "create")
        assert poll_until_final(c, create_line["batch"])[-1]["status"] == "complete"
    [fault] = events(emu, "create_fault")
    assert (fault["kind"], fault["created"], fault["batch"], fault["url"]) == (
        "500-after", True, create_line["batch"], f"{files.base}/a.jsonl")
    assert [e["event"] for e in emu.read_journal()] == ["create", "create_fault", "fetched",
                                                        "complete"]


def test_fault_429_says_when_to_retry(start: Any, files: Files) -> None:
    emu = start(faults="429")
    url = files.put("a.jsonl", b"")
    with client(emu) as c:
        r = create(c, url)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert c.get("/api/batches/abc").status_code == 429
        emu.set_faults("")
        assert create(c, url).status_code == 200
    [fault] = events(emu, "create_fault")
    assert (fault["kind"], fault["created"], fault["url"]) == ("429", False,
                                                               f"{files.base}/a.jsonl")


def test_fault_drop_before_closes_and_creates_nothing(emu: CentrapayEmulator,
                                                      files: Files) -> None:
    url = files.put("a.jsonl", b"")
    with client(emu) as c:
        emu.set_faults("drop-before")
        with pytest.raises(httpx.TransportError):
            create(c, url)
        emu.set_faults("")
    [fault] = emu.read_journal()
    assert (fault["kind"], fault["created"], fault["url"]) == ("drop-before", False,
                                                               f"{files.base}/a.jsonl")


def test_fault_drop_creates_then_closes(emu: CentrapayEmulator, files: Files) -> None:
    """drop: the batch is created and loaded; the client sees the connection close."""
    url = files.put("a.jsonl", b'{"externalId": "1"}\n')
    with client(emu) as c:
        emu.set_faults("drop")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            create(c, url)
        emu.set_faults("")
        [create_line] = events(emu, "create")
        poll_until_final(c, create_line["batch"])
    [fault] = events(emu, "create_fault")
    assert (fault["kind"], fault["created"], fault["batch"]) == ("drop", True,
                                                                 create_line["batch"])


def test_fault_slow_answers_late(start: Any, files: Files) -> None:
    """slow: the create is done and answered late; a client that gave up lost the id."""
    emu = start(faults="slow", slow_seconds=0.5)
    url = files.put("a.jsonl", b"")
    with httpx.Client(base_url=emu.url, headers=AUTH, timeout=0.2) as c, \
            pytest.raises(httpx.ReadTimeout):
        create(c, url)
    [create_line, fault] = events(emu, "create", "create_fault")
    assert (fault["kind"], fault["created"], fault["batch"]) == ("slow", True,
                                                                 create_line["batch"])
    with client(emu) as c:
        began = time.monotonic()
        assert create(c, url).status_code == 200
        assert time.monotonic() - began >= 0.5


def test_fault_bad_url_fails_the_fetch(start: Any, files: Files) -> None:
    """bad-url: the create succeeds, the file is never fetched, the batch ends in error."""
    emu = start(faults="bad-url")
    with client(emu) as c:
        batch = created(c, files.put("a.jsonl", b'{"externalId": "1"}\n'))
        final = poll_until_final(c, batch)[-1]
    assert final["status"] == "error" and "bad-url" in final["errors"][0]["message"]
    assert files.requested == []
    [create_line, error] = emu.read_journal()
    assert create_line["bad_url"] is True and error["event"] == "error"


def test_fault_late_403_hides_a_new_batch_for_a_while(start: Any, files: Files) -> None:
    """late-403: a batch whose create succeeded answers 403 for late_seconds, then shows
    as usual (it was fetched meanwhile)."""
    emu = start(faults="late-403", late_seconds=0.6)
    with client(emu) as c:
        began = time.monotonic()
        batch = created(c, files.put("a.jsonl", b'{"externalId": "1"}\n'))
        r = c.get(f"/api/batches/{batch}")
        assert r.status_code == 403 and r.json() == {"message": "Forbidden"}
        while c.get(f"/api/batches/{batch}").status_code == 403:
            time.sleep(0.05)
        assert time.monotonic() - began >= 0.6
        assert poll_until_final(c, batch)[-1]["status"] == "complete"
    [create_line] = events(emu, "create")
    assert create_line["late_403_seconds"] == 0.6


def test_fault_quirky_says_total_count(start: Any, files: Files) -> None:
    """quirky: ``totalCount`` (the model's name) instead of ``count``, still a string,
    and extra fields; the rest as usual."""
    emu = start(faults="quirky")
    with client(emu) as c:
        answer = create(c, files.put("a.jsonl", b'{"externalId": "1"}\n[]\n')).json()
        assert "count" not in answer and answer["totalCount"] == "0"
        assert answer["accountId"] == ACCOUNT and "emulatorNote" in answer
        seen = []
        while not seen or seen[-1]["status"] != "complete":
            seen.append(c.get(f"/api/batches/{answer['id']}").json())
    assert (seen[-1]["totalCount"], seen[-1]["errorCount"]) == ("2", "1")
    assert emu.injected_faults()["quirky"] == 1 + len(seen)


def test_every_fault_at_once(start: Any, files: Files) -> None:
    """All kinds together with a seed: every create either answers a batch or journals a
    create_fault saying whether one was made; every batch made reaches a final status."""
    emu = start(faults="500-before=0.1,500-after=0.1,drop-before=0.05,drop=0.05,429=0.1,"
                       "slow=0.05,bad-url=0.2,late-403=0.2,quirky=0.3",
                seed=7, slow_seconds=0.1, late_seconds=0.3)
    answered = set()
    with client(emu) as c:
        for i in range(30):
            try:
                r = create(c, files.put(f"f{i}.jsonl", b'{"externalId": "%d"}\n' % i))
            except httpx.TransportError:
                continue
            if r.status_code == 200:
                answered.add(r.json()["id"])
        emu.set_faults("")
        made = {e["batch"] for e in events(emu, "create")}
        for batch in made:
            while c.get(f"/api/batches/{batch}").status_code == 403:  # late-403
                time.sleep(0.05)
            assert poll_until_final(c, batch)[-1]["status"] in ("complete", "error")
    faults = events(emu, "create_fault")
    lost = {f["batch"] for f in faults if f["created"] and f["kind"] != "slow"}
    assert answered | lost == made and not answered & lost
    assert len(events(emu, "fetched")) + len(events(emu, "error")) == len(made)
    assert emu.violations() == []
    assert set(emu.injected_faults()) >= {"500-before", "500-after", "bad-url", "quirky"}


def test_fault_spec(start: Any) -> None:
    """The other emulators' spec syntax; their own kinds are unknown here, and
    run_centrapay turns a bad spec or argument into exit 2."""
    emu = start(faults="500-before=0.5, late-403=0.1,bad-url,quirky=0")
    assert emu.injected_faults() == {}
    for spec, message in [("truncate", "unknown fault kind 'truncate'"),
                          ("late-txid", "unknown fault kind 'late-txid'"),
                          ("bad-url=2", "between 0 and 1")]:
        with pytest.raises(ValueError, match=message):
            start_centrapay(faults=spec)
        assert run_centrapay(faults=spec) == 2
    with pytest.raises(ValueError, match="rate_limit"):
        start_centrapay(rate_limit=-1)
    assert run_centrapay(port=70000) == 2


# --- command line and memory ----------------------------------------------------------


def test_the_parser() -> None:
    """`folderseal emulate centrapay` takes the common emulator options and its own."""
    args = cli.parser().parse_args(["emulate", "centrapay"])
    assert (args.host, args.port, args.api_key, args.faults, args.data, args.seed) == (
        "127.0.0.1", 8080, None, "", None, None)
    assert (args.step_seconds, args.late_seconds, args.rate_limit, args.workers) == (
        0.2, 2.0, 200, 4)
    args = cli.parser().parse_args(
        ["emulate", "centrapay", "--host", "::1", "--port", "0", "--api-key", "k",
         "--faults", "bad-url=0.1", "--data", "/tmp/d", "--seed", "3", "--step-seconds", "0",
         "--late-seconds", "1.5", "--slow-seconds", "1", "--rate-limit", "50",
         "--workers", "2"])
    assert (args.host, args.port, args.api_key, args.faults, args.data, args.seed) == (
        "::1", 0, "k", "bad-url=0.1", Path("/tmp/d"), 3)
    assert (args.step_seconds, args.late_seconds, args.slow_seconds, args.rate_limit,
            args.workers) == (0.0, 1.5, 1.0, 50, 2)
    assert args.handler is emulate.emulate_centrapay


def test_the_emulator_command(tmp_path: Path, files: Files) -> None:
    """`folderseal emulate centrapay --port 0` says where it listens, requires its key,
    loads a file, keeps its --data folder and stops with exit 0 on SIGTERM; a bad spec
    exits 2."""
    process = subprocess.Popen(
        [sys.executable, "-m", "folderseal", "emulate", "centrapay", "--port", "0",
         "--api-key", KEY, "--data", str(tmp_path / "emu"), "--step-seconds", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = emulator_listening(process)["url"]
        body = {"type": JSONL_TYPE, "url": files.put("a.jsonl", b'{"externalId": "1"}\n'),
                "accountId": ACCOUNT}
        assert httpx.post(f"{url}/api/batches", json=body).status_code == 401
        with httpx.Client(base_url=url, headers=AUTH) as c:
            batch = created(c, body["url"])
            assert poll_until_final(c, batch)[-1]["status"] == "complete"
    finally:
        process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "f00dfeedsecret" not in err and KEY not in err
    journal = (tmp_path / "emu" / "journal.jsonl").read_text()
    assert '"complete"' in journal and "f00dfeedsecret" not in journal
    bad = subprocess.run([sys.executable, "-m", "folderseal", "emulate", "centrapay",
                          "--faults", "late-txid"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown fault kind" in bad.stderr


@pytest.mark.slow
def test_a_100mb_file_is_fetched_in_flat_memory(tmp_path: Path, files: Files) -> None:
    """The emulator fetches and reports on a 100 MB JSONL file (with a 20 MB line in it)
    with its peak RSS growing under 50 MB."""
    big = files.folder / "big.jsonl"
    record = b'{"externalId": "%08d", "pad": "' + b"p" * 90 + b'"}\n'
    digest, records = hashlib.sha256(), 0
    with big.open("wb") as out:
        for block in range(100):
            chunk = b"".join(record % (block * 8000 + i) for i in range(8000))
            if block == 50:
                chunk += b'{"externalId": "long", "pad": "' + b"q" * (20 << 20) + b'"}\n'
            out.write(chunk)
            digest.update(chunk)
            records += 8000 + (block == 50)
    process = subprocess.Popen(
        [sys.executable, "-m", "folderseal", "emulate", "centrapay", "--port", "0",
         "--data", str(tmp_path / "emu"), "--step-seconds", "0",
         "--rate-limit", "100000"],  # status is read every 20 ms however long the fetch
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = emulator_listening(process)["url"]
        with httpx.Client(base_url=url, timeout=60) as c:
            warm = created(c, files.put("warm.jsonl", b'{"externalId": "w"}\n'))
            poll_until_final(c, warm)
            baseline = proc_memory(process.pid, "VmRSS")
            batch = created(c, f"{files.base}/big.jsonl")
            final = poll_until_final(c, batch, reads=3000)[-1]
            growth = proc_memory(process.pid, "VmHWM") - baseline
        assert (final["status"], final["count"], final["errorCount"]) == (
            "complete", str(records), "1")
        fetched = [json.loads(line) for line in (tmp_path / "emu" / "journal.jsonl")
                   .read_text().splitlines() if '"fetched"' in line]
        assert fetched[-1]["sha256"] == digest.hexdigest()
        assert growth < 50 * 1024 * 1024, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert os.path.getsize(big) > 100 * 1024 * 1024
