"""`folderseal init --service`: what the README's service steps install, with the owners
and modes the service user needs, checked by running `check` and the daemon as that user.

Runs as root (as the README's `sudo folderseal init --service` does), into a temporary
tree: flags point the state folder and the folders there, so /etc, /var and /srv are
never touched. The service user is `nobody` (group `nogroup`), which every Debian has.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from folderseal import config as configuration
from tests.helpers import Daemon, Layout, folderseal, wait_until

USER, GROUP = "nobody", "nogroup"


@pytest.fixture
def root(open_tmp: Path) -> Path:
    """Where the service is installed: a folder the service user may enter."""
    if os.geteuid() != 0:
        pytest.fail("init --service sets owners: run the tests as root (CI does)")
    return open_tmp


def _init(root: Path, *extra: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    return folderseal("init", "--service", "--state-dir", str(root / "var/lib/folderseal"),
                      "--inbox", str(root / "srv/folderseal/inbox"),
                      "--outbox", str(root / "srv/folderseal/outbox"),
                      "--errors", str(root / "srv/folderseal/errors"),
                      *extra, str(root / "etc/folderseal"), user=user)


def _owner(path: Path) -> tuple[str, str, int]:
    st = path.stat()
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode))


def test_init_service_writes_what_the_service_user_can_use(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`init --service` gives the config and seal to root with the service's group, the
    password to root alone, the store and the setgid folders to the service user; the
    config loads, `check` passes as that user with the password as a systemd credential,
    the daemon run as that user seals a file a group member dropped, and a second run
    changes nothing."""
    out = _init(root, "--user", USER)
    assert out.returncode == 0, out.stdout + out.stderr
    etc, srv = root / "etc/folderseal", root / "srv/folderseal"
    state = root / "var/lib/folderseal"
    assert _owner(etc) == ("root", GROUP, 0o750)
    assert _owner(etc / "config.toml") == ("root", GROUP, 0o640)
    assert _owner(etc / "seal.p12") == ("root", GROUP, 0o640)
    assert _owner(etc / "seal.pass") == ("root", "root", 0o600)
    assert _owner(state) == (USER, GROUP, 0o750)
    assert _owner(srv) == ("root", "root", 0o755)
    for name in ("inbox", "outbox", "errors"):
        assert _owner(srv / name) == (USER, GROUP, 0o2770), name
    assert f"usermod -aG {GROUP}" in out.stdout, "the output says who must be in the group"
    assert "systemd-run" in out.stdout and "LoadCredential=seal.pass:" in out.stdout

    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    settings = configuration.load(etc / "config.toml")
    assert settings.state_dir == state
    folder = settings.folders["scans"]
    assert (folder.inbox, folder.outbox, folder.errors) == (
        srv / "inbox", srv / "outbox", srv / "errors")
    provider = settings.providers[folder.provider]
    assert isinstance(provider, configuration.LocalProviderConfig)
    assert str(provider.password_file) == "$CREDENTIALS_DIRECTORY/seal.pass"

    # What systemd's LoadCredential= makes: a copy only the service user can read.
    credentials = root / "credentials"
    credentials.mkdir()
    shutil.copy(etc / "seal.pass", credentials / "seal.pass")
    subprocess.run(["chown", "-R", f"{USER}:{GROUP}", str(credentials)], check=True)
    credentials.chmod(0o500)
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    check = folderseal("check", "-c", str(etc / "config.toml"), env=env, user=USER)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "all checks passed" in check.stdout and "problem" not in check.stdout
    peek = subprocess.run(["setpriv", "--reuid", USER, "--regid", GROUP, "--clear-groups",
                           "cat", str(etc / "seal.pass")], capture_output=True)
    assert peek.returncode != 0, "the service user can read the seal's password file"

    daemon = Daemon(Layout(etc), env=env, user=USER).started()
    dropped = srv / "inbox" / "scan.txt"
    dropped.write_text("dropped by a member of the group")
    dropped.chmod(0o640)  # group-readable only: the setgid inbox gave it the group
    wait_until(lambda: (srv / "outbox" / "scan.txt.json").exists(), timeout=60,
               what="scan.txt sealed by the daemon running as the service user")
    assert daemon.stop() == 0

    before = sorted((p, p.stat().st_mtime_ns) for p in etc.iterdir())
    again = _init(root, "--user", USER)
    assert again.returncode == 1 and "already exists" in again.stderr, again.stderr
    assert sorted((p, p.stat().st_mtime_ns) for p in etc.iterdir()) == before


def test_init_service_refuses_a_missing_user_and_says_how_to_make_it(root: Path) -> None:
    """Without the service user, `init --service` exits non-zero, shows the useradd
    command, and writes nothing."""
    out = _init(root, "--user", "folderseal-no-such-user")
    assert out.returncode != 0, out.stdout + out.stderr
    assert "useradd --system" in out.stderr and "folderseal-no-such-user" in out.stderr
    assert "Traceback" not in out.stderr
    assert list(root.iterdir()) == [], "a refused init wrote something"


def test_init_service_refuses_to_run_without_root(root: Path) -> None:
    """Run by a user other than root, `init --service` says to use sudo and writes nothing."""
    out = _init(root, "--user", USER, user=USER)
    assert out.returncode != 0, out.stdout + out.stderr
    assert "sudo folderseal init --service" in out.stderr
    assert list(root.iterdir()) == [], "a refused init wrote something"
