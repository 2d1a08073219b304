"""folderseal as a service: the unit file, sd_notify on a real socket, journald levels,
credentials, the metrics listener, and `status` exit codes.

The daemon runs as a subprocess; systemd's side of each protocol is played by the test
with the real thing where it can be had here: a unix datagram socket for NOTIFY_SOCKET,
`systemd-analyze` for the unit, a bindfs FUSE mount that stops answering for a hung share.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.torturekit.scenarios import Share
from folderseal.providers.seal.emulator import EmulatorHandle, start_seal
from folderseal.publish.probe import HUNG_SECONDS
from tests.helpers import Daemon, Layout, error_records, folderseal, sidecars, wait_until

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "folderseal.service"
METRICS = '\n[metrics]\nlisten = "127.0.0.1:0"\n'
KEY = "service-key-51d0c7a9"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with start_seal(api_key=KEY, data_dir=tmp_path / "emulator", seed=20261201,
                    step_delay=0.02, slow_seconds=0.3) as handle:
        yield handle


def _seal_layout(tmp_path: Path, url: str, **kwargs: Any) -> Layout:
    """A layout whose folder uses the SEAL emulator at ``url``."""
    (tmp_path / "signius.key").write_text(KEY + "\n")
    layout = Layout(tmp_path, provider={
        "kind": "seal", "base_url": url, "api_key_file": "signius.key",
        "poll_interval_seconds": 0.1, "timeout_seconds": 5.0, "status_grace_seconds": 1.0,
        "retry_max_seconds": 1.0},
        **kwargs)
    layout.write()
    return layout


class NotifySocket:
    """systemd's end of sd_notify: a unix datagram socket, every message kept."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fs-notify-", dir="/tmp"))  # short path
        self.path = self.dir / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def env(self, watchdog_seconds: float = 2.0) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path),
                "WATCHDOG_USEC": str(int(watchdog_seconds * 1e6))}

    def first(self, key: str) -> tuple[float, dict[str, str]] | None:
        return next(((t, m) for t, m in self.messages if key in m), None)

    def pings_since(self, since: float) -> int:
        return sum(1 for t, m in self.messages if t >= since and "WATCHDOG" in m)

    def statuses(self) -> list[str]:
        return [m["STATUS"] for _, m in self.messages if "STATUS" in m]

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def _base_url(daemon: Daemon) -> str:
    return str(daemon.wait_for_event("web.listening", timeout=60)["url"]).rstrip("/")


def _status(layout: Layout) -> tuple[int, dict[str, Any]]:
    out = folderseal("status", "--json", "-c", str(layout.config))
    return out.returncode, json.loads(out.stdout)


# -- the unit file ------------------------------------------------------------------------

def test_the_unit_file_is_hardened_to_an_exposure_of_two_or_less() -> None:
    """`systemd-analyze security --offline=true` rates the shipped unit 2.0 or lower."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: 'make test' installs it (Debian package "
                    "systemd)")
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                         capture_output=True, text=True)
    found = re.search(r"Overall exposure level for folderseal\.service: (\d+\.\d+)",
                      out.stdout + out.stderr)
    assert found, out.stdout + out.stderr
    assert float(found.group(1)) <= 2.0, out.stdout


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_file_says_how_the_service_runs() -> None:
    """notify with a watchdog, no restart loop on bad config, after the shares, secrets as
    credentials, the level for journald, an empty capability set; it runs the venv the
    README installs, may write the folders `init --service` makes, and files a line
    without a level (a traceback) as an error."""
    settings = _unit_settings()
    assert settings["ExecStart"] == ["/opt/folderseal/bin/folderseal run -c "
                                     "/etc/folderseal/config.toml"]
    assert settings["ReadWritePaths"] == ["-/srv/folderseal"]
    assert settings["SyslogLevel"] == ["err"]
    assert settings["LoadCredential"] == ["seal.pass:/etc/folderseal/seal.pass"]
    assert settings["StateDirectory"] == ["folderseal"]
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert int(settings["WatchdogSec"][0]) > 0
    assert settings["Restart"] == ["on-failure"]
    assert settings["RestartPreventExitStatus"] == ["78"]
    assert "network-online.target" in settings["After"][0]
    assert "remote-fs.target" in settings["After"][0]
    assert int(settings["TimeoutStopSec"][0]) >= 60
    assert settings["LoadCredential"] and settings["SyslogIdentifier"] == ["folderseal"]
    assert settings["CapabilityBoundingSet"] == [""] and settings["UMask"]
    assert settings["SystemCallFilter"][0] == "@system-service"
    assert settings["ProtectSystem"] == ["strict"] and settings["ReadWritePaths"]
    assert "RequiresMountsFor=" in UNIT.read_text()  # documented for the shares


def _install_block(readme: Path) -> list[str]:
    text = readme.read_text()
    found = re.search(r"^<!-- service-install:begin -->\n```sh\n(.*?)```\n"
                      r"<!-- service-install:end -->$", text, re.S | re.M)
    assert found, f"{readme} has no ```sh block between the service-install markers"
    return found.group(1).splitlines()


def test_the_readmes_install_the_service_the_unit_runs() -> None:
    """Both READMEs hold the same install block, which makes the venv the unit's
    ExecStart= runs, writes the config with `init --service`, and checks it with the
    unit's user and credential (not `sudo -u`, which has no credentials)."""
    steps = _install_block(REPO / "README.md")
    assert _install_block(REPO / "systemd" / "README.md") == steps
    settings = _unit_settings()
    binary, _, arguments = settings["ExecStart"][0].partition(" ")
    venv = str(Path(binary).parents[1])
    assert f"sudo python3 -m venv {venv}" in steps
    assert f"sudo {venv}/bin/pip install ." in steps
    assert not any(re.search(r"sudo (pip|python3 -m pip) install", s) for s in steps)
    assert "sudo folderseal init --service /etc/folderseal" in steps
    check = next(s for s in steps if "folderseal check" in s)
    assert check.startswith("sudo systemd-run --pipe --wait")
    assert f"-p User={settings['User'][0]}" in check
    assert f"-p LoadCredential={settings['LoadCredential'][0]}" in check
    assert arguments.removeprefix("run ") in check  # the config the service reads
    assert steps[-1] == "sudo systemctl enable --now folderseal"
    for readme in (REPO / "README.md", REPO / "systemd" / "README.md"):
        assert "sudo -u folderseal folderseal check" not in readme.read_text(), readme


# -- sd_notify ----------------------------------------------------------------------------

def test_ready_comes_after_the_first_scan_and_the_watchdog_follows_progress(
        tmp_path: Path, notify: NotifySocket) -> None:
    """READY=1 is sent once the files already in the inbox were found (its STATUS counts
    them), WATCHDOG=1 keeps coming while files flow, STATUS= tells what was signed, and
    STOPPING=1 comes at the end."""
    layout = Layout(tmp_path)
    layout.write()
    for i in range(3):
        (layout.inbox / f"early-{i}.txt").write_text(f"before the start {i}")
    daemon = Daemon(layout, env=notify.env(watchdog_seconds=1.0)).started()
    wait_until(lambda: notify.first("READY") is not None, what="READY=1")
    ready_at, ready = notify.first("READY") or (0.0, {})
    assert ready["STATUS"].startswith("3 waiting"), ready
    watching = [e for e in daemon.events() if e.get("event") == "folder.watching"]
    assert watching, "READY=1 before the folder was watched"
    wait_until(lambda: len(sidecars(layout.outbox)) == 3, what="three sidecars")
    wait_until(lambda: any("3 signed" in s for s in notify.statuses()), timeout=30,
               what="STATUS= with 3 signed")
    assert notify.pings_since(ready_at) >= 3, notify.messages
    assert daemon.stop() == 0
    wait_until(lambda: notify.first("STOPPING") is not None, timeout=5, what="STOPPING=1")


def test_a_share_down_at_boot_is_in_status_and_does_not_hold_ready_back(
        tmp_path: Path, notify: NotifySocket) -> None:
    """With the inbox missing at start, READY=1 still comes, STATUS= names the share out,
    and the watchdog keeps pinging through the outage (backing off is progress); when
    the inbox is back its files are sealed."""
    layout = Layout(tmp_path)
    layout.write()
    shutil.rmtree(layout.inbox)
    daemon = Daemon(layout, env=notify.env(watchdog_seconds=1.0)).started()
    wait_until(lambda: notify.first("READY") is not None, what="READY=1")
    ready_at, ready = notify.first("READY") or (0.0, {})
    assert "folder scans: share out: the inbox" in ready["STATUS"], ready
    assert ready["STATUS"].count("share out") == 1, ready
    time.sleep(3)
    assert notify.pings_since(ready_at) >= 2, "no watchdog pings during the outage"
    layout.inbox.mkdir()
    (layout.inbox / "late.txt").write_text("after the share came back")
    wait_until(lambda: len(sidecars(layout.outbox)) == 1, timeout=90, what="late.txt sealed")
    assert daemon.stop() == 0


def test_a_share_that_hangs_stops_only_its_folder_and_healthz_names_it(
        tmp_path: Path, notify: NotifySocket) -> None:
    """The inbox on a FUSE mount whose server stops answering (SIGSTOP: every access
    blocks, as on a hard-mounted NFS share that is gone) hangs only that folder's intake
    thread: the watchdog pings go on (a restart would hang on the same share), while
    /healthz answers 503 naming the hung folder and `status` has an alarm about it. The
    node goes on beating in the store. When the server answers again, /healthz is 200."""
    if os.geteuid() != 0 or shutil.which("bindfs") is None:
        pytest.fail("needs root and bindfs ('make test' installs it; CI runs as root)")
    layout = Layout(tmp_path, folder={"watch": "polling"}, extra=METRICS)
    layout.write()
    backing = tmp_path / "backing"
    backing.mkdir()
    share = Share(backing, layout.inbox)
    share.mount()
    try:
        daemon = Daemon(layout, env=notify.env(watchdog_seconds=1.0)).started()
        url = _base_url(daemon)
        wait_until(lambda: notify.first("READY") is not None, what="READY=1")
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert share.process is not None
        share.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.5)  # the next poll of the inbox blocks
            hung_at = time.monotonic()
            beat_from = _heartbeat(layout)
            wait_until(lambda: "its intake has waited" in httpx.get(f"{url}/healthz",
                                                                    timeout=10).text,
                       timeout=HUNG_SECONDS + 15, what="/healthz to name the hung folder")
            health = httpx.get(f"{url}/healthz", timeout=10)
            assert health.status_code == 503, health.text
            assert "folder scans:" in health.text and str(layout.inbox) in health.text
            took = time.monotonic() - hung_at
            assert notify.pings_since(hung_at) >= took / 2, "the watchdog pings stopped"
            assert _heartbeat(layout) - beat_from >= took / 2, "the heartbeat stopped"
            wait_until(lambda: any("its intake has waited" in a
                                   for a in _status(layout)[1]["alarms"]),
                       timeout=10, what="status to name the hung folder")
            code, report = _status(layout)
            alarm = next(a for a in report["alarms"] if "its intake has waited" in a)
            assert code == 1 and alarm.startswith("folder scans: not making progress:"), alarm
            assert "resumes by itself once the share answers" in alarm, alarm
        finally:
            share.process.send_signal(signal.SIGCONT)
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=10).status_code == 200,
                   timeout=15, what="/healthz 200 once the share answered again")
        (layout.inbox / "late.txt").write_text("after the share answered")
        wait_until(lambda: (layout.outbox / "late.txt.json").exists(), timeout=30,
                   what="late.txt sealed")
        assert daemon.stop() == 0
    finally:
        share.close()  # every bindfs it started ends too


def _heartbeat(layout: Layout) -> float:
    """The node's last heartbeat as the store stamped it (read beside the daemon)."""
    db = sqlite3.connect(f"file:{layout.state / 'folderseal.sqlite'}?mode=ro", uri=True,
                         timeout=10)
    try:
        row = db.execute("SELECT heartbeat_at FROM nodes").fetchone()
    finally:
        db.close()
    return 0.0 if row is None else float(row[0])


def _process_group(pgid: int) -> list[str]:
    """The processes of a process group, with their command lines."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, ValueError):
                continue  # gone meanwhile
    return found


def test_no_process_outlives_a_clean_stop(tmp_path: Path) -> None:
    """Under KillMode=mixed systemd SIGKILLs whatever of the unit is left once the daemon
    exits: after SIGTERM and exit 0, no process of the daemon's process group is left
    (its signing workers and multiprocessing's resource tracker are gone)."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(layout, new_session=True).started()
    (layout.inbox / "a.txt").write_text("signed by a worker")
    wait_until(lambda: (layout.outbox / "a.txt.json").exists(), what="a.txt sealed")
    pgid = daemon.process.pid
    running = _process_group(pgid)
    assert any("resource_tracker" in p for p in running), running  # what used to be left
    assert daemon.stop() == 0
    left = _process_group(pgid)
    assert left == [], f"left after the daemon exited: {left}"
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


# -- journald, credentials, file modes ----------------------------------------------------

def test_under_journald_each_line_carries_its_level(tmp_path: Path) -> None:
    """When stdout is the journal's stream (JOURNAL_STREAM names its device and inode),
    every JSON line starts with its syslog level: <6> info, <4> warning, <3> error."""
    layout = Layout(tmp_path)
    layout.write()
    log = tmp_path / "journal.log"
    log.touch()
    st = log.stat()
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    command = [sys.executable, "-m", "folderseal", "run", "-c", str(layout.config)]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **env})
        try:
            (layout.inbox / "empty.txt").write_bytes(b"")  # fails: a warning
            wait_until(lambda: error_records(layout.errors), timeout=60, what="empty.txt failed")
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    levels = {"<7>": "debug", "<6>": "info", "<4>": "warning", "<3>": "error"}
    for line in lines:
        prefix, body = line[:3], line[3:]
        assert prefix in levels, line
        assert json.loads(body)["level"] == levels[prefix], line
    assert {line[:3] for line in lines} >= {"<6>", "<4>"}


def test_under_journald_the_reason_a_start_fails_is_an_error(tmp_path: Path) -> None:
    """When stderr is the journal's stream, each line of the reason `run` refuses to start
    (one line, or a configuration error over several) starts with <3>, so
    `journalctl -p err` shows it."""
    layout = Layout(tmp_path)
    layout.write()
    layout.state.rmdir()
    layout.state.write_text("a file where the state folder should be")
    journal = tmp_path / "journal.log"
    for config in (layout.config.read_text(),
                   layout.config.read_text().replace("settle_seconds = 0.3",
                                                     'settle_seconds = "soon"')):
        layout.config.write_text(config)
        journal.write_text("")
        st = journal.stat()
        with journal.open("w") as stderr:
            run = subprocess.run([sys.executable, "-m", "folderseal", "run", "-c",
                                  str(layout.config)], stdout=subprocess.DEVNULL,
                                 stderr=stderr, timeout=60,
                                 env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        lines = journal.read_text().splitlines()
        assert run.returncode == 78 and lines, lines
        assert all(line.startswith("<3>") for line in lines), lines
        assert lines[0].startswith("<3>folderseal: "), lines


def test_secrets_come_from_the_credentials_directory(tmp_path: Path) -> None:
    """password_file = "$CREDENTIALS_DIRECTORY/…" is read from the folder systemd made
    for LoadCredential=; without that variable `check` exits 78 and says what to do."""
    layout = Layout(tmp_path, provider={"password_file": "$CREDENTIALS_DIRECTORY/seal.pass"})
    layout.write()
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    shutil.copy(tmp_path / "seal" / "seal.pass", credentials / "seal.pass")
    check = folderseal("check", "-c", str(layout.config),
                       env={"CREDENTIALS_DIRECTORY": ""})
    assert check.returncode == 78, check.stdout + check.stderr
    assert "LoadCredential" in check.stdout + check.stderr
    daemon = Daemon(layout, env={"CREDENTIALS_DIRECTORY": str(credentials)}).started()
    (layout.inbox / "a.txt").write_text("sealed with a credential")
    wait_until(lambda: (layout.outbox / "a.txt.json").exists(), what="a.txt sealed")
    assert daemon.stop() == 0


def test_outputs_get_the_folder_mode_whatever_the_umask(tmp_path: Path) -> None:
    """Under UMask=0077 outputs, sidecars, error records and the folders made for them
    still get file_mode (and its folder mode), so people on the share can read them."""
    layout = Layout(tmp_path, folder={"file_mode": "0644"})
    layout.write()
    daemon = Daemon(layout, umask=0o077).started()
    (layout.inbox / "sub").mkdir()
    (layout.inbox / "sub" / "a.txt").write_text("readable by all")
    (layout.inbox / "sub" / "empty.txt").write_bytes(b"")
    wait_until(lambda: (layout.outbox / "sub" / "a.txt.json").exists(), what="a.txt sealed")
    wait_until(lambda: error_records(layout.errors), timeout=60, what="empty.txt failed")
    assert daemon.stop() == 0
    for folder in (layout.outbox / "sub", layout.errors / "sub"):
        assert folder.stat().st_mode & 0o777 == 0o755, folder
    for path in [*(layout.outbox / "sub").iterdir(), *error_records(layout.errors)]:
        assert path.stat().st_mode & 0o777 == 0o644, path


# -- a state folder that cannot be used ----------------------------------------------------

def _no_traceback(out: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_a_state_dir_the_user_may_not_write_is_a_configuration_error(open_tmp: Path) -> None:
    """run, sign, retry and recover as a user who may not write state_dir (or the store in
    it) exit 78, naming the folder and the chown that fixes it (no restart loop under
    systemd); status, which only reads, still reports, and exits 78 with what to do once
    it may not read either."""
    layout = Layout(open_tmp)
    layout.write()
    subprocess.run(["chown", "-R", "nobody:nogroup", str(open_tmp)], check=True)
    os.chown(layout.state, 0, 0)  # root's, 0755: nobody may look but not write
    (layout.inbox / "a.txt").write_text("to be signed")
    for args in (("run",), ("sign", str(layout.inbox / "a.txt")), ("retry", "--all"),
                 ("recover",)):
        out = folderseal(*args, "-c", str(layout.config), user="nobody", timeout=60)
        text = _no_traceback(out)
        assert out.returncode == 78, f"{args}: {text}"
        assert f"state_dir {layout.state}" in out.stderr, text
        assert f"chown -R nobody {layout.state}" in out.stderr, text
    status = folderseal("status", "-c", str(layout.config), user="nobody")
    assert status.returncode == 1 and "daemon not running" in _no_traceback(status)
    layout.state.chmod(0o700)
    status = folderseal("status", "-c", str(layout.config), user="nobody")
    text = _no_traceback(status)
    assert status.returncode == 78 and f"state_dir {layout.state}" in status.stderr, text
    assert "may not read" in status.stderr, text
    # A store left by a run as root, in a folder the user owns: still not usable.
    layout.state.chmod(0o755)
    shutil.chown(layout.state, "nobody", "nogroup")
    (layout.state / "folderseal.sqlite").write_bytes(b"")
    out = folderseal("run", "-c", str(layout.config), user="nobody", timeout=60)
    text = _no_traceback(out)
    assert out.returncode == 78, text
    assert f"may not write {layout.state / 'folderseal.sqlite'}" in out.stderr, text


def test_a_state_dir_of_the_service_user_is_not_handed_to_another_account(
        open_tmp: Path) -> None:
    """An operator running retry under their own account, in a state_dir the service's
    user owns, is told to run it as that user (or root), never to chown the store to
    themselves (which would lock the service out)."""
    layout = Layout(open_tmp)
    layout.write()
    subprocess.run(["chown", "-R", "daemon:daemon", str(layout.state)], check=True)
    out = folderseal("retry", "--all", "-c", str(layout.config), user="nobody", timeout=60)
    text = _no_traceback(out)
    assert out.returncode == 78, text
    assert f"state_dir {layout.state} belongs to user daemon" in out.stderr, text
    assert f"sudo -u daemon folderseal retry --all -c {layout.config}" in out.stderr, text
    assert "chown" not in out.stderr, text


def test_a_missing_state_dir_is_to_be_made_for_the_service_not_for_whoever_ran_it(
        open_tmp: Path) -> None:
    """A state_dir that is not there, which the user may not create, is to be made for
    the account that runs the service: run as nobody (not under systemd), the advice is
    not to make it nobody's, which would hand the store to whoever ran the command."""
    layout = Layout(open_tmp)
    layout.write()
    layout.state.rmdir()
    subprocess.run(["chown", "-R", "nobody:nogroup", str(open_tmp)], check=True)
    os.chown(open_tmp, 0, 0)  # root's, 0755: nobody may not make the state folder
    out = folderseal("run", "-c", str(layout.config), user="nobody", timeout=60,
                     env={"INVOCATION_ID": ""})  # not a systemd service's process
    text = _no_traceback(out)
    assert out.returncode == 78, text
    assert f"state_dir {layout.state} does not exist and user nobody may not create it" \
        in out.stderr, text
    assert "the account that runs the service" in out.stderr, text
    assert "install -d -o nobody" not in out.stderr, text


def test_a_state_dir_below_a_closed_folder_is_named_unreachable_not_missing(
        open_tmp: Path) -> None:
    """A state_dir that is there, below a folder the user may not enter, is reported as
    out of that user's reach (let it enter the folders above), not as missing."""
    layout = Layout(open_tmp)
    layout.write()
    subprocess.run(["chown", "-R", "nobody:nogroup", str(open_tmp)], check=True)
    closed = open_tmp / "closed"
    (closed / "state").mkdir(parents=True)
    closed.chmod(0o700)
    os.chown(closed, 0, 0)
    out = folderseal("run", "-c", str(layout.config), user="nobody", timeout=60,
                     env={"FOLDERSEAL_STATE_DIR": str(closed / "state")})
    text = _no_traceback(out)
    assert out.returncode == 78, text
    assert f"state_dir {closed / 'state'}: user nobody may not reach it" in out.stderr, text
    assert "does not exist" not in out.stderr, text


def test_a_file_in_place_of_the_state_dir_is_a_configuration_error(tmp_path: Path) -> None:
    """With a regular file where state_dir should be, run, sign, retry, recover and status
    exit 78 saying it is not a folder."""
    layout = Layout(tmp_path)
    layout.write()
    layout.state.rmdir()
    layout.state.write_text("not a folder")
    (layout.inbox / "a.txt").write_text("to be signed")
    for args in (("run",), ("sign", str(layout.inbox / "a.txt")), ("retry", "--all"),
                 ("recover",), ("status",)):
        out = folderseal(*args, "-c", str(layout.config), timeout=60)
        text = _no_traceback(out)
        assert out.returncode == 78, f"{args}: {text}"
        assert f"state_dir {layout.state} is not a folder" in out.stderr, text
    assert layout.state.read_text() == "not a folder"


def test_a_state_dir_on_a_read_only_filesystem_is_a_configuration_error(
        tmp_path: Path) -> None:
    """state_dir on a read-only mount (as ProtectSystem=strict makes every path not in
    ReadWritePaths=): run exits 78 saying so and where a writable state_dir goes."""
    if os.geteuid() != 0:
        pytest.fail("needs root to mount a read-only tmpfs (CI runs as root)")
    layout = Layout(tmp_path)
    layout.write()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(layout.state)],
                   check=True)
    try:
        out = folderseal("run", "-c", str(layout.config), timeout=60)
    finally:
        subprocess.run(["umount", str(layout.state)], check=True)
    text = _no_traceback(out)
    assert out.returncode == 78, text
    assert f"state_dir {layout.state} is on a read-only filesystem" in out.stderr, text
    assert "StateDirectory=" in out.stderr, text


# -- metrics and health -------------------------------------------------------------------

def _samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_metrics_and_healthz_are_scraped_while_files_flow(
        tmp_path: Path, emulator: EmulatorHandle) -> None:
    """While files flow to the SEAL emulator (which answers 500 now and then), /metrics
    counts them by folder (seen, claimed, signed, failed), times provider calls by
    operation and outcome, counts retries, and gauges batches, the oldest waiting file,
    a full outbox and a share out; /healthz answers 200 "ok". A share outage shows in
    the gauges and `status` exits 1, while /healthz stays 200: the watcher is alive."""
    layout = _seal_layout(tmp_path, emulator.url, extra=METRICS)
    daemon = Daemon(layout).started()
    emulator.set_faults("500-before=0.25")  # after the start's check call: each is counted
    url = _base_url(daemon)
    scrapes = []
    for i in range(12):
        (layout.inbox / f"flow-{i}.txt").write_text(f"flowing {i}")
        if i == 6:
            (layout.inbox / "empty.txt").write_bytes(b"")
        scrapes.append(httpx.get(f"{url}/metrics").text)
        assert httpx.get(f"{url}/healthz").text == "ok\n"
        time.sleep(0.1)
    wait_until(lambda: len(sidecars(layout.outbox)) == 12 and error_records(layout.errors),
               timeout=60, what="12 sealed and one failed")
    wait_until(lambda: _samples(httpx.get(f"{url}/metrics").text).get(
        'folderseal_files_signed_total{folder="scans"}') == 12, timeout=10, what="12 signed")
    during = [_samples(s).get('folderseal_files_seen_total{folder="scans"}', 0) for s in scrapes]
    assert during == sorted(during) and during[-1] > 0, "seen did not grow while files flowed"
    final = _samples(httpx.get(f"{url}/metrics").text)
    assert final['folderseal_files_seen_total{folder="scans"}'] == 13
    assert final['folderseal_files_claimed_total{folder="scans"}'] == 13
    assert final['folderseal_files_failed_total{code="empty",folder="scans"}'] == 1
    for operation in ("create", "upload", "accept", "status", "download", "delete"):
        key = (f'folderseal_provider_call_seconds_count{{operation="{operation}",'
               f'outcome="ok",provider="local"}}')
        assert final.get(key, 0) >= 1, key
    transient = sum(v for k, v in final.items() if k.startswith(
        "folderseal_provider_call_seconds_count") and 'outcome="transient"' in k)
    retries = sum(v for k, v in final.items() if k.startswith("folderseal_retries_total"))
    assert transient == emulator.injected_faults()["500-before"] > 0
    assert retries >= 1
    assert final['folderseal_batches{folder="scans",state="CLEANED"}'] >= 1
    assert final['folderseal_outbox_full{folder="scans"}'] == 0
    assert final['folderseal_share_outage{folder="scans"}'] == 0
    assert 'folderseal_oldest_waiting_seconds{folder="scans"}' in final
    assert "process_resident_memory_bytes" in final

    layout.inbox.rename(tmp_path / "inbox-away")  # the share goes away
    wait_until(lambda: _samples(httpx.get(f"{url}/metrics").text).get(
        'folderseal_share_outage{folder="scans"}') == 1, timeout=30, what="outage gauge")
    assert httpx.get(f"{url}/healthz").status_code == 200
    code, report = _status(layout)
    assert code == 1 and any("share out" in a for a in report["alarms"]), report["alarms"]
    (tmp_path / "inbox-away").rename(layout.inbox)
    wait_until(lambda: _status(layout)[0] == 0, timeout=60, what="status healthy again")
    assert daemon.stop() == 0


def test_a_trial_seal_is_called_not_qualified_everywhere_an_operator_looks(
        tmp_path: Path) -> None:
    """With the self-signed trial seal, `check` passes with a warning line, the daemon logs
    a warning at start, the status page shows a banner and `status` prints it first, each
    saying "sealing with a self-signed trial certificate: NOT QUALIFIED"."""
    loud = "sealing with a self-signed trial certificate: NOT QUALIFIED"
    layout = Layout(tmp_path, extra=METRICS)
    layout.write()
    check = folderseal("check", "-c", str(layout.config))
    assert check.returncode == 0, check.stdout + check.stderr
    assert any(line.startswith("warning: ") and loud in line
               for line in check.stdout.splitlines()), check.stdout
    daemon = Daemon(layout).started()
    event = daemon.wait_for_event("provider.warning")
    assert event["level"] == "warning" and loud in event["warning"], event
    html = httpx.get(_base_url(daemon) + "/").text
    banner = re.search(r'<div class="banner not-qualified" role="alert">([^<]*)</div>', html)
    assert banner and loud in banner.group(1), html
    status = folderseal("status", "-c", str(layout.config))
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.splitlines()[1].startswith(f"WARNING: provider local: {loud}"), \
        status.stdout
    assert daemon.stop() == 0


def test_process_metrics_survive_procsubset_pid(tmp_path: Path) -> None:
    """Run under a /proc mounted as the unit's ProcSubset=pid mounts it (no /proc/stat),
    the daemon's /metrics still has its memory, CPU, file descriptors and start time."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("needs root and unshare (util-linux) to mount a private /proc")
    layout = Layout(tmp_path, extra=METRICS)
    layout.write()
    # A mount namespace of its own (unshare makes it private), then exec: one process.
    pid_only = ("unshare", "--mount", "sh", "-c",
                'mount -t proc -o subset=pid proc /proc && test ! -e /proc/stat && exec "$@"',
                "sh")
    daemon = Daemon(layout, wrapper=pid_only).started()
    samples = _samples(httpx.get(_base_url(daemon) + "/metrics").text)
    assert daemon.stop() == 0
    assert samples.get("process_resident_memory_bytes", 0) > 1_000_000, samples
    assert samples.get("process_virtual_memory_bytes", 0) > 1_000_000, samples
    assert samples.get("process_open_fds", 0) > 3, samples
    assert samples.get("process_max_fds", 0) > 0, samples
    assert "process_cpu_seconds_total" in samples, samples
    started = samples.get("process_start_time_seconds", 0)
    assert time.time() - 120 < started <= time.time(), samples


def test_a_port_in_use_is_a_configuration_error(tmp_path: Path) -> None:
    """[metrics] listen on a port another process holds: exit 78, naming the key."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        layout = Layout(tmp_path, extra=f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
        layout.write()
        run = folderseal("run", "-c", str(layout.config), timeout=60)
    assert run.returncode == 78, run.stdout + run.stderr
    assert "[metrics] listen" in run.stderr and "FOLDERSEAL_METRICS__LISTEN" in run.stderr


# -- folderseal status --------------------------------------------------------------------

def test_status_exit_code_says_whether_a_person_is_needed(tmp_path: Path) -> None:
    """0 while healthy, files in errors included (a normal outcome, listed); 1 with the
    daemon down, or a file not delivered after stuck_after_seconds."""
    layout = Layout(tmp_path, folder={"stuck_after_seconds": 4.0})
    layout.write()
    code, report = _status(layout)
    assert code == 1 and "the daemon is not running" in report["alarms"]
    daemon = Daemon(layout).started()
    (layout.inbox / "empty.txt").write_bytes(b"")
    (layout.inbox / "a.txt").write_text("fine")
    wait_until(lambda: error_records(layout.errors) and sidecars(layout.outbox), timeout=60,
               what="one failed, one sealed")
    wait_until(lambda: _status(layout)[0] == 0, timeout=10, what="status 0")
    code, report = _status(layout)
    assert report["folders"]["scans"]["failed"][0]["source"] == "empty.txt"
    # The outbox goes away: a file then waits in the inbox, and past stuck_after_seconds
    # that is an alarm too, until the outbox is back and it is delivered.
    layout.outbox.rename(tmp_path / "outbox-away")
    (layout.inbox / "b.txt").write_text("waits for the outbox")

    def stuck_alarm() -> bool:
        code, report = _status(layout)
        return code == 1 and any("stuck_after_seconds" in a for a in report["alarms"])

    wait_until(stuck_alarm, timeout=30, what="the stuck alarm and exit 1")
    (tmp_path / "outbox-away").rename(layout.outbox)
    wait_until(lambda: _status(layout)[0] == 0, timeout=60, what="status 0 after delivery")
    assert (layout.outbox / "b.txt.json").exists()
    assert daemon.stop() == 0
    code, report = _status(layout)
    assert code == 1 and report["daemon"]["running"] is False


def test_status_on_a_terminal_is_a_table(tmp_path: Path) -> None:
    """On a TTY, `status` draws rich tables; piped, the same tables without colour codes."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(layout).started()
    (layout.inbox / "empty.txt").write_bytes(b"")
    wait_until(lambda: error_records(layout.errors), timeout=60, what="empty.txt failed")
    pid, fd = pty.fork()
    if pid == 0:  # the child: status with its stdout on the terminal
        os.execv(sys.executable, [sys.executable, "-m", "folderseal", "status", "-c",
                                  str(layout.config)])
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, code = os.waitpid(pid, 0)
    screen = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(code) == 0, screen
    assert "┃" in screen and "empty.txt" in screen and "failed" in screen, screen
    piped = folderseal("status", "-c", str(layout.config))
    assert "empty.txt" in piped.stdout and "\x1b[" not in piped.stdout
    assert daemon.stop() == 0
