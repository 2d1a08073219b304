"""The SEAL emulator: the documented API and its quirks, the journal, and every fault kind.

Each test runs a real emulator in-process (``start_seal``) and talks to it with httpx;
the memory test runs ``run_seal`` in a subprocess so the server's own peak RSS can be
read. Signatures are checked with ``pdfsig`` and ``openssl cms``, not with folderseal.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from folderseal.providers.emulation.faults import Faults, parse_faults
from folderseal.providers.seal.emulator import EmulatorHandle, run_seal, start_seal
from folderseal.signing import make_trial_seal
from tests.helpers import proc_memory
from tests.pdfs import make_pdf

STEP = 0.02  # seconds per status step: fast, but still observable


@pytest.fixture(scope="module")
def seal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trial seal for the module, copied into each emulator's data dir (saves keygen)."""
    directory = tmp_path_factory.mktemp("emulator-seal") / "seal"
    make_trial_seal(directory)
    return directory


@pytest.fixture
def start(tmp_path: Path, seal_dir: Path) -> Iterator[Any]:
    """A factory starting emulators in tmp_path; all are stopped after the test."""
    handles: list[EmulatorHandle] = []

    def _start(**kwargs: Any) -> EmulatorHandle:
        data = tmp_path / f"data{len(handles)}"
        shutil.copytree(seal_dir, data / "seal")
        kwargs.setdefault("step_delay", STEP)
        handle = start_seal(data_dir=data, **kwargs)
        handles.append(handle)
        return handle

    yield _start
    for handle in handles:
        handle.stop()


@pytest.fixture
def emu(start: Any) -> EmulatorHandle:
    """An emulator without faults or API key."""
    handle: EmulatorHandle = start()
    return handle


def client(handle: EmulatorHandle, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=handle.url, timeout=30, **kwargs)


def zip_of(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buf.getvalue()


def create(c: httpx.Client) -> int:
    r = c.post("/api/CreateBatch/7")
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def upload(c: httpx.Client, batch: int, files: list[tuple[str, bytes]]) -> httpx.Response:
    return c.post(
        f"/api/upload/{batch}",
        content=zip_of(files),
        headers={"Content-Type": "application/octet-stream"},
    )


def wait_for(c: httpx.Client, batch: int, wanted: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = c.get(f"/api/BatchStatus/{batch}").json()
        if body["status"] == wanted or time.monotonic() > deadline:
            assert body["status"] == wanted, body
            return body
        time.sleep(STEP / 2)


def signed_batch(c: httpx.Client, files: list[tuple[str, bytes]]) -> tuple[int, dict[str, Any]]:
    batch = create(c)
    assert upload(c, batch, files).status_code == 202
    assert c.post("/api/AcceptBatch", params={"batchId": batch}).status_code == 202
    return batch, wait_for(c, batch, "CLOSED")


def package(c: httpx.Client, batch: int) -> zipfile.ZipFile:
    r = c.get(f"/api/batchfile/{batch}")
    assert r.status_code == 200, r.text
    return zipfile.ZipFile(io.BytesIO(r.content))


def test_lifecycle_signs_a_pdf_and_a_text_file(emu: EmulatorHandle, tmp_path: Path) -> None:
    """A PDF comes back PAdES-signed and a .txt unchanged with a detached .p7s, both valid."""
    pdf, text = make_pdf(), b"hello seal\n"
    with client(emu) as c:
        r = c.post("/api/CreateBatch/7")
        assert r.status_code == 201
        created = r.json()
        assert created["id"] == "2123" and created["status"] == "0"
        assert set(created) == {"id", "providerSettingsId", "creationDate", "status"}
        status = c.get("/api/BatchStatus/2123").json()
        assert status["status"] == "NEW" and status["documents"] == []

        r = upload(c, 2123, [("a.pdf", pdf), ("b.txt", text)])
        assert r.status_code == 202
        assert r.json()["name"] == "a.pdf" and r.json()["id"] == "1"
        assert r.json()["batchId"] == 2123 and r.json()["signed"] == "false"
        assert c.get("/api/BatchStatus/2123").json()["status"] == "UPLOADED"

        r = c.post("/api/AcceptBatch", params={"batchId": "2123"})
        assert r.status_code == 202
        assert r.json()["id"] == 2123 and r.json()["status"] == 0
        closed = wait_for(c, 2123, "CLOSED")
        assert closed["documents"] == [
            {"id": "1", "signed": "true", "fileName": "a.pdf", "signingResult_Success": "true"},
            {"id": "2", "signed": "true", "fileName": "b.txt", "signingResult_Success": "true"},
        ]
        archive = package(c, 2123)
        assert archive.namelist() == ["a.pdf", "b.txt", "b.txt.p7s"]
        out = tmp_path / "out"
        out.mkdir()
        for name in archive.namelist():
            (out / name).write_bytes(archive.read(name))
        assert (out / "b.txt").read_bytes() == text
        assert (out / "a.pdf").read_bytes().startswith(pdf)  # incremental update

        check = subprocess.run(["pdfsig", str(out / "a.pdf")], capture_output=True, text=True)
        assert "Signature is Valid" in check.stdout, check.stdout + check.stderr
        verify = subprocess.run(
            ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-noverify",
             "-in", str(out / "b.txt.p7s"), "-content", str(out / "b.txt"), "-out", "/dev/null"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stderr

        r = c.delete("/api/BatchDeleteCache/2123")
        assert r.status_code == 200 and r.json()["status"] == "DELETED"
        assert len(r.json()["documents"]) == 2
        assert c.get("/api/BatchStatus/2123").json()["status"] == "DELETED"
        assert c.get("/api/batchfile/2123").status_code == 404
        assert not (emu.data_dir / "batches" / "2123").exists()


@pytest.mark.parametrize("form", ["query", "json-number", "json-string", "path"])
def test_accept_batch_takes_the_id_in_each_form(emu: EmulatorHandle, form: str) -> None:
    """AcceptBatch finds batchId in the query, a JSON body (number or string) or the path."""
    with client(emu) as c:
        batch = create(c)
        assert upload(c, batch, [("a.txt", b"x")]).status_code == 202
        if form == "query":
            r = c.post("/api/AcceptBatch", params={"batchId": batch})
        elif form == "json-number":
            r = c.post("/api/AcceptBatch", json={"batchId": batch})
        elif form == "json-string":
            r = c.post("/api/AcceptBatch", json={"batchId": str(batch)})
        else:
            r = c.post(f"/api/AcceptBatch/{batch}")
        assert r.status_code == 202, r.text
        assert r.json()["id"] == batch
        wait_for(c, batch, "CLOSED")
        assert c.post("/api/AcceptBatch").status_code == 400  # no id anywhere


def test_second_upload_duplicates_documents(emu: EmulatorHandle) -> None:
    """Uploading twice to one batch adds the files again, as the real server does."""
    with client(emu) as c:
        batch = create(c)
        files = [("a.txt", b"one"), ("b.txt", b"two")]
        assert upload(c, batch, files).json()["id"] == "1"
        assert upload(c, batch, files).json()["id"] == "3"
        docs = c.get(f"/api/BatchStatus/{batch}").json()["documents"]
        assert [(d["id"], d["fileName"]) for d in docs] == [
            ("1", "a.txt"), ("2", "b.txt"), ("3", "a.txt"), ("4", "b.txt"),
        ]  # fmt: skip
        c.post("/api/AcceptBatch", params={"batchId": batch})
        wait_for(c, batch, "CLOSED")
        assert package(c, batch).namelist().count("a.txt") == 2
    assert len(emu.read_journal()) == 4


def test_accept_needs_an_uploaded_batch(emu: EmulatorHandle) -> None:
    """Accepting a NEW or already accepted batch is 409 with a JSON error; unknown is 404."""
    with client(emu) as c:
        batch = create(c)
        r = c.post("/api/AcceptBatch", params={"batchId": batch})
        assert r.status_code == 409 and "NEW" in r.json()["title"]
        upload(c, batch, [("a.txt", b"x")])
        assert c.post("/api/AcceptBatch", params={"batchId": batch}).status_code == 202
        r = c.post("/api/AcceptBatch", params={"batchId": batch})
        assert r.status_code == 409 and r.json()["status"] == 409
        assert upload(c, batch, [("b.txt", b"y")]).status_code == 409
        assert c.post("/api/AcceptBatch", params={"batchId": 99999}).status_code == 404


def test_journal_records_each_document_once(emu: EmulatorHandle) -> None:
    """The journal has one line per document, with the uploaded bytes' SHA-256."""
    files = [("a.pdf", make_pdf()), ("b.txt", b"bee"), ("c.bin", bytes(range(256)))]
    with client(emu) as c:
        first, _ = signed_batch(c, files)
        second, _ = signed_batch(c, files[1:2])
        c.get(f"/api/BatchStatus/{first}")  # status calls never sign again
    entries = emu.read_journal()
    assert [(e["batch"], e["document"], e["name"]) for e in entries] == [
        (first, "1", "a.pdf"), (first, "2", "b.txt"), (first, "3", "c.bin"), (second, "1", "b.txt"),
    ]  # fmt: skip
    expected = [hashlib.sha256(data).hexdigest() for _, data in [*files, files[1]]]
    assert [e["sha256"] for e in entries] == expected
    assert all(e["signed"] is True and isinstance(e["at"], float) for e in entries)


def test_broken_pdf_is_not_signed(emu: EmulatorHandle) -> None:
    """A damaged PDF gets signingResult_Success "false" and stays out of the package."""
    with client(emu) as c:
        batch, status = signed_batch(c, [("bad.pdf", b"%PDF-1.7\ngarbage"), ("ok.txt", b"x")])
        assert [d["signingResult_Success"] for d in status["documents"]] == ["false", "true"]
        assert package(c, batch).namelist() == ["ok.txt", "ok.txt.p7s"]
    assert [e["signed"] for e in emu.read_journal()] == [False, True]


def test_api_key_is_required(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """With a key, requests need API-KEY or Basic; the 401 body and the log never show it."""
    key = "s3cret-key-123"
    emu = start(api_key=key)
    with client(emu) as c:
        r = c.get("/api/BatchStatus/2123")
        assert r.status_code == 401 and key not in r.text and r.json()["status"] == 401
        assert c.post("/api/CreateBatch/1", headers={"API-KEY": "wrong"}).status_code == 401
        assert c.post("/api/CreateBatch/1", headers={"API-KEY": key}).status_code == 201
        assert c.get("/api/BatchStatus/2123", auth=("any", key)).status_code == 200
        assert c.get("/api/BatchStatus/2123", auth=("any", "nope")).status_code == 401
        r = c.get("/api/BatchStatus/2123", params={"apiKey": key}, headers={"API-KEY": key})
        assert r.status_code == 200
    assert key not in capsys.readouterr().err


def test_bad_requests_are_refused(emu: EmulatorHandle) -> None:
    """Invalid ids are 400, unknown batches 404, and non-flat or non-ZIP uploads 400."""
    with client(emu) as c:
        for bad in ("0", "-1", "abc", "99999999999"):
            assert c.post(f"/api/CreateBatch/{bad}").status_code == 400
        assert c.get("/api/BatchStatus/4242").status_code == 404
        assert c.get("/api/batchfile/4242").status_code == 404
        assert c.delete("/api/BatchDeleteCache/4242").status_code == 404
        assert upload(c, 4242, [("a.txt", b"x")]).status_code == 404
        assert c.get("/api/nothing").status_code == 404
        assert c.get("/api/CreateBatch/1").status_code == 405
        batch = create(c)
        for files in ([("sub/a.txt", b"x")], [("dir/", b"")], [("../a.txt", b"x")]):
            r = upload(c, batch, files)
            assert r.status_code == 400 and "title" in r.json(), files
        with pytest.warns(UserWarning, match="Duplicate name"):
            twice = zip_of([("a.txt", b"1"), ("a.txt", b"2")])
        for body in (twice, b"not a zip", b""):
            assert c.post(f"/api/upload/{batch}", content=body).status_code == 400
        assert c.get(f"/api/batchfile/{batch}").status_code == 404  # not CLOSED
        assert c.get(f"/api/BatchStatus/{batch}").json()["documents"] == []


def test_chunked_upload_is_accepted(emu: EmulatorHandle) -> None:
    """An upload streamed with chunked transfer encoding works like one with a length."""
    data = zip_of([("a.txt", b"streamed")])

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 7):
            yield data[i : i + 7]

    with client(emu) as c:
        batch = create(c)
        r = c.post(f"/api/upload/{batch}", content=pieces())
        assert r.status_code == 202 and r.json()["name"] == "a.txt"
        assert c.get(f"/api/BatchStatus/{batch}").json()["status"] == "UPLOADED"


def test_fault_500_before_does_nothing(emu: EmulatorHandle) -> None:
    """500-before answers 500 and leaves the batch as it was."""
    with client(emu) as c:
        batch = create(c)
        upload(c, batch, [("a.txt", b"x")])
        emu.set_faults("500-before")
        assert c.post("/api/AcceptBatch", params={"batchId": batch}).status_code == 500
        assert c.post("/api/CreateBatch/1").status_code == 500
        emu.set_faults("")
        time.sleep(5 * STEP)
        assert c.get(f"/api/BatchStatus/{batch}").json()["status"] == "UPLOADED"
        assert create(c) == batch + 1  # the refused create made no batch


def test_fault_500_after_does_the_work(emu: EmulatorHandle) -> None:
    """500-after answers 500 although the batch was accepted and gets signed."""
    with client(emu) as c:
        batch = create(c)
        upload(c, batch, [("a.txt", b"x")])
        emu.set_faults("500-after")
        assert c.post("/api/AcceptBatch", params={"batchId": batch}).status_code == 500
        emu.set_faults("")
        wait_for(c, batch, "CLOSED")
    assert len(emu.read_journal()) == 1


def test_fault_429_says_when_to_retry(start: Any) -> None:
    """429 comes with Retry-After: 1 and creates nothing."""
    emu = start(faults="429")
    with client(emu) as c:
        r = c.post("/api/CreateBatch/1")
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert list((emu.data_dir / "batches").iterdir()) == []


def test_fault_drop_closes_without_answer(emu: EmulatorHandle) -> None:
    """drop does the work and closes the connection without a status line."""
    with client(emu) as c:
        batch = create(c)
        upload(c, batch, [("a.txt", b"x")])
        emu.set_faults("drop")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            c.post("/api/AcceptBatch", params={"batchId": batch})
        emu.set_faults("")
        wait_for(c, batch, "CLOSED")


def test_fault_slow_answers_late(start: Any) -> None:
    """slow waits slow_seconds before an otherwise normal answer."""
    emu = start(faults="slow", slow_seconds=0.4)
    with client(emu) as c:
        began = time.monotonic()
        r = c.post("/api/CreateBatch/1")
        assert r.status_code == 201
        assert time.monotonic() - began >= 0.4


def test_latency_delays_every_call_and_counts_no_fault(start: Any) -> None:
    """latency (a distant server, for benchmarks) makes each API call wait that long, the
    answer unchanged, and is no fault."""
    emu = start(latency=0.3)
    with client(emu) as c:
        for _ in range(2):
            began = time.monotonic()
            batch = create(c)
            assert time.monotonic() - began >= 0.3
            began = time.monotonic()
            assert c.get(f"/api/BatchStatus/{batch}").status_code == 200
            assert time.monotonic() - began >= 0.3
    assert emu.injected_faults() == {}


def test_fault_truncate_cuts_the_download(emu: EmulatorHandle) -> None:
    """truncate promises the whole package in Content-Length and sends only part of it."""
    with client(emu) as c:
        batch, _ = signed_batch(c, [("a.txt", b"x" * 10000)])
        full = len(c.get(f"/api/batchfile/{batch}").content)
        emu.set_faults("truncate")
        got = bytearray()
        with (
            pytest.raises(httpx.RemoteProtocolError),
            c.stream("GET", f"/api/batchfile/{batch}") as r,
        ):
            assert int(r.headers["Content-Length"]) == full
            for chunk in r.iter_raw():
                got += chunk
        assert 0 < len(got) < full


def test_fault_unsafe_entry_rotates_names(start: Any) -> None:
    """unsafe-entry adds ../, absolute, nested, control-character and duplicate names in turn."""
    emu = start(faults="unsafe-entry")
    extras = []
    with client(emu) as c:
        for _ in range(5):
            batch, _status = signed_batch(c, [("a.txt", b"x")])
            names = package(c, batch).namelist()
            assert names[:2] == ["a.txt", "a.txt.p7s"] and len(names) == 3
            extras.append(names[2])
    assert extras == ["../evil.txt", "/abs/evil.txt", "sub/dir.txt", "evil\x07bell.txt", "a.txt"]


def test_fault_fail_document(start: Any) -> None:
    """fail-document leaves documents unsigned and out of the package; the batch closes."""
    emu = start(faults="fail-document")
    with client(emu) as c:
        batch, status = signed_batch(c, [("a.pdf", make_pdf()), ("b.txt", b"x")])
        assert {d["signingResult_Success"] for d in status["documents"]} == {"false"}
        assert {d["signed"] for d in status["documents"]} == {"false"}
        assert package(c, batch).namelist() == []
    assert [e["signed"] for e in emu.read_journal()] == [False, False]


def test_fault_never_close(start: Any) -> None:
    """never-close leaves the batch IN_PROGRESS, with no package and nothing signed."""
    emu = start(faults="never-close")
    with client(emu) as c:
        batch = create(c)
        upload(c, batch, [("a.txt", b"x")])
        c.post("/api/AcceptBatch", params={"batchId": batch})
        wait_for(c, batch, "IN_PROGRESS")
        time.sleep(15 * STEP)
        assert c.get(f"/api/BatchStatus/{batch}").json()["status"] == "IN_PROGRESS"
        assert c.get(f"/api/batchfile/{batch}").status_code == 404
    assert emu.read_journal() == []


def test_fault_spec_parsing() -> None:
    """Specs parse to probabilities, a bare kind meaning 1; seeded draws repeat."""
    assert parse_faults("500-before=0.1, 429=0.2,drop") == {
        "500-before": 0.1, "429": 0.2, "drop": 1.0,
    }  # fmt: skip
    assert parse_faults("") == {}
    a, b = Faults("429=0.5,slow=0.5", seed=7), Faults("429=0.5,slow=0.5", seed=7)
    assert [a.for_request() for _ in range(20)] == [b.for_request() for _ in range(20)]


def test_faults_count_what_they_inject() -> None:
    """Only injected faults are counted: the first of the exclusive request kinds that
    hit, slow beside it, and each failed document of a batch."""
    faults = Faults("500-before=1,429=1,slow=1,fail-document=1,never-close=0", seed=1)
    for _ in range(3):
        assert faults.for_request().outcome == "429"
    faults.for_batch(4)
    assert faults.counts() == {"429": 3, "slow": 3, "fail-document": 4}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "unknown fault kind 'bogus'"),
        ("429=1.5", "between 0 and 1"),
        ("429=-0.1", "between 0 and 1"),
        ("429=nan", "between 0 and 1"),
        ("429=often", "not a number"),
        ("429,429=0.5", "given twice"),
    ],
)
def test_fault_spec_errors(spec: str, message: str) -> None:
    """A bad spec is a ValueError naming the problem; run_seal turns it into exit 2."""
    with pytest.raises(ValueError, match=message):
        parse_faults(spec)
    with pytest.raises(ValueError, match=message):
        start_seal(faults=spec)
    assert run_seal(faults=spec) == 2


@pytest.mark.slow
def test_200mb_upload_streams_in_flat_memory(tmp_path: Path, seal_dir: Path) -> None:
    """run_seal serves a 200 MB batch end to end with its peak RSS growing under 50 MB."""
    data = tmp_path / "data"
    shutil.copytree(seal_dir, data / "seal")
    big = tmp_path / "big.zip"
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(big, "w") as archive, archive.open("big.bin", "w") as entry:
        for _ in range(200):
            entry.write(chunk)
    code = (
        "import sys; from pathlib import Path; "
        "from folderseal.providers.seal.emulator import run_seal; "
        "sys.exit(run_seal('127.0.0.1', 0, None, '', Path(sys.argv[1]), None, 0.02, 0.0))"
    )
    with (tmp_path / "stderr.log").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(data)], stdout=subprocess.PIPE, stderr=err
        )
    try:
        assert proc.stdout is not None
        listening = json.loads(proc.stdout.readline())
        assert listening["event"] == "emulator.listening"
        assert listening["data"] == str(data)
        assert listening["journal"] == str(data / "journal.jsonl")
        with httpx.Client(base_url=listening["url"], timeout=120) as c:
            signed_batch(c, [("warm.txt", b"warm-up"), ("warm.pdf", make_pdf())])
            baseline = proc_memory(proc.pid, "VmRSS")
            batch = create(c)
            with big.open("rb") as body:
                r = c.post(f"/api/upload/{batch}", content=body)
            assert r.status_code == 202, r.text
            c.post("/api/AcceptBatch", params={"batchId": batch})
            wait_for(c, batch, "CLOSED", timeout=120)
            out = tmp_path / "package.zip"
            with c.stream("GET", f"/api/batchfile/{batch}") as r, out.open("wb") as dst:
                for piece in r.iter_raw():
                    dst.write(piece)
            peak = proc_memory(proc.pid, "VmHWM")
        with zipfile.ZipFile(out) as archive:
            assert archive.getinfo("big.bin").file_size == 200 * 1024 * 1024
        growth = peak - baseline
        assert growth < 50 * 1024 * 1024, f"server peak RSS grew by {growth / 2**20:.1f} MiB"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_restart_goes_on_numbering(start: Any, tmp_path: Path) -> None:
    """An emulator restarted on the same data dir never reuses a batch id it gave out."""
    first = start()
    with client(first) as c:
        signed_batch(c, [("a.txt", b"x")])
    first.stop()
    again = start_seal(data_dir=first.data_dir, step_delay=STEP)
    try:
        with client(again) as c:
            assert c.get("/api/BatchStatus/2123").status_code == 404  # state is not kept
            assert create(c) == 2124
    finally:
        again.stop()
