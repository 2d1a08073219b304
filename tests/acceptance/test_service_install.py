"""`folderseal init --service`: what the README's service steps install, with the owners
and modes the service user needs, checked by running `check` and the daemon as that user.

Runs as root (as the README's `sudo folderseal init --service` does), into a temporary
tree: flags point the state folder and the folders there, so /etc, /var and /srv are
never touched. The service user is `nobody` (group `nogroup`, the service's group here),
which every Debian has; the drop group is made for the test and removed after it.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shlex
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from folderseal.commands.init import ServiceLayout, init_service
from folderseal.core import config as configuration
from folderseal.providers import NOT_QUALIFIED
from folderseal.providers.local.config import LocalProviderConfig
from tests.helpers import Daemon, Layout, folderseal, wait_until

USER, GROUP = "nobody", "nogroup"
DROP = "folderseal-test-drop"
DROPPER = 4242  # a uid and gid no account has: someone who only drops files


def _remove_drop_group() -> None:
    with contextlib.suppress(KeyError):
        grp.getgrnam(DROP)
        subprocess.run(["groupdel", DROP], check=True)


@pytest.fixture
def root(open_tmp: Path) -> Iterator[Path]:
    """Where the service is installed: a folder the service user may enter."""
    if os.geteuid() != 0:
        pytest.fail("init --service sets owners: run the tests as root (CI does)")
    _remove_drop_group()
    yield open_tmp
    _remove_drop_group()


def _init(root: Path, *extra: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    return folderseal("init", "--service", "--drop-group", DROP,
                      "--state-dir", str(root / "var/lib/folderseal"),
                      "--inbox", str(root / "srv/folderseal/inbox"),
                      "--outbox", str(root / "srv/folderseal/outbox"),
                      "--errors", str(root / "srv/folderseal/errors"),
                      *extra, str(root / "etc/folderseal"), user=user)


def _owner(path: Path) -> tuple[str, str, int]:
    st = path.stat()
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode))


def _as_dropper(*command: str) -> subprocess.CompletedProcess[str]:
    """``command`` as an account in the drop group only, with the usual umask 027."""
    return subprocess.run(["setpriv", f"--reuid={DROPPER}", f"--regid={DROPPER}",
                           f"--groups={grp.getgrnam(DROP).gr_gid}", "sh", "-c",
                           "umask 027 && " + shlex.join(command)],
                          capture_output=True, text=True, cwd="/")


def test_init_service_writes_what_the_service_user_can_use(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`init --service` gives the config and seal to root with the service's own group,
    the password to root alone, the store to the service user, and the setgid folders to
    the service user with the drop group, which it makes and adds the service user to;
    the config loads, `check` passes as that user with the password as a systemd
    credential, a member of the drop group cannot read the config or the seal but drops
    a file the daemon (run as that user) seals, and a second run changes nothing."""
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
        assert _owner(srv / name) == (USER, DROP, 0o2770), name
    assert USER in grp.getgrnam(DROP).gr_mem, "the service user is not in the drop group"
    assert f"made the group {DROP}" in out.stdout and f"added {USER} to the group" in out.stdout
    assert f"usermod -aG {DROP} NAME" in out.stdout, "the output says who must be in it"
    assert f"Keep them out of the group {GROUP}" in out.stdout
    assert "systemd-run" in out.stdout and "LoadCredential=seal.pass:" in out.stdout

    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    settings = configuration.load(etc / "config.toml")
    assert settings.state_dir == state
    folder = settings.folders["scans"]
    assert (folder.inbox, folder.outbox, folder.errors) == (
        srv / "inbox", srv / "outbox", srv / "errors")
    provider = settings.providers[folder.provider]
    assert isinstance(provider, LocalProviderConfig)
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
    for secret in ("config.toml", "seal.p12"):
        peek = _as_dropper("cat", str(etc / secret))
        assert peek.returncode != 0, f"a member of the drop group can read {secret}"

    daemon = Daemon(Layout(etc), env=env, user=USER).started()
    dropped = _as_dropper("sh", "-c", f"echo dropped by a scanner > {srv}/inbox/scan.txt")
    assert dropped.returncode == 0, dropped.stderr
    st = (srv / "inbox" / "scan.txt").stat()  # before it settles (5 s): the setgid group
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (grp.getgrnam(DROP).gr_gid, 0o640)
    wait_until(lambda: (srv / "outbox" / "scan.txt.json").exists(), timeout=60,
               what="scan.txt sealed by the daemon running as the service user")
    _status_shows_the_trial_seal(etc / "config.toml", running=True)
    assert daemon.stop() == 0
    _status_shows_the_trial_seal(etc / "config.toml", running=False)

    before = sorted((p, p.stat().st_mtime_ns) for p in etc.iterdir())
    again = _init(root, "--user", USER)
    assert again.returncode == 1 and "already exists" in again.stderr, again.stderr
    assert sorted((p, p.stat().st_mtime_ns) for p in etc.iterdir()) == before


def _status_shows_the_trial_seal(config: Path, running: bool) -> None:
    """`status` run by root outside the service (no $CREDENTIALS_DIRECTORY, so it cannot
    read the seal itself) shows the NOT QUALIFIED banner: the running daemon's finding,
    or, once it stopped, its finding when it last ran beside why it cannot check here."""
    banner = f"WARNING: provider local: {NOT_QUALIFIED}"

    def status() -> str:
        return " ".join(folderseal("status", "-c", str(config)).stdout.split())  # unwrapped

    wait_until(lambda: banner in status(), timeout=15, what="the NOT QUALIFIED banner")
    if not running:
        out = status()
        assert "cannot be checked here" in out and "the daemon's finding when it last ran" \
            in out.split(banner, 1)[1], out


def test_init_service_refuses_the_services_own_group_as_the_drop_group(root: Path) -> None:
    """The drop group may not be the service's own group (which reads the configuration):
    `init --service` refuses, says why, and writes nothing."""
    out = folderseal("init", "--service", "--user", USER, "--drop-group", GROUP,
                     "--state-dir", str(root / "state"), "--inbox", str(root / "in"),
                     "--outbox", str(root / "out"), "--errors", str(root / "err"),
                     str(root / "etc"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"the drop group cannot be {GROUP}" in out.stderr and "--drop-group" in out.stderr
    assert list(root.iterdir()) == [], "a refused init wrote something"


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


def test_init_service_uses_a_new_drop_group_the_name_cache_does_not_know_yet(
        root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Right after it makes the drop group, a name service cache (nscd) may still say
    there is no such group: `init --service` takes the group's id from /etc/group, which
    groupadd wrote, and finishes, instead of failing with an uncaught KeyError."""
    looked_up = grp.getgrnam

    def cached_miss(name: str) -> grp.struct_group:
        if name == DROP:
            raise KeyError(f"getgrnam(): name not found: {name!r}")
        return looked_up(name)

    monkeypatch.setattr(grp, "getgrnam", cached_miss)
    layout = ServiceLayout(root / "etc/folderseal", USER, DROP, root / "var/lib/folderseal",
                           root / "srv/inbox", root / "srv/outbox", root / "srv/errors")
    assert init_service(layout) == 0, capsys.readouterr().err
    monkeypatch.undo()
    made = grp.getgrnam(DROP)
    assert USER in made.gr_mem
    assert (root / "srv/inbox").stat().st_gid == made.gr_gid
