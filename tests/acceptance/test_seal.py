"""The daemon against the SEAL emulator over loopback: faults, crashes, and the key.

The emulator runs in this process (a real HTTP server on 127.0.0.1), the daemon in a
subprocess. The emulator's journal lists every document it signed: the proof that
each dropped file was signed exactly once, or went to errors with a record.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12

from folderseal.providers.seal.emulator import EmulatorHandle, start_seal
from folderseal.work import Manifests
from tests.helpers import (
    Daemon,
    Layout,
    check_sidecar,
    error_records,
    folderseal,
    outcomes,
    settled,
    sidecars,
    wait_until,
)
from tests.pdfs import make_pdf

KEY = "acceptance-key-7f3a9c2e"
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with start_seal(api_key=KEY, data_dir=tmp_path / "emulator", seed=20261122,
                    step_delay=0.02, slow_seconds=0.3) as handle:
        yield handle


def _layout(tmp_path: Path, url: str, provider: dict | None = None, **folder: object) -> Layout:
    (tmp_path / "signius.key").write_text(KEY + "\n")
    (tmp_path / "signius.key").chmod(0o600)
    layout = Layout(tmp_path, folder=folder, provider={
        "kind": "seal", "base_url": url, "api_key_file": "signius.key",
        "poll_interval_seconds": 0.1, "timeout_seconds": 5.0, "status_grace_seconds": 1.0,
        **(provider or {})})
    layout.write()
    return layout


def _drop(layout: Layout, count: int, start: int = 0) -> dict[str, str]:
    expected = {}
    for i in range(start, start + count):
        source = f"doc-{i}.pdf" if i % 2 == 0 else f"sub/note-{i}.txt"
        data = make_pdf(None, text=f"seal {i}") if source.endswith(".pdf") \
            else f"note {i}\n".encode() * 20
        path = layout.inbox / source
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name)
        tmp.write_bytes(data)
        tmp.rename(path)
        expected[source] = hashlib.sha256(data).hexdigest()
    return expected


def _assert_exactly_once(layout: Layout, emulator: EmulatorHandle,
                         expected: dict[str, str], allow_failures: bool = False) -> None:
    """Every file: one outcome; signed at most once by SEAL, and once if delivered."""
    delivered, failed = outcomes(layout)
    signed = Counter(e["sha256"] for e in emulator.read_journal() if e["signed"])
    for source, digest in expected.items():
        found = delivered.get(source, []) + failed.get(source, [])
        assert len(found) == 1, f"{source}: {len(found)} outcomes"
        assert signed[digest] <= 1, f"{source} was signed {signed[digest]} times"
        if source in delivered:
            assert signed[digest] == 1, f"{source} delivered but SEAL never signed it"
            check_sidecar(layout.outbox / f"{source}.json", layout)
    if not allow_failures:
        assert failed == {}, f"files failed: {sorted(failed)}"
    accepts = Counter(emulator.accept_calls())
    assert all(n == 1 for n in accepts.values()), f"AcceptBatch sent twice: {accepts}"
    leftovers = [p for p in layout.inbox.rglob("*") if p.is_file()
                 and ".folderseal" not in p.parts]
    assert leftovers == []


def _no_key_anywhere(layout: Layout) -> None:
    """The API key is in no log, sidecar, error record, or status output."""
    texts = [p.read_text(errors="replace") for p in layout.root.glob("daemon-*.log")]
    texts += [p.read_text() for p in sidecars(layout.outbox) + error_records(layout.errors)]
    status = folderseal("status", "--json", "-c", str(layout.config))
    texts += [status.stdout, status.stderr]
    assert all(KEY not in text for text in texts)


def test_files_are_sealed_through_seal(tmp_path: Path, emulator: EmulatorHandle) -> None:
    """PDFs come back signed and other files with a detached signature; sidecars name the
    remote batch and document; each file is signed once; the key leaks nowhere."""
    layout = _layout(tmp_path, emulator.url)
    daemon = Daemon(layout).started()
    expected = _drop(layout, 6)
    wait_until(lambda: settled(layout, expected), timeout=60, what="every file's outcome")
    assert daemon.stop() == 0
    _assert_exactly_once(layout, emulator, expected)
    sidecar = json.loads((layout.outbox / "doc-0.pdf.json").read_text())
    assert sidecar["provider"]["kind"] == "seal" and sidecar["provider"]["batch"].isdigit()
    assert [o["role"] for o in sidecar["outputs"]] == ["signed"]
    detached = json.loads((layout.outbox / "sub" / "note-1.txt.json").read_text())
    assert [o["role"] for o in detached["outputs"]] == ["original", "signature"]
    _no_key_anywhere(layout)


def test_every_fault_at_once(tmp_path: Path, emulator: EmulatorHandle) -> None:
    """With every fault kind injected, each file is still signed at most once and ends
    delivered or in errors with a reason; no unsafe entry is written anywhere."""
    emulator.set_faults("500-before=0.05,500-after=0.05,429=0.05,drop=0.05,slow=0.05,"
                        "truncate=0.3,unsafe-entry=0.3,fail-document=0.15,never-close=0.15")
    layout = _layout(tmp_path, emulator.url, batch_max_files=4,
                     provider={"max_wait_seconds": 4.0, "retry_max_seconds": 1.0})
    daemon = Daemon(layout).started()
    expected = _drop(layout, 16)
    wait_until(lambda: settled(layout, expected), timeout=240, what="every file's outcome")
    assert daemon.stop() == 0
    _assert_exactly_once(layout, emulator, expected, allow_failures=True)
    delivered, failed = outcomes(layout)
    assert delivered, "nothing got through"
    for records in failed.values():
        assert records[0]["error"]["code"] in ("not_signed", "never_closed", "missing")
        assert records[0]["error"]["message"]
    assert not [p for p in tmp_path.rglob("*evil*")], "an unsafe entry was written"
    _no_key_anywhere(layout)


def test_an_unsafe_package_entry_is_never_written(tmp_path: Path,
                                                 emulator: EmulatorHandle) -> None:
    """Every package carrying an unsafe extra entry: the daemon logs each one, writes none
    of them anywhere, and every file still ends delivered or in errors with a reason (the
    fault mix of the test above, whose random draws shift with the daemon's own calls, is
    not relied on for this)."""
    emulator.set_faults("unsafe-entry=1.0")
    layout = _layout(tmp_path, emulator.url, batch_max_files=4)
    daemon = Daemon(layout).started()
    expected = _drop(layout, 8)
    wait_until(lambda: settled(layout, expected), timeout=120, what="every file's outcome")
    assert daemon.stop() == 0
    _assert_exactly_once(layout, emulator, expected, allow_failures=True)
    delivered, failed = outcomes(layout)
    assert delivered, "nothing got through"
    assert all(records[0]["error"]["code"] == "missing" for records in failed.values())
    assert not [p for p in tmp_path.rglob("*evil*")], "an unsafe entry was written"
    events = [e.get("event") for e in daemon.events()]
    assert "package.unsafe_entry" in events


CRASH_POINTS = ["seal:created", "state:CREATED", "seal:uploaded", "state:UPLOADED",
                "state:ACCEPTING", "seal:accepted", "state:ACCEPTED", "state:CLOSED",
                "state:DOWNLOADED", "output-published", "sidecar-published",
                "state:DELIVERED", "state:CLEANED"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_around_each_step_signs_each_file_once(tmp_path: Path, emulator: EmulatorHandle,
                                                    point: str) -> None:
    """Killed right after a step (or right after SEAL answered, before it was recorded),
    a restarted daemon finishes every file with SEAL signing each exactly once."""
    layout = _layout(tmp_path, emulator.url)
    expected = _drop(layout, 4)
    crashed = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": point})
    assert crashed.process.wait(timeout=60) == -9, f"{point} was never reached"
    crashed.kill()
    daemon = Daemon(layout).started()
    wait_until(lambda: settled(layout, expected), timeout=60, what="every file's outcome")
    time.sleep(0.3)
    assert daemon.stop() == 0
    _assert_exactly_once(layout, emulator, expected)
    accepted = Counter(e["batch"] for e in emulator.read_journal())
    assert len(accepted) == 1, f"files were signed in several batches: {accepted}"


def test_a_seal_that_answers_before_it_processes(tmp_path: Path) -> None:
    """With a SEAL whose status shows an upload or an accept only a while after answering
    it (202), nothing is abandoned, uploaded twice or accepted twice."""
    with start_seal(api_key=KEY, data_dir=tmp_path / "emulator", step_delay=0.02,
                    lag=0.8) as emulator:
        layout = _layout(tmp_path, emulator.url, provider={"status_grace_seconds": 5.0})
        daemon = Daemon(layout).started()
        expected = _drop(layout, 4)
        wait_until(lambda: settled(layout, expected), timeout=60, what="every outcome")
        assert daemon.stop() == 0
        _assert_exactly_once(layout, emulator, expected)
        assert "batch.abandoned" not in [e.get("event") for e in daemon.events()]


@pytest.mark.parametrize("point", ["state:ACCEPTING", "seal:accepted", "seal:uploaded"])
def test_kill_around_an_asynchronous_seal(tmp_path: Path, point: str) -> None:
    """Killed around upload or accept of a SEAL that shows them late: on restart the
    status is given its grace before anything is sent again; each file signed once."""
    with start_seal(api_key=KEY, data_dir=tmp_path / "emulator", step_delay=0.02,
                    lag=0.8) as emulator:
        layout = _layout(tmp_path, emulator.url, provider={"status_grace_seconds": 2.0})
        expected = _drop(layout, 4)
        crashed = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": point})
        assert crashed.process.wait(timeout=60) == -9
        crashed.kill()
        daemon = Daemon(layout).started()
        wait_until(lambda: settled(layout, expected), timeout=60, what="every outcome")
        assert daemon.stop() == 0
        _assert_exactly_once(layout, emulator, expected)


def test_the_readme_configuration_works(tmp_path: Path, emulator: EmulatorHandle) -> None:
    """The configuration in README's "Using Signius SEAL" runs as printed (only the
    emulator's port differs), and `check` says the key is accepted."""
    section = README.read_text().split("## Using Signius SEAL", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    config = re.sub(r"http://127\.0\.0\.1:8080", emulator.url, block.group(1))
    for folder in ("inbox", "outbox", "errors"):
        (tmp_path / folder).mkdir()
    (tmp_path / "signius.key").write_text(KEY + "\n")
    (tmp_path / "config.toml").write_text(config)
    check = folderseal("check", "-c", str(tmp_path / "config.toml"))
    assert check.returncode == 0, check.stdout + check.stderr
    layout = Layout(tmp_path)
    daemon = Daemon(layout).started()
    (tmp_path / "inbox" / "readme.pdf").write_bytes(make_pdf(None, text="readme"))
    wait_until(lambda: (tmp_path / "outbox" / "readme.pdf.json").exists(), timeout=60,
               what="the README example sealed")
    check_sidecar(tmp_path / "outbox" / "readme.pdf.json", layout)
    assert daemon.stop() == 0


def test_check_reports_a_refused_key(tmp_path: Path, emulator: EmulatorHandle) -> None:
    """`check` with a wrong key exits 78 and says the key was refused and where to set it
    (without showing it), naming the provider once."""
    layout = _layout(tmp_path, emulator.url)
    (tmp_path / "signius.key").write_text("wrong-key-123\n")
    out = folderseal("check", "-c", str(layout.config))
    assert out.returncode == 78
    assert f"problem: provider local: SEAL at {emulator.url} refused the API key" in out.stdout
    assert "api_key_file" in out.stdout and "FOLDERSEAL_PROVIDERS__LOCAL__API_KEY" in out.stdout
    assert "wrong-key-123" not in out.stdout and "all checks passed" not in out.stdout


def test_check_says_what_it_proved_of_seal(tmp_path: Path, emulator: EmulatorHandle) -> None:
    """`check` on a SEAL provider says SEAL answered and took the key, in SEAL's terms (not
    the local signer's "the seal loads")."""
    layout = _layout(tmp_path, emulator.url)
    out = folderseal("check", "-c", str(layout.config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (f"ok: provider local: SEAL at {emulator.url} answered; the API key was accepted"
            in out.stdout)
    assert "seal loads" not in out.stdout and "all checks passed" in out.stdout


def test_check_fails_when_seal_cannot_be_reached_but_the_daemon_starts(tmp_path: Path) -> None:
    """With nothing listening at base_url, `check` exits 1 saying what to look at, not
    "all checks passed"; `run` still starts (its batches would wait), logs why, and
    publishes the warning, which `status` shows; once SEAL answers, the daemon's next
    check clears it (logged), without a restart."""
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        layout = _layout(tmp_path, url)
        out = folderseal("check", "-c", str(layout.config))
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"problem: provider local: SEAL at {url} cannot be reached" in out.stdout
        assert "check base_url" in out.stdout and "batches wait" in out.stdout
        assert "all checks passed" not in out.stdout
        daemon = Daemon(layout).started()
        warning = daemon.wait_for_event("provider.warning")
        assert "cannot be reached" in warning["warning"]

        def unreachable_in_status() -> bool:
            report = json.loads(folderseal("status", "--json", "-c", str(layout.config)).stdout)
            assert report["daemon"]["running"], report
            return any("cannot be reached" in w for w in report["warnings"])

        wait_until(lambda: "heartbeat" in json.loads(folderseal(
            "status", "--json", "-c", str(layout.config)).stdout)["daemon"], what="a heartbeat")
        assert unreachable_in_status(), "status does not show the daemon's warning"
    with start_seal(api_key=KEY, port=port, data_dir=tmp_path / "emulator", step_delay=0.02):
        wait_until(lambda: not unreachable_in_status(), timeout=45,
                   what="the warning cleared once SEAL answers")
        cleared = daemon.wait_for_event("provider.warning_cleared")
        assert "cannot be reached" in cleared["warning"] and cleared["provider"] == "local"
        assert daemon.stop() == 0


def test_seal_sidecars_name_the_certificate_read_from_the_signature(
        tmp_path: Path, emulator: EmulatorHandle) -> None:
    """SEAL reports nothing about its certificate: each sidecar records the one read from
    the signed output's signature (here the emulator's trial seal), and `verify` checks
    the outputs against it."""
    layout = _layout(tmp_path, emulator.url)
    daemon = Daemon(layout).started()
    expected = _drop(layout, 2)
    wait_until(lambda: settled(layout, expected), timeout=60, what="both sealed")
    assert daemon.stop() == 0
    seal = emulator.data_dir / "seal"
    _, certificate, _ = pkcs12.load_key_and_certificates(
        (seal / "seal.p12").read_bytes(), (seal / "seal.pass").read_bytes().strip())
    assert certificate is not None
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
    for source in expected:
        signer = json.loads((layout.outbox / f"{source}.json").read_text())["signer"]
        assert signer["fingerprint_sha256"] == fingerprint, source
        assert signer["subject"] == certificate.subject.rfc4514_string()
        assert signer["self_signed"] is True
    verify = folderseal("verify", str(layout.outbox))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_document_seal_did_not_sign_is_recorded_as_such(tmp_path: Path) -> None:
    """A document SEAL reports unsigned (the emulator's fail-document) goes to errors with a
    record that says SEAL gave no reason, whom to ask and how to retry, and whose timeline
    has no "signed" or "downloaded" step."""
    with start_seal(api_key=KEY, data_dir=tmp_path / "emulator", faults="fail-document=1",
                    step_delay=0.02) as emulator:
        layout = _layout(tmp_path, emulator.url)
        daemon = Daemon(layout).started()
        (layout.inbox / "unsigned.pdf").write_bytes(make_pdf(None, text="unsigned"))
        wait_until(lambda: error_records(layout.errors), timeout=60, what="the error record")
        assert daemon.stop() == 0
    [record] = [json.loads(p.read_text()) for p in error_records(layout.errors)]
    assert record["error"]["code"] == "not_signed"
    assert "gave no reason: ask SEAL's administrator" in record["error"]["message"]
    assert "`folderseal retry`" in record["error"]["message"]
    assert [s["step"] for s in record["timeline"]] == [
        "seen", "claimed", "batched", "submitted", "accepted", "failed"]


def test_the_emulator_command(tmp_path: Path) -> None:
    """`folderseal emulate seal --port 0` says where it listens, requires its key, and
    stops with exit 0 on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "folderseal", "emulate", "seal", "--port", "0", "--api-key",
         KEY, "--data", str(tmp_path / "emu")], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        listening = json.loads(process.stdout.readline())
        url = listening["url"]
        assert listening["event"] == "emulator.listening"
        assert httpx.post(f"{url}/api/CreateBatch/1").status_code == 401
        created = httpx.post(f"{url}/api/CreateBatch/1", headers={"API-KEY": KEY})
        assert created.status_code == 201 and created.json()["id"] == "2123"
    finally:
        process.terminate()
    assert process.wait(timeout=15) == 0


@pytest.mark.parametrize(("stop", "given"), [(signal.SIGTERM, False), (signal.SIGINT, False),
                                             (signal.SIGTERM, True)])
def test_the_emulator_removes_its_temporary_data_folder(tmp_path: Path, stop: int,
                                                        given: bool) -> None:
    """`folderseal emulate seal` without --data works in a temporary folder and removes it
    when stopped by SIGTERM or SIGINT (after signing in it); a --data folder is kept."""
    data = ["--data", str(tmp_path / "kept")] if given else []
    process = subprocess.Popen(
        [sys.executable, "-m", "folderseal", "emulate", "seal", "--port", "0",
         "--step-delay", "0.01", *data], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    try:
        assert process.stdout is not None
        listening = json.loads(process.stdout.readline())
        folder, url = Path(listening["data"]), listening["url"]
        assert folder.is_dir() and (folder / "seal" / "seal.p12").exists()
        created = httpx.post(f"{url}/api/CreateBatch/1").json()["id"]
        assert (folder / "batches" / created).is_dir()
    finally:
        process.send_signal(stop)
    assert process.wait(timeout=15) == 0
    assert folder.exists() == given, f"{folder} kept: {folder.exists()}"


def test_a_big_batch_streams_through_seal(tmp_path: Path) -> None:
    """A 96 MiB file goes through SEAL (zip, upload, download, extract) with the daemon's
    peak RSS under 150 MB: nothing is held in memory whole (bench/seal_stream.py does
    1 GiB)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from seal_stream import measure

    figures = measure(tmp_path, 96)
    assert figures["daemon_peak_mb"] < 150, figures


LOST_STORE_POINTS = ["seal:created", "seal:uploaded", "seal:accepted", "state:ACCEPTED",
                     "output-published", "sidecar-published"]


@pytest.mark.parametrize("point", LOST_STORE_POINTS)
def test_a_store_lost_mid_batch_is_rebuilt_by_recover(tmp_path: Path, emulator: EmulatorHandle,
                                                      point: str) -> None:
    """Killed at a step and the state folder wiped: `run` refuses (78), `recover` rebuilds
    the batch from its manifest and SEAL's answer, and the next run finishes every file,
    each signed once, accepted once, and nothing left in the outbox without a sidecar."""
    layout = _layout(tmp_path, emulator.url)
    expected = _drop(layout, 4)
    crashed = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": point})
    assert crashed.process.wait(timeout=60) == -9, f"{point} was never reached"
    crashed.kill()
    [batch] = (layout.work / "batches").iterdir()
    manifest = Manifests(batch.parent, "").json(batch.name)
    assert manifest is not None
    assert sorted(f["source"] for f in manifest["files"]) == sorted(expected)
    assert len(manifest["remote_ids"]) == (0 if point == "seal:created" else 1)
    for item in layout.state.iterdir():  # the store is lost
        subprocess.run(["rm", "-rf", str(item)], check=True)
    refused = folderseal("run", "-c", str(layout.config), timeout=30)
    assert refused.returncode == 78 and "folderseal recover" in refused.stderr
    recovered = folderseal("recover", "-c", str(layout.config))
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    daemon = Daemon(layout).started()
    wait_until(lambda: settled(layout, expected), timeout=60, what="every file's outcome")
    time.sleep(0.3)
    assert daemon.stop() == 0
    _assert_exactly_once(layout, emulator, expected)
    named = {o["path"] for p in sidecars(layout.outbox)
             for o in json.loads(p.read_text())["outputs"]}
    stray = [p for p in layout.outbox.rglob("*") if p.is_file() and not p.name.endswith(".json")
             and str(p.relative_to(layout.outbox)) not in named]
    assert stray == [], f"outputs without a sidecar: {stray}"
    _no_key_anywhere(layout)


def test_outputs_placed_before_a_store_loss_go_to_errors_with_their_originals(
        tmp_path: Path, emulator: EmulatorHandle) -> None:
    """Killed after the outputs were placed and before their sidecars, with the store lost
    and the remote batch gone from SEAL: nobody can tell whether to trust the outputs, so
    `recover` puts each original in errors ("check with the provider") with its output
    beside it, and the outbox keeps nothing that no sidecar names."""
    layout = _layout(tmp_path, emulator.url)
    expected = _drop(layout, 4)
    crashed = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": "output-published"})
    assert crashed.process.wait(timeout=60) == -9, "output-published was never reached"
    crashed.kill()
    [batch] = (layout.work / "batches").iterdir()
    remote_id = Manifests(batch.parent, "").remote_ids(batch.name)[-1]
    placed = sorted(p.name for p in layout.outbox.rglob("*") if p.is_file())
    assert placed and not sidecars(layout.outbox)
    deleted = httpx.delete(f"{emulator.url}/api/BatchDeleteCache/{remote_id}",
                           headers={"API-KEY": KEY})
    assert deleted.status_code == 200, deleted.text
    for item in layout.state.iterdir():  # the store is lost
        subprocess.run(["rm", "-rf", str(item)], check=True)
    recovered = folderseal("recover", "-c", str(layout.config))
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert [p for p in layout.outbox.rglob("*") if p.is_file()] == [], "outputs left behind"
    records = {json.loads(p.read_text())["source"]: json.loads(p.read_text())
               for p in error_records(layout.errors)}
    assert sorted(records) == sorted(expected)
    for source, record in records.items():
        assert record["error"]["code"] == "store_lost"
        assert "never given a sidecar, is beside it" in record["error"]["message"], record
        original = layout.errors / source
        assert hashlib.sha256(original.read_bytes()).hexdigest() == expected[source]
    moved = sorted(p.name for p in layout.errors.rglob("*") if p.is_file()
                   and not p.name.endswith(".error.json"))
    assert len(moved) == len(placed) + len(expected), moved  # every output and original
