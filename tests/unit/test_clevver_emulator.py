"""The Clevver emulator: the documented API, its journal, its violations, every fault kind.

Each test runs a real emulator in-process (``start_clevver``) and talks to it over
loopback with httpx; the command-line and memory tests run it in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from folderseal.providers.clevver.emulator import ClevverEmulator, run_clevver, start_clevver
from tests.helpers import emulator_listening, emulators, proc_memory

KEY = "clevver-token-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
HEX64 = re.compile(r"[0-9a-f]{64}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """A factory starting emulators (key KEY) in tmp_path; all stopped after the test."""
    yield from emulators(start_clevver, tmp_path, api_key=KEY)


@pytest.fixture
def emu(start: Any) -> ClevverEmulator:
    handle: ClevverEmulator = start()
    return handle


def client(handle: ClevverEmulator) -> httpx.Client:
    return httpx.Client(base_url=handle.url, headers=AUTH, timeout=30)


def create(c: httpx.Client) -> str:
    r = c.post("/api/batches")
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


def attach(c: httpx.Client, batch: str, name: str, data: bytes) -> httpx.Response:
    return c.post(f"/api/batches/{batch}/files", files={"file": (name, data)})


def asset_of(c: httpx.Client, batch: str, name: str, data: bytes) -> dict[str, Any]:
    r = attach(c, batch, name, data)
    assert r.status_code == 200, r.text
    asset: dict[str, Any] = r.json()["data"]
    return asset


def poll_until(c: httpx.Client, batch: str, wanted: str, polls: int = 20) -> list[dict[str, Any]]:
    """Status reads until ``wanted``; every answer's data."""
    seen = []
    for _ in range(polls):
        seen.append(c.get(f"/api/batches/{batch}").json()["data"])
        if seen[-1]["status"] == wanted:
            return seen
    raise AssertionError(f"batch {batch} never became {wanted}: {seen}")


def test_lifecycle_stores_files_and_hands_out_receipts(emu: ClevverEmulator) -> None:
    """create → attach → start → progress over polls → delivered → receipts with txids,
    and a journal line for every asset, the start and the delivery."""
    files = {"a.pdf": b"%PDF-1.7 first", "b.txt": b"second file\n"}
    with client(emu) as c:
        r = c.post("/api/batches")
        assert r.status_code == 201
        created = r.json()
        assert created["status"] == "success"
        data = created["data"]
        assert UUID.fullmatch(data["id"]) and data["status"] == "created"
        assert data["progress"] == 0 and data["message"] == "Batch created successfully"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", data["created_at"])
        batch = data["id"]

        assets = {}
        for name, content in files.items():
            r = attach(c, batch, name, content)
            assert r.status_code == 200
            body = r.json()
            assert body["message"] == "Asset successfully uploaded"  # beside data, as documented
            asset = body["data"]
            assert UUID.fullmatch(asset["id"]) and asset["status"] == "created"
            assert asset["checksum"] == hashlib.sha256(content).hexdigest()
            assert asset["file_size"] == len(content) and asset["name"] == name
            assert asset["txid"] is None and asset["duplicate"] is False
            assert asset["file"]["url"].endswith(f"/{asset['id']}/{name}")
            assets[name] = asset
            stored = emu.data_dir / "assets" / asset["id"]
            assert stored.read_bytes() == content
        assert c.get(f"/api/batches/{batch}").json()["data"]["status"] == "created"
        assert c.get("/api/batches").json() == {"status": "success", "data": []}

        r = c.post(f"/api/batches/{batch}/start")
        assert r.status_code == 200
        assert r.json()["data"]["status"] == "processing"
        assert r.json()["data"]["message"] == "Job batch started"
        [active] = c.get("/api/batches").json()["data"]
        assert active["id"] == batch and active["status"] == "processing"
        receipt = c.get(f"/api/files/{assets['a.pdf']['id']}").json()["data"]
        assert receipt["txid"] is None and receipt["status"] == "processing"

        seen = poll_until(c, batch, "delivered")
        progress = [s["progress"] for s in seen]
        assert progress == [33.3, 66.7, 100]  # grows over three polls, fractional between
        assert c.get("/api/batches").json()["data"] == []

        txids = set()
        for name, asset in assets.items():
            receipt = c.get(f"/api/files/{asset['id']}").json()["data"]
            assert receipt["status"] == "cached" and HEX64.fullmatch(receipt["txid"])
            assert receipt["checksum"] == asset["checksum"] and receipt["name"] == name
            assert receipt["url"].startswith(emu.url) and receipt["txid"] in receipt["forever_url"]
            assert receipt["stored_on"]
            for link in (receipt["url"], receipt["forever_url"]):  # public: no token
                assert httpx.get(link).content == files[name]
            txids.add(receipt["txid"])
        assert len(txids) == 2

    journal = emu.read_journal()
    assert [e["event"] for e in journal] == ["asset", "asset", "start", "delivered"]
    assert [(e["batch"], e["asset"], e["checksum"], e["name"]) for e in journal[:2]] == [
        (batch, a["id"], a["checksum"], n) for n, a in assets.items()]
    assert [a["asset"] for a in journal[2]["assets"]] == [a["id"] for a in assets.values()]
    assert {a["txid"] for a in journal[3]["assets"]} == txids
    assert emu.violations() == []
    assert emu.request_counts() == {"create_batch": 1, "attach": 2, "batch_status": 4,
                                    "list_batches": 3, "start": 1, "receipt": 3}


def test_the_token_is_required(emu: ClevverEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    """Without Authorization: Bearer <key> every endpoint answers 401; the key is not
    echoed or logged."""
    with httpx.Client(base_url=emu.url) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                        {"Authorization": f"Basic {KEY}"}):
            r = c.post("/api/batches", headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["status"] == "error" and KEY not in r.text
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert c.get("/api/batches", headers={"authorization": f"bearer {KEY}"}).status_code == 200
    assert emu.read_journal() == []
    assert KEY not in capsys.readouterr().err


def test_refusals(emu: ClevverEmulator) -> None:
    """Unknown ids are 404; attaching to a started batch is 422 and stores nothing; a
    form without a file field is 422, a body that is no form 400, a wrong method 405."""
    with client(emu) as c:
        unknown = "5c893d75-2a8b-4712-b56f-89377ac97681"
        assert c.get(f"/api/batches/{unknown}").status_code == 404
        assert c.post(f"/api/batches/{unknown}/start").status_code == 404
        assert attach(c, unknown, "a.txt", b"x").status_code == 404
        r = c.get(f"/api/files/{unknown}")
        assert r.status_code == 404 and r.json() == {"status": "error",
                                                     "message": f"File {unknown} not found"}
        batch = create(c)
        r = c.post(f"/api/batches/{batch}/files", data={"other": "x"}, files={"doc": ("a", b"a")})
        assert r.status_code == 422 and '"file"' in r.json()["message"]
        assert c.post(f"/api/batches/{batch}/files", content=b"plain").status_code == 400
        assert c.delete(f"/api/batches/{batch}").status_code == 405
        assert httpx.get(f"{emu.url}/forever/{'0' * 64}").status_code == 404
        assert c.post(f"/api/batches/{batch}/start").status_code == 200
        r = attach(c, batch, "late.txt", b"too late")
        assert r.status_code == 422 and "started" in r.json()["message"]
    assert [e["event"] for e in emu.read_journal()] == ["start"]
    assert list((emu.data_dir / "assets").iterdir()) == []


def test_a_big_file_with_boundary_like_bytes_streams_intact(emu: ClevverEmulator) -> None:
    """A 3 MiB file full of CRLF-- sequences, sent chunked, is stored byte for byte (the
    boundary search holds back bytes across reads without losing or adding any)."""
    content = (b"\r\n--\r\n-" * 7 + os.urandom(1000)) * 3200 + b"\r\n-"
    boundary = "folderseal-test-boundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"dir/big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + content + f"\r\n--{boundary}--\r\n".encode()

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(form), 65_537):
            yield form[i:i + 65_537]

    with client(emu) as c:
        batch = create(c)
        r = c.post(f"/api/batches/{batch}/files", content=pieces(),
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 200, r.text
        asset = r.json()["data"]
    assert asset["name"] == "big.bin" and asset["file_size"] == len(content)
    assert asset["checksum"] == hashlib.sha256(content).hexdigest()
    assert (emu.data_dir / "assets" / asset["id"]).read_bytes() == content


def test_an_empty_file_with_a_non_ascii_name(emu: ClevverEmulator) -> None:
    """An empty file is an asset like any other; a UTF-8 file name comes back as sent."""
    with client(emu) as c:
        asset = asset_of(c, create(c), "Überweisung 2026.pdf", b"")
    assert asset["file_size"] == 0 and asset["name"] == "Überweisung 2026.pdf"
    assert asset["checksum"] == hashlib.sha256(b"").hexdigest()


def test_violations_are_journaled(emu: ClevverEmulator) -> None:
    """A second start is answered 200 and journaled "started twice"; a document twice in
    one started batch, or in two started batches, is journaled too; duplicate says so."""
    with client(emu) as c:
        first = create(c)
        asset_of(c, first, "a.txt", b"same")
        assert asset_of(c, first, "again.txt", b"same")["duplicate"] is True
        assert c.post(f"/api/batches/{first}/start").status_code == 200
        again = c.post(f"/api/batches/{first}/start")
        assert again.status_code == 200 and again.json()["data"]["id"] == first
        second = create(c)
        asset_of(c, second, "a.txt", b"same")
        asset_of(c, second, "new.txt", b"other")
        unstarted = create(c)
        asset_of(c, unstarted, "new.txt", b"other")  # abandoned, never started: no harm
        c.post(f"/api/batches/{second}/start")
    checksum = hashlib.sha256(b"same").hexdigest()
    found = [(v["kind"], v["batch"], v.get("checksum")) for v in emu.violations()]
    assert found == [("stored twice in one batch", first, checksum),
                     ("started twice", first, None),
                     ("stored by two batches", second, checksum)]
    starts = [e for e in emu.read_journal() if e["event"] == "start"]
    assert [(s["batch"], s["call"]) for s in starts] == [(first, 1), (first, 2), (second, 1)]


def test_a_restart_remembers_what_was_stored(start: Any, tmp_path: Path) -> None:
    """Restarted on the same data folder, the emulator knows no batches but still flags a
    checksum stored before as duplicate, and a second storing of it as a violation."""
    first = start()
    with client(first) as c:
        batch = create(c)
        asset_of(c, batch, "a.txt", b"kept")
        c.post(f"/api/batches/{batch}/start")
    first.stop()
    again = start_clevver(api_key=KEY, data_dir=first.data_dir)
    try:
        with client(again) as c:
            assert c.get(f"/api/batches/{batch}").status_code == 404
            other = create(c)
            assert asset_of(c, other, "a.txt", b"kept")["duplicate"] is True
            c.post(f"/api/batches/{other}/start")
        assert [v["kind"] for v in again.violations()] == ["stored by two batches"]
    finally:
        again.stop()


# --- faults -------------------------------------------------------------------------


def test_fault_500_before_stores_nothing(emu: ClevverEmulator) -> None:
    with client(emu) as c:
        batch = create(c)
        emu.set_faults("500-before")
        r = attach(c, batch, "a.txt", b"x")
        assert r.status_code == 500 and r.json()["status"] == "error"
        assert c.post(f"/api/batches/{batch}/start").status_code == 500
        emu.set_faults("")
        assert c.get(f"/api/batches/{batch}").json()["data"]["status"] == "created"
    assert emu.read_journal() == []
    assert emu.injected_faults() == {"500-before": 2}


def test_fault_500_after_does_the_work(emu: ClevverEmulator) -> None:
    """500-after: the asset IS stored and the start DID happen, though both answered 500."""
    with client(emu) as c:
        batch = create(c)
        emu.set_faults("500-after")
        assert attach(c, batch, "a.txt", b"x").status_code == 500
        assert c.post(f"/api/batches/{batch}/start").status_code == 500
        emu.set_faults("")
        poll_until(c, batch, "delivered")
    assert [e["event"] for e in emu.read_journal()] == ["asset", "start", "delivered"]


def test_fault_429_says_when_to_retry(start: Any) -> None:
    emu = start(faults="429")
    with client(emu) as c:
        r = c.post("/api/batches")
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        emu.set_faults("")
        assert c.get("/api/batches").json()["data"] == []


def test_fault_drop_before_cuts_the_upload_and_stores_nothing(emu: ClevverEmulator) -> None:
    with client(emu) as c:
        batch = create(c)
        emu.set_faults("drop-before")
        with pytest.raises(httpx.TransportError):
            attach(c, batch, "a.bin", os.urandom(4 << 20))
        emu.set_faults("")
    assert emu.read_journal() == []
    assert list((emu.data_dir / "assets").iterdir()) == []


def test_fault_drop_after_stores_then_closes(emu: ClevverEmulator) -> None:
    with client(emu) as c:
        batch = create(c)
        emu.set_faults("drop")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            attach(c, batch, "a.txt", b"x")
        emu.set_faults("")
    [entry] = emu.read_journal()
    assert entry["event"] == "asset" and entry["batch"] == batch


def test_fault_slow_answers_late(start: Any) -> None:
    emu = start(faults="slow", slow_seconds=0.4)
    with client(emu) as c:
        began = time.monotonic()
        assert c.post("/api/batches").status_code == 201
        assert time.monotonic() - began >= 0.4


def test_fault_late_start_takes_effect_later(start: Any) -> None:
    """late-start: the start is answered "processing", but the batch reads "created"
    (and is not listed) until late_seconds have passed."""
    emu = start(faults="late-start", late_seconds=0.6)
    with client(emu) as c:
        batch = create(c)
        asset_of(c, batch, "a.txt", b"x")
        began = time.monotonic()
        assert c.post(f"/api/batches/{batch}/start").json()["data"]["status"] == "processing"
        assert c.get(f"/api/batches/{batch}").json()["data"]["status"] == "created"
        assert c.get("/api/batches").json()["data"] == []
        assert attach(c, batch, "b.txt", b"y").status_code == 422  # started all the same
        while c.get(f"/api/batches/{batch}").json()["data"]["status"] == "created":
            time.sleep(0.05)
        assert time.monotonic() - began >= 0.6
        poll_until(c, batch, "delivered")
    [start_entry] = [e for e in emu.read_journal() if e["event"] == "start"]
    assert start_entry["late_seconds"] == 0.6


def test_fault_never_deliver(start: Any) -> None:
    """never-deliver: progress stops short of 100 and the batch stays processing (listed)."""
    emu = start(faults="never-deliver")
    with client(emu) as c:
        batch = create(c)
        asset = asset_of(c, batch, "a.txt", b"x")
        c.post(f"/api/batches/{batch}/start")
        for _ in range(10):
            data = c.get(f"/api/batches/{batch}").json()["data"]
        assert data["status"] == "processing" and data["progress"] == 90
        assert [b["id"] for b in c.get("/api/batches").json()["data"]] == [batch]
        assert c.get(f"/api/files/{asset['id']}").json()["data"]["txid"] is None
    assert "delivered" not in [e["event"] for e in emu.read_journal()]


def test_fault_late_txid(start: Any) -> None:
    """late-txid: after delivery the receipt still lacks its txid for late_seconds."""
    emu = start(faults="late-txid", late_seconds=0.5)
    with client(emu) as c:
        batch = create(c)
        asset = asset_of(c, batch, "a.txt", b"x")
        c.post(f"/api/batches/{batch}/start")
        poll_until(c, batch, "delivered")
        delivered = time.monotonic()
        receipt = c.get(f"/api/files/{asset['id']}").json()["data"]
        assert receipt["txid"] is None and receipt["status"] == "processing"
        assert receipt["forever_url"] is None
        while receipt["txid"] is None:
            time.sleep(0.05)
            receipt = c.get(f"/api/files/{asset['id']}").json()["data"]
        assert time.monotonic() - delivered >= 0.4
        assert HEX64.fullmatch(receipt["txid"]) and receipt["status"] == "cached"


def test_fault_quirky_moves_messages_and_strings_numbers(start: Any) -> None:
    """quirky: message on the other side of data, progress and file_size as strings,
    extra fields; still valid JSON, same ids and values."""
    emu = start(faults="quirky")
    with client(emu) as c:
        created = c.post("/api/batches").json()
        assert created["message"] == "Batch created successfully"
        assert "message" not in created["data"] and created["data"]["progress"] == "0"
        assert "meta" in created and "emulator_note" in created["data"]
        batch = created["data"]["id"]
        attached = attach(c, batch, "a.txt", b"abc").json()
        assert "message" not in attached and attached["data"]["message"]
        assert attached["data"]["file_size"] == "3"
        c.post(f"/api/batches/{batch}/start")
        status = c.get(f"/api/batches/{batch}").json()["data"]
        assert status["progress"] == "33.3"
    assert emu.injected_faults()["quirky"] == 4


def test_fault_spec(start: Any) -> None:
    """SEAL's spec syntax; SEAL's own kinds (truncate…) are unknown here, and run_clevver
    turns a bad spec into exit 2."""
    emu = start(faults="500-before=0.5, drop-before=0.1,late-txid,quirky=0")
    assert emu.injected_faults() == {}
    for spec, message in [("truncate", "unknown fault kind 'truncate'"),
                          ("late-start=2", "between 0 and 1")]:
        with pytest.raises(ValueError, match=message):
            start_clevver(faults=spec)
        assert run_clevver(faults=spec) == 2


# --- command line and memory ----------------------------------------------------------


def test_the_emulator_command(tmp_path: Path) -> None:
    """`folderseal emulate clevver --port 0` says where it listens, requires its token,
    keeps its --data folder and stops with exit 0 on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "folderseal", "emulate", "clevver", "--port", "0",
         "--api-key", KEY, "--data", str(tmp_path / "emu")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = emulator_listening(process)["url"]
        assert httpx.post(f"{url}/api/batches").status_code == 401
        assert httpx.post(f"{url}/api/batches", headers=AUTH).status_code == 201
    finally:
        process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    assert (tmp_path / "emu" / "journal.jsonl").exists()


@pytest.mark.slow
def test_a_200mb_attach_streams_in_flat_memory(tmp_path: Path) -> None:
    """The emulator stores a 200 MB attach with its peak RSS growing under 50 MB."""
    big = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with big.open("wb") as out:
        for _ in range(200):
            out.write(block)
            digest.update(block)
    process = subprocess.Popen(
        [sys.executable, "-m", "folderseal", "emulate", "clevver", "--port", "0",
         "--data", str(tmp_path / "emu")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = emulator_listening(process)["url"]
        with httpx.Client(base_url=url, timeout=120) as c:
            batch = create(c)
            asset_of(c, batch, "warm.txt", b"warm-up")
            baseline = proc_memory(process.pid, "VmRSS")
            with big.open("rb") as body:
                r = c.post(f"/api/batches/{batch}/files", files={"file": ("big.bin", body)})
            assert r.status_code == 200, r.text
            assert r.json()["data"]["checksum"] == digest.hexdigest()
            growth = proc_memory(process.pid, "VmHWM") - baseline
        assert growth < 50 * 1024 * 1024, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
