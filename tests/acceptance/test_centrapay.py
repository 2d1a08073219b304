"""The daemon against the Centrapay emulator over loopback: every fault at once, the
rate limit with 200 files in flight, the retry rules, crashes at each crash point, and
S3 publishing on a real S3 server (moto's, tests/s3server.py).

The daemon (`folderseal run`) runs in a subprocess; the emulator is `folderseal emulate
centrapay` in a subprocess or the same code in this process, fetching each batch file
over HTTP from where it was published (a loopback web server for publish_dir, or S3).
Its journal lists every create (with a lost answer marked), every fetch with the
content's sha256 and the report it made: the proof that each file was created at most
once and that each sidecar's report is Centrapay's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from folderseal.providers.centrapay.emulator import CentrapayEmulator, start_centrapay
from folderseal.providers.centrapay.emulator import endpoints as emulator_module
from tests import centrapay_world as cw
from tests.helpers import (
    Daemon,
    Layout,
    emulator_listening,
    error_records,
    folderseal,
    sidecars,
    wait_until,
)
from tests.s3server import SECRET_ACCESS_KEY, keys, uploads
from tests.s3server import provider_keys as s3_keys

KEY = "cp-acceptance-key-3f9a2d7c41"
ALL_FAULTS = ("429=0.05,500-before=0.04,drop-before=0.03,500-after=0.04,drop=0.03,"
              "slow=0.05,bad-url=0.15,late-403=0.3,quirky=0.3")
SIGNED = re.compile(r"X-Amz-(Signature|Credential)|Signature=", re.IGNORECASE)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[CentrapayEmulator]:
    with start_centrapay(api_key=KEY, data_dir=tmp_path / "emulator", seed=20261203,
                         step_seconds=0.05, late_seconds=1.0, slow_seconds=0.3,
                         rate_limit=0) as handle:
        yield handle


@pytest.fixture
def public(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """publish_dir and the loopback web server that serves it."""
    folder = tmp_path / "public"
    folder.mkdir(mode=0o711)
    with cw.served(folder) as url:
        yield folder, url


def _layout(tmp_path: Path, url: str, publishing: dict[str, Any],
            provider: dict[str, Any] | None = None, extra: str = "",
            **folder: Any) -> Layout:
    (tmp_path / "centrapay.key").write_text(KEY + "\n")
    (tmp_path / "centrapay.key").chmod(0o600)
    layout = Layout(tmp_path, folder={"rescan_seconds": 1.0, **folder}, extra=extra,
                    provider={**cw.provider_keys(url, "centrapay.key"), **publishing,
                              **(provider or {})})
    layout.write()
    return layout


def _drop(inbox: Path, files: dict[str, bytes]) -> dict[str, str]:
    """Each file under a hidden name, then renamed; source → sha256."""
    expected = {}
    for source, data in files.items():
        path = inbox / source
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name("." + path.name + ".part")
        temp.write_bytes(data)
        temp.rename(path)
        expected[source] = cw.sha(data)
    return expected


def _by_digest(folder: Path, records: bool) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in (error_records(folder) if records else sidecars(folder)):
        data = json.loads(path.read_text())
        assert data["input"]["sha256"] not in found, f"two outcomes: {path}"
        found[data["input"]["sha256"]] = data
    return found


def _outcomes(layout: Layout, *more: Path) -> tuple[dict[str, dict[str, Any]],
                                                    dict[str, dict[str, Any]]]:
    delivered: dict[str, dict[str, Any]] = {}
    failed: dict[str, dict[str, Any]] = {}
    for outbox, errors in [(layout.outbox, layout.errors), *[(m / "outbox", m / "errors")
                                                             for m in more]]:
        for digest, data in _by_digest(outbox, False).items():
            assert digest not in delivered, f"{data['source']} delivered twice"
            delivered[digest] = data
        for digest, data in _by_digest(errors, True).items():
            assert digest not in failed, f"{data['source']} failed twice"
            failed[digest] = data
    both = set(delivered) & set(failed)
    assert not both, f"files both delivered and failed: {both}"
    return delivered, failed


def _settled(layout: Layout, expected: dict[str, str], *more: Path) -> bool:
    delivered, failed = _outcomes(layout, *more)
    return set(delivered) | set(failed) >= set(expected.values())


def _check(layout: Layout, journal: list[dict[str, Any]], expected: dict[str, str],
           *more: Path, allowed: tuple[str, ...] = (), crashed: bool = False,
           ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every file once: delivered unchanged with Centrapay's report, or in errors with
    an allowed code; the journal agrees; nothing left in the inbox or work folder."""
    delivered, failed = _outcomes(layout, *more)
    assert set(delivered) | set(failed) == set(expected.values())
    for digest, sidecar in delivered.items():
        assert sidecar["status"] == "loaded", sidecar
        [output] = sidecar["outputs"]
        assert output["role"] == "original" and output["sha256"] == digest
        outbox = layout.outbox if (layout.outbox / output["path"]).exists() else \
            next(m / "outbox" for m in more if (m / "outbox" / output["path"]).exists())
        assert cw.sha((outbox / output["path"]).read_bytes()) == digest
    for record in failed.values():
        assert record["error"]["code"] in allowed, record["error"]
        assert record["error"]["message"]
    problems = cw.journal_verdict(journal, delivered, failed, crashed)
    assert problems == [], problems
    for inbox in [layout.inbox, *[m / "inbox" for m in more]]:
        left = [p for p in inbox.rglob("*") if p.is_file() and
                (".folderseal" not in p.parts or ("work" in p.parts and
                                                  not p.name.startswith(".") and
                                                  p.name != "store-id"))]
        assert left == [], left
    return delivered, failed


def _no_secrets(root: Path, layout: Layout, *secrets: str,
                folder_names: set[str] = frozenset()) -> None:
    """No API key, S3 secret or signed query in any log, sidecar, record or status; no
    name published in publish_dir (a read key with the URL prefix) in any log or
    status."""
    status = folderseal("status", "--json", "-c", str(layout.config))
    texts = {str(p): p.read_text(errors="replace") for p in root.rglob("*.log")}
    texts |= {str(p): p.read_text() for p in root.rglob("*.json")
              if "emulator" not in p.parts}
    texts["status"] = status.stdout + status.stderr
    for where, text in texts.items():
        for secret in (KEY, *secrets):
            assert secret not in text, f"a secret in {where}"
        assert not SIGNED.search(text), f"a signed URL in {where}"
        if not where.endswith(".json"):
            shown = [n for n in folder_names if n in text]
            assert not shown, f"published names {shown[:3]} in {where}"


# -- every fault at once -----------------------------------------------------------------

def test_every_fault_at_once_jsonl_and_csv(tmp_path: Path) -> None:
    """`folderseal emulate centrapay` with every fault kind, two folders (JSON Lines and
    CSV), files with bad records, files invalid before sending: each file ends once —
    delivered with the report the emulator's journal has, or in errors (invalid ones
    with their bad lines and nothing published; load_failed only for a batch Centrapay
    failed; outcome_unknown only where a create's answer was lost) — no file is created
    twice, nothing stays published, no secret or signed URL shows anywhere."""
    data = tmp_path / "emulator"
    # max_wait_seconds: long enough that a loaded machine's slow batch still closes.
    emulate = subprocess.Popen(
        [sys.executable, "-m", "folderseal", "emulate", "centrapay", "--port", "0",
         "--api-key", KEY, "--faults", ALL_FAULTS, "--data", str(data), "--seed", "11",
         "--step-seconds", "0.05", "--late-seconds", "1", "--slow-seconds", "0.3",
         "--rate-limit", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = emulator_listening(emulate)["url"]
        public = tmp_path / "public"
        public.mkdir(mode=0o711)
        with cw.served(public) as served:
            publishing = cw.folder_keys(public, served)
            csv_folder = tmp_path / "csv"
            csv_provider = {**cw.provider_keys(url, "centrapay.key", cw.CSV_TYPE),
                            **publishing, "max_wait_seconds": 15.0}
            extra = "\n[providers.onboard]\n" + "\n".join(
                f"{k} = {json.dumps(v)}" for k, v in csv_provider.items())
            extra += "\n\n[folders.onboarding]\n" + "\n".join(
                f"{k} = {json.dumps(v)}" for k, v in {
                    "inbox": "csv/inbox", "outbox": "csv/outbox", "errors": "csv/errors",
                    "provider": "onboard", "settle_seconds": 0.3,
                    "batch_max_wait_seconds": 0.3, "poll_interval_seconds": 0.5,
                    "rescan_seconds": 1.0, "min_free_bytes": "1MB"}.items()) + "\n"
            for sub in ("inbox", "outbox", "errors"):
                (csv_folder / sub).mkdir(parents=True)
            layout = _layout(tmp_path, url, publishing, {"max_wait_seconds": 15.0},
                             extra=extra)
            check = folderseal("check", "-c", str(layout.config))
            assert check.returncode == 0, check.stdout + check.stderr
            said = check.stdout + check.stderr
            assert "one file" in said and "fetched back" in said, said
            daemon = Daemon(layout).started()
            files = {f"assets-{i:02d}.jsonl": cw.jsonl(f"a{i}", 20 + i,
                                                       missing_id=(3,) if i % 3 == 0 else ())
                     for i in range(24)}
            invalid = {"broken-0.jsonl": b'{"externalId": "x0"}\nnot json\n[1, 2]\n',
                       "broken-1.jsonl": b'{"externalId": "x1"}\n\xff\xfe\n'}
            expected = _drop(layout.inbox, {**files, **invalid})
            csv_files = {f"onboard-{i}.csv": cw.csv_rows(f"c{i}", 10 + i) for i in range(6)}
            csv_invalid = {"onboard-bad.csv": b"externalId,name\nc-1,one\nc-2\nc-3,three\n"}
            expected_csv = _drop(csv_folder / "inbox", {**csv_files, **csv_invalid})
            everything = {**expected, **{f"csv/{k}": v for k, v in expected_csv.items()}}
            wait_until(lambda: _settled(layout, everything, csv_folder), timeout=60,
                       what="every file's outcome")
            # An outcome_unknown copy stays published max_wait_seconds (a fetch in doubt).
            wait_until(lambda: not any(public.iterdir()), timeout=30,
                       what="publish_dir emptied")
            assert daemon.stop() == 0
    finally:
        emulate.terminate()
        emulate.wait(10)
    journal = [json.loads(line) for line in (data / "journal.jsonl").read_text().splitlines()]
    delivered, failed = _check(layout, journal, everything, csv_folder,
                               allowed=("invalid_batch_file", "load_failed",
                                        "outcome_unknown"))
    assert len(delivered) >= 15, f"only {len(delivered)} delivered"
    invalid_digests = {expected[n] for n in invalid} | {expected_csv["onboard-bad.csv"]}
    for digest in invalid_digests:
        record = failed[digest]
        assert record["error"]["code"] == "invalid_batch_file"
        report = record["provider"]["report"]
        assert report["status"] == "invalid" and report["errorCount"] >= 1
    assert failed[expected_csv["onboard-bad.csv"]]["provider"]["report"]["errors"][0][
        "index"] == 2
    assert {e["index"] for e in failed[expected["broken-0.jsonl"]]["provider"]["report"][
        "errors"]} == {1, 2}
    fetched = {e["sha256"] for e in journal if e["event"] == "fetched"}
    assert not fetched & invalid_digests, "an invalid file was sent"
    for name, content in files.items():
        sidecar = delivered.get(expected[name])
        if sidecar is not None:
            report = sidecar["provider"]["report"]
            assert report["count"] == content.count(b"\n")
            refused = int(name[7:9]) % 3 == 0   # record 3 lacks its externalId
            assert report["errorCount"] == int(refused)
            assert [e["index"] for e in report["errors"]] == ([3] if refused else [])
    kinds = {e["kind"] for e in journal if e["event"] == "create_fault"}
    assert any(e.get("bad_url") or e.get("late_403_seconds") for e in journal
               if e["event"] == "create"), "no batch fault was drawn"
    assert kinds, "no request fault hit a create"
    _no_secrets(tmp_path, layout, folder_names=cw.published_names(journal))


def _claimed(layout: Layout) -> int:
    try:
        return sum(1 for _ in layout.work.rglob("*.jsonl"))
    except FileNotFoundError:   # a folder went while this looked
        return 0


# -- the rate limit ----------------------------------------------------------------------

def test_the_rate_limit_holds_with_200_files_in_flight(
        tmp_path: Path, public: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """200 files in flight at once: every create and every poll of every batch waits at
    the provider's one limiter, so Centrapay never answers 429. The emulator's window is
    cut to 5 s (its limit to 50 calls in it: 600 a minute) so that a burst shows within
    the test; the client keeps max_requests_per_minute = 540 and is driven at it."""
    monkeypatch.setattr(emulator_module, "RATE_WINDOW", 5.0)
    folder, url = public
    with start_centrapay(api_key=KEY, data_dir=tmp_path / "emulator", seed=5,
                         step_seconds=0.0, rate_limit=50) as emulator:
        layout = _layout(tmp_path, emulator.url, cw.folder_keys(folder, url),
                         {"max_requests_per_minute": 540, "poll_interval_seconds": 0.2},
                         max_in_flight_files=400, settle_seconds=0.2)
        daemon = Daemon(layout).started()
        _drop(layout.inbox, {f"many/f-{i:03d}.jsonl": cw.jsonl(f"m{i}", 3) for i in range(200)})
        wait_until(lambda: _claimed(layout) >= 150, timeout=20, what="the files claimed")
        began = time.monotonic()
        time.sleep(6)
        calls = sum(emulator.request_counts().values())
        elapsed = time.monotonic() - began
        status = folderseal("status", "--json", "-c", str(layout.config))
        assert daemon.stop() == 0
    journal = emulator.read_journal()
    assert [e for e in journal if e["event"] == "rate_limited"] == []
    # Driven near the limit the whole time: 9 calls a second at most, 4 at least here.
    assert calls >= 4 * elapsed, f"{calls} calls in {elapsed:.0f} s: the limiter idled"
    creates = sum(1 for e in journal if e["event"] == "create")
    assert creates >= 20 and len(sidecars(layout.outbox)) < 200, creates
    assert status.returncode in (0, 1), status.stderr
    files = json.loads(status.stdout)["folders"]["scans"]["files"]
    assert sum(files.values()) >= 100, files


# -- retry rules -------------------------------------------------------------------------

def test_retry_rules(tmp_path: Path, public: tuple[Path, str],
                     emulator: CentrapayEmulator) -> None:
    """A create in doubt (outcome_unknown) is sent again only with --force and its own
    id, never with --all; a batch that ended in error is published and created anew
    without --force; a complete batch is never sent again."""
    folder, url = public
    layout = _layout(tmp_path, emulator.url, cw.folder_keys(folder, url),
                     {"max_wait_seconds": 4.0})
    daemon = Daemon(layout).started()
    # A: its create answered 500 before anything was done (the client cannot tell).
    emulator.set_faults("500-before=1.0")
    a = _drop(layout.inbox, {"a.jsonl": cw.jsonl("ra", 4)})
    wait_until(lambda: _settled(layout, a), timeout=20, what="a's outcome")
    # B: Centrapay cannot fetch it, so its batch ends in error.
    emulator.set_faults("bad-url=1.0")
    b = _drop(layout.inbox, {"b.jsonl": cw.jsonl("rb", 5)})
    wait_until(lambda: _settled(layout, b), timeout=20, what="b's outcome")
    emulator.set_faults("")
    c = _drop(layout.inbox, {"c.jsonl": cw.jsonl("rc", 6)})
    wait_until(lambda: _settled(layout, c), timeout=20, what="c's outcome")
    delivered, failed = _outcomes(layout)
    assert failed[a["a.jsonl"]]["error"]["code"] == "outcome_unknown"
    assert "--force" in failed[a["a.jsonl"]]["error"]["message"]
    assert failed[b["b.jsonl"]]["error"]["code"] == "load_failed"
    assert c["c.jsonl"] in delivered
    a_id = failed[a["a.jsonl"]]["retry_id"]

    retried = folderseal("retry", "--all", "-c", str(layout.config))
    out = retried.stdout + retried.stderr
    assert "outcome_unknown" in out or "--force" in out, out
    wait_until(lambda: b["b.jsonl"] in _outcomes(layout)[0], timeout=20,
               what="b delivered after retry --all")
    assert a["a.jsonl"] in _outcomes(layout)[1], "retry --all sent an outcome_unknown file"
    forced_all = folderseal("retry", "--all", "--force", "-c", str(layout.config))
    assert forced_all.returncode != 0, forced_all.stdout
    plain = folderseal("retry", a_id, "-c", str(layout.config))
    assert plain.returncode != 0 and "--force" in plain.stdout + plain.stderr, plain
    time.sleep(1.0)
    assert a["a.jsonl"] in _outcomes(layout)[1]
    c_batch = delivered[c["c.jsonl"]]["batch"]["id"]
    again = folderseal("retry", "--force", c_batch, "-c", str(layout.config))
    assert "nothing to retry" in again.stdout, again.stdout + again.stderr
    forced = folderseal("retry", "--force", a_id, "-c", str(layout.config))
    assert forced.returncode == 0, forced.stdout + forced.stderr
    wait_until(lambda: a["a.jsonl"] in _outcomes(layout)[0], timeout=20,
               what="a delivered after retry --force")
    # The copy a's first create named stays max_wait_seconds (a fetch may be in doubt).
    wait_until(lambda: not any(folder.iterdir()), timeout=10, what="publish_dir emptied")
    assert daemon.stop() == 0
    journal = emulator.read_journal()
    loads = [e["sha256"] for e in journal if e["event"] == "fetched"]
    assert sorted(loads) == sorted([a["a.jsonl"], b["b.jsonl"], c["c.jsonl"]])
    creates = [e for e in journal if e["event"] == "create"]
    assert len(creates) == 4   # b twice (its first batch failed), a and c once
    assert emulator.violations() == []


# -- crashes -----------------------------------------------------------------------------

CRASH_POINTS = ["centrapay:publishing", "centrapay:published", "centrapay:creating",
                "centrapay:created"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_at_each_crash_point_loses_nothing_and_creates_once(
        tmp_path: Path, point: str, public: tuple[Path, str],
        emulator: CentrapayEmulator) -> None:
    """Killed (SIGKILL) right at a Centrapay step, a restarted daemon finishes every
    file: none lost, none created twice in Centrapay's journal, nothing left published.
    A kill between a file's ACCEPTING and its create's answer (files go in parallel:
    whatever the crash point) leaves that create in doubt: that file alone may end
    outcome_unknown (never sent again unasked)."""
    folder, url = public
    layout = _layout(tmp_path, emulator.url, cw.folder_keys(folder, url),
                     {"max_wait_seconds": 3.0})
    expected = _drop(layout.inbox, {f"k-{i}.jsonl": cw.jsonl(f"k{point}{i}", 5 + i)
                                    for i in range(3)})
    crashed = Daemon(layout, env={"FOLDERSEAL_CRASH_AT": f"{point}@2"})
    assert crashed.process.wait(timeout=30) == -9, f"{point} was never reached"
    crashed.kill()
    daemon = Daemon(layout).started()
    wait_until(lambda: _settled(layout, expected), timeout=30, what="every file's outcome")
    wait_until(lambda: not any(folder.iterdir()), timeout=10, what="publish_dir emptied")
    assert daemon.stop() == 0
    journal = emulator.read_journal()
    # Files go through in parallel: a kill at any step of one may catch another's create
    # in flight, and that file alone ends outcome_unknown (its create accounted for).
    delivered, failed = _check(layout, journal, expected, crashed=True,
                               allowed=("outcome_unknown",))
    assert delivered, failed
    assert len([e for e in journal if e["event"] == "create"]) <= 3


# -- S3 ----------------------------------------------------------------------------------

def test_publishing_to_s3_end_to_end(tmp_path: Path, s3_endpoint: str, s3_bucket: str,
                                     emulator: CentrapayEmulator) -> None:
    """publish = "s3" on a real S3 server: check proves the bucket (a probe fetched back
    through its pre-signed URL), each file is uploaded, fetched by Centrapay through a
    URL signed at the create, delivered with its report, and removed from the bucket;
    neither the API key nor the S3 secret nor a signature shows anywhere."""
    secret = tmp_path / "s3.secret"
    secret.write_text(SECRET_ACCESS_KEY + "\n")
    secret.chmod(0o600)
    layout = _layout(tmp_path, emulator.url, s3_keys(s3_endpoint, s3_bucket, str(secret)))
    check = folderseal("check", "-c", str(layout.config))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "fetched back" in check.stdout + check.stderr
    daemon = Daemon(layout).started()
    files = {f"s3-{i}.jsonl": cw.jsonl(f"s{i}", 30, missing_id=(0,) if i == 1 else ())
             for i in range(4)}
    expected = _drop(layout.inbox, files)
    wait_until(lambda: _settled(layout, expected), timeout=30, what="every file's outcome")
    wait_until(lambda: keys(s3_endpoint, s3_bucket) == [], timeout=10,
               what="the bucket emptied")
    assert daemon.stop() == 0
    journal = emulator.read_journal()
    delivered, _ = _check(layout, journal, expected)
    assert len(delivered) == 4
    assert delivered[expected["s3-1.jsonl"]]["provider"]["report"]["errors"][0]["index"] == 0
    assert all(e["url"].startswith(f"{s3_endpoint}/{s3_bucket}/folderseal/")
               for e in journal if e["event"] == "create")
    assert uploads(s3_endpoint, s3_bucket) == []
    _no_secrets(tmp_path, layout, SECRET_ACCESS_KEY)
