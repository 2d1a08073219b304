"""A folder whose outbox, errors or archive folder is missing or not writable claims
nothing: its files stay visible in the inbox, `status` alarms at once, `/metrics`, the
status page and systemd's STATUS= show it, `/healthz` stays 200 (the daemon is fine),
and claiming resumes by itself once the folder is usable again.

Permissions only bite an unprivileged user: that case runs the daemon as ``nobody``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.torturekit.scenarios import Share
from folderseal.publish.probe import HUNG_SECONDS
from folderseal.service.status import LOOK_SECONDS
from folderseal.service.web import STALE_SECONDS
from tests.acceptance.test_service import NotifySocket
from tests.helpers import FAST, Daemon, Layout, check_sidecar, folderseal, sidecars, wait_until

METRICS = '\n[metrics]\nlisten = "127.0.0.1:0"\n'
BLOCKED = "folderseal_folder_blocked"


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def _status(layout: Layout, user: str | None = None) -> tuple[int, dict[str, Any]]:
    out = folderseal("status", "--json", "-c", str(layout.config), user=user)
    return out.returncode, json.loads(out.stdout)


def _gauges(url: str) -> dict[str, float]:
    """The folderseal_folder_blocked series of one scrape, by their labels."""
    found = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(BLOCKED + "{"):
            labels, _, value = line.rpartition(" ")
            found[labels[len(BLOCKED):]] = float(value)
    return found


def test_a_missing_outbox_stops_claims_until_it_is_created(
        tmp_path: Path, notify: NotifySocket) -> None:
    """With the outbox missing at start the daemon starts and claims nothing: the files stay
    in the inbox; `status` exits 1 naming the folder, its outbox and what to do; /metrics
    has folderseal_folder_blocked 1, the status page and STATUS= say claims stopped, and
    /healthz stays 200. Once the outbox is created the files come out sealed, unrestarted."""
    layout = Layout(tmp_path, extra=METRICS)
    layout.write()
    layout.outbox.rmdir()
    daemon = Daemon(layout, env=notify.env()).started()
    url = str(daemon.wait_for_event("web.listening", timeout=60)["url"]).rstrip("/")
    names = ["a.txt", "b.txt"]
    for name in names:
        (layout.inbox / name).write_text(f"waiting for the outbox: {name}")

    def alarmed() -> bool:
        code, report = _status(layout)
        return code == 1 and any("outbox" in a for a in report["alarms"])

    wait_until(alarmed, timeout=20, what="status to alarm about the outbox")
    daemon.wait_for_event("folder.blocked")
    code, report = _status(layout)
    alarm = next(a for a in report["alarms"] if "outbox" in a)
    assert "folder scans" in alarm and str(layout.outbox) in alarm, alarm
    assert "mount" in alarm and "create it" in alarm, alarm
    scans = report["folders"]["scans"]
    assert [b["reason"] for b in scans["blocked"]] == ["outbox_missing"]
    assert scans["in_flight"] == 0 and scans["files"] == {}
    wait_until(lambda: {w["source"] for w in _status(layout)[1]["folders"]["scans"]["waiting"]}
               == set(names), timeout=10, what="both files listed as waiting")
    assert sorted(p.name for p in layout.inbox.iterdir() if p.is_file()) == names
    assert not list(layout.incoming.rglob("*.txt")), "a file was claimed"
    wait_until(lambda: _gauges(url)['{folder="scans",reason="outbox_missing"}'] == 1,
               timeout=STALE_SECONDS + 5, what="the gauge at 1")
    gauges = _gauges(url)
    assert gauges['{folder="scans",reason="errors_missing"}'] == 0
    health = httpx.get(f"{url}/healthz")
    assert health.status_code == 200, health.text
    assert "Claims stopped" in httpx.get(f"{url}/").text
    wait_until(lambda: notify.first("READY") is not None, what="READY=1")
    # STATUS= follows the heartbeat: under load the first ones may predate the block.
    wait_until(lambda: any("folder scans: claims stopped: the outbox" in s
                           for s in notify.statuses()), timeout=20,
               what="STATUS= naming the stopped claims")
    stopped = [s for s in notify.statuses() if "folder scans: claims stopped: the outbox" in s]
    assert stopped[-1].count("claims stopped") == 1, stopped[-1]

    layout.outbox.mkdir()
    wait_until(lambda: len(sidecars(layout.outbox)) == 2, timeout=30, what="both sealed")
    for name in names:
        check_sidecar(layout.outbox / f"{name}.json", layout)
    wait_until(lambda: _status(layout)[0] == 0, timeout=10, what="status healthy again")
    # /metrics shows a report at most STALE_SECONDS old.
    wait_until(lambda: _gauges(url)['{folder="scans",reason="outbox_missing"}'] == 0,
               timeout=STALE_SECONDS + 5, what="the gauge back at 0")
    daemon.wait_for_event("folder.unblocked")
    assert daemon.stop() == 0


def test_an_errors_folder_it_may_not_write_stops_claims_until_fixed(
        open_tmp: Path) -> None:
    """A daemon run as nobody whose errors folder it may not write claims nothing; `status`
    alarms naming the errors folder and "fix its permissions"; after a chmod the waiting
    file is sealed without a restart."""
    layout = Layout(open_tmp)
    layout.write()
    subprocess.run(["chown", "-R", "nobody:nogroup", str(layout.root)], check=True)
    layout.errors.chmod(0o555)
    daemon = Daemon(layout, user="nobody").started()
    (layout.inbox / "c.txt").write_text("waiting for the errors folder")

    def alarmed() -> bool:
        code, report = _status(layout, user="nobody")
        return code == 1 and any("errors folder" in a for a in report["alarms"])

    wait_until(alarmed, timeout=20, what="status to alarm about the errors folder")
    report = _status(layout, user="nobody")[1]
    alarm = next(a for a in report["alarms"] if "errors folder" in a)
    assert str(layout.errors) in alarm and "fix its permissions" in alarm, alarm
    assert [b["reason"] for b in report["folders"]["scans"]["blocked"]] == \
        ["errors_not_writable"]
    assert (layout.inbox / "c.txt").exists()
    layout.errors.chmod(0o755)
    wait_until(lambda: (layout.outbox / "c.txt.json").exists(), timeout=30, what="c.txt sealed")
    assert daemon.stop() == 0


def test_sign_takes_nothing_while_the_archive_folder_is_missing(tmp_path: Path) -> None:
    """`folderseal sign` of a file whose folder's archive folder is missing takes nothing:
    it exits 1 naming the archive folder, and the file stays in the inbox."""
    layout = Layout(tmp_path, folder={"archive": "archive"})
    layout.write()
    (layout.inbox / "now.txt").write_text("sign me now")
    out = folderseal("sign", "--timeout", "10", "-c", str(layout.config),
                     str(layout.inbox / "now.txt"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "archive folder" in out.stderr and "not there" in out.stderr, out.stderr
    assert (layout.inbox / "now.txt").read_text() == "sign me now"
    assert sidecars(layout.outbox) == []


@contextmanager
def _share(layout: Layout, key: str) -> Iterator[Share]:
    """``layout``'s ``key`` folder as a bindfs FUSE share, a stand-in for a network one."""
    if os.geteuid() != 0 or shutil.which("bindfs") is None:
        pytest.fail("needs root and bindfs ('make test' installs it; CI runs as root)")
    backing = layout.root / f"{key}-backing"
    backing.mkdir()
    share = Share(backing, layout.root / key)
    share.mount()
    try:
        yield share
    finally:
        share.close()  # every bindfs it started ends too


@contextmanager
def _hung(share: Share) -> Iterator[float]:
    """The share stops answering (SIGSTOP: every access blocks, as on a hard-mounted
    share whose server is gone) until the block ends; yields when it began."""
    assert share.process is not None
    share.process.send_signal(signal.SIGSTOP)
    try:
        yield time.monotonic()
    finally:
        share.process.send_signal(signal.SIGCONT)


def _two_folders(tmp_path: Path) -> tuple[Layout, Path]:
    """A layout with a second folder, "other", beside "scans"; the other's root."""
    other = "\n".join(["", "[folders.other]", 'inbox = "other/inbox"',
                       'outbox = "other/outbox"', 'errors = "other/errors"',
                       'provider = "local"', *(f"{k} = {json.dumps(v)}" for k, v in FAST.items())])
    layout = Layout(tmp_path, extra=other + "\n")
    layout.write()
    for sub in ("inbox", "outbox", "errors"):
        (tmp_path / "other" / sub).mkdir(parents=True)
    return layout, tmp_path / "other"


def _seal_in_other(other: Path, names: list[str]) -> None:
    """Files dropped into the other folder come out sealed (its main loop runs)."""
    for name in names:
        (other / "inbox" / name).write_text(f"other folder: {name}")
    before = len(sidecars(other / "outbox"))
    wait_until(lambda: len(sidecars(other / "outbox")) == before + len(names), timeout=60,
               what="the other folder's files sealed")


@pytest.mark.parametrize("hung", ["outbox", "errors"])
def test_a_hung_output_share_stops_its_folder_only(tmp_path: Path, notify: NotifySocket,
                                                   hung: str) -> None:
    """With one folder's outbox (or errors folder, holding a failure to reconcile) on a
    FUSE share that stops answering, the daemon's other folder keeps claiming and sealing
    and the watchdog pings go on; `status` names the hung folder ("has not answered") as
    what stops claims in that folder, whose new file waits in its inbox; once the share
    answers again that file is sealed."""
    layout, other = _two_folders(tmp_path)
    with _share(layout, hung) as share:
        daemon = Daemon(layout, env=notify.env(watchdog_seconds=1.0)).started()
        wait_until(lambda: notify.first("READY") is not None, what="READY=1")
        if hung == "errors":  # a failure there for the reconcile to look at
            (layout.inbox / "fake.pdf").write_bytes(b"not a pdf at all\n%%EOF\n")
            wait_until(lambda: (layout.errors / "fake.pdf.error.json").exists(),
                       what="the failure in the errors folder")
        with _hung(share) as hung_at:
            time.sleep(2)  # past the kernel's attribute cache: the next look at it blocks
            _seal_in_other(other, ["o0.txt", "o1.txt", "o2.txt"])

            def hung_folder_reported() -> bool:
                code, report = _status(layout)
                reasons = [b["reason"] for b in report["folders"]["scans"]["blocked"]]
                return code == 1 and reasons == [f"{hung}_not_answering"]

            wait_until(hung_folder_reported, timeout=HUNG_SECONDS + 30,
                       what=f"status to name the hung {hung} folder")
            report = _status(layout)[1]
            alarm = next(a for a in report["alarms"] if f"{hung} folder" in a)
            assert "folder scans" in alarm and str(layout.root / hung) in alarm, alarm
            assert "has not answered" in alarm, alarm
            assert report["folders"]["other"]["blocked"] == []
            (layout.inbox / "held.txt").write_text(f"waits for the {hung} folder to answer")
            _seal_in_other(other, ["o3.txt"])
            assert (layout.inbox / "held.txt").exists(), f"claimed while the {hung} hangs"
            took = time.monotonic() - hung_at
            assert notify.pings_since(hung_at) >= took / 2, "the watchdog pings stopped"
            assert [e["folder"] for e in daemon.events() if e.get("event") == "folder.blocked"
                    and e["reason"] == f"{hung}_not_answering"] == ["scans"], "logged not once"
        wait_until(lambda: (layout.outbox / "held.txt.json").exists(), timeout=60,
                   what=f"held.txt sealed once the {hung} folder answers")
        assert daemon.stop() == 0


def test_a_file_rejected_while_the_errors_share_hangs_leaves_the_main_loop_running(
        tmp_path: Path, notify: NotifySocket) -> None:
    """A file rejected just after the errors share stops answering (a symbolic link: not a
    regular file) is only recorded REJECTED by the main loop, which goes on (the other
    folder seals, the watchdog pings go on); the folder's errors thread puts it into the
    errors folder, with its record, once the share answers."""
    layout, other = _two_folders(tmp_path)
    with _share(layout, "errors") as share:
        daemon = Daemon(layout, env=notify.env(watchdog_seconds=1.0)).started()
        wait_until(lambda: notify.first("READY") is not None, what="READY=1")
        with _hung(share) as hung_at:
            (layout.inbox / "link.txt").symlink_to("/etc/hostname")
            wait_until(lambda: _status(layout)[1]["folders"]["scans"]["files"] ==
                       {"REJECTED": 1}, timeout=20, what="the link rejected")
            _seal_in_other(other, ["o0.txt", "o1.txt"])
            took = time.monotonic() - hung_at
            assert notify.pings_since(hung_at) >= took / 2, "the watchdog pings stopped"
        wait_until(lambda: (layout.errors / "link.txt.error.json").exists(), timeout=60,
                   what="the link in the errors folder once the share answers")
        record = json.loads((layout.errors / "link.txt.error.json").read_text())
        assert record["error"]["code"] == "not_regular", record
        assert (layout.errors / "link.txt").is_symlink()
        assert daemon.stop() == 0


def test_status_without_a_daemon_answers_while_the_errors_share_hangs(
        tmp_path: Path) -> None:
    """With no daemon running, `folderseal status` of a folder whose errors folder (holding
    a failure) is on a share that stops answering answers within seconds, exit 1, with an
    alarm that the errors folder does not answer, instead of hanging."""
    layout = Layout(tmp_path)
    layout.write()
    with _share(layout, "errors") as share:
        daemon = Daemon(layout).started()
        (layout.inbox / "fake.pdf").write_bytes(b"not a pdf at all\n%%EOF\n")
        wait_until(lambda: (layout.errors / "fake.pdf.error.json").exists(),
                   what="the failure in the errors folder")
        assert daemon.stop() == 0
        with _hung(share):
            time.sleep(2)  # past the kernel's attribute cache: the next look at it blocks
            started = time.monotonic()
            out = folderseal("status", "--json", "-c", str(layout.config), timeout=30)
            took = time.monotonic() - started
    assert out.returncode == 1, out.stdout + out.stderr
    alarms = json.loads(out.stdout)["alarms"]
    alarm = next(a for a in alarms if "errors folder" in a)
    assert f"the errors folder {layout.errors} does not answer" in alarm, alarm
    assert "1 failed file(s) cannot be seen" in alarm, alarm
    assert took < LOOK_SECONDS + 5, f"{took:.1f} s"


def test_an_outbox_below_a_closed_folder_is_a_permission_problem(open_tmp: Path) -> None:
    """An outbox that is there but below a folder folderseal may not enter is reported
    as a permission problem on the way to it ("may not reach", fix the permissions), not
    as a share to mount; `folderseal sign` takes nothing."""
    layout = Layout(open_tmp, folder={"outbox": "closed/outbox"})
    layout.write()
    closed = open_tmp / "closed"
    (closed / "outbox").mkdir(parents=True)
    (layout.inbox / "now.txt").write_text("sign me now")
    subprocess.run(["chown", "-R", "nobody:nogroup", str(layout.root)], check=True)
    os.chown(closed, 0, 0)
    closed.chmod(0o700)
    out = folderseal("sign", "--timeout", "10", "-c", str(layout.config),
                     str(layout.inbox / "now.txt"), user="nobody")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"may not reach the outbox folder {closed / 'outbox'}" in out.stderr, out.stderr
    assert "fix that folder's permissions" in out.stderr, out.stderr
    assert "mount" not in out.stderr, out.stderr
    assert (layout.inbox / "now.txt").read_text() == "sign me now"


def test_a_full_outbox_that_goes_away_is_reported_missing_not_full(tmp_path: Path) -> None:
    """A folder paused for a full outbox (a 10 MB filesystem, min_free_bytes 50 MB) whose
    outbox then goes away shows the missing outbox alone: no "disk full" alarm or pause
    stays behind from before; once an outbox with room is back the file is sealed."""
    if os.geteuid() != 0:
        pytest.fail("mounts a tmpfs: needs root (CI runs as root)")
    layout = Layout(tmp_path, folder={"min_free_bytes": "50MB"})
    layout.write()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(layout.outbox)],
                   check=True)
    try:
        daemon = Daemon(layout).started()
        (layout.inbox / "waiting.txt").write_text("no room yet")
        wait_until(lambda: "min_free_bytes" in _status(layout)[1]["folders"]["scans"]["paused"],
                   timeout=20, what="the pause for the full outbox")
        subprocess.run(["umount", str(layout.outbox)], check=True)
        layout.outbox.rmdir()

        def blocked() -> list[str]:
            return [b["reason"] for b in _status(layout)[1]["folders"]["scans"]["blocked"]]

        wait_until(lambda: blocked() == ["outbox_missing"], timeout=20, what="outbox missing")
        report = _status(layout)[1]
        scans = report["folders"]["scans"]
        assert (scans["disk_full"], scans["paused"]) == ("", ""), scans
        assert not [a for a in report["alarms"] if "disk full" in a], report["alarms"]
        layout.outbox.mkdir()
        wait_until(lambda: (layout.outbox / "waiting.txt.json").exists(), timeout=30,
                   what="the file sealed")
        assert daemon.stop() == 0
    finally:
        subprocess.run(["umount", "-l", str(layout.outbox)], check=False,
                       stderr=subprocess.DEVNULL)
