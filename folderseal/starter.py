"""``folderseal init``: a starter configuration and a trial seal, ready to run.

The seal is self-signed and clearly labelled as not qualified: it proves the
pipeline works, not who sealed. Nothing existing is overwritten.

``init DIR`` is for a trial: everything in one folder, paths relative to the
configuration, so the folder can be moved. ``init --service DIR`` (as root) is for
the systemd unit: the configuration and seal in DIR (``/etc/folderseal``), the store
in ``/var/lib/folderseal`` and the folders under ``/srv/folderseal``, each with the
owner and mode the service user needs and no more. The seal's password stays
``root:root 0600``: the service reads the copy systemd makes with ``LoadCredential=``.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path

from folderseal.engine import make_trial_seal
from folderseal.errors import ExitCode

CONFIG = """\
# folderseal starter configuration, written by `folderseal init`.
# Every key is documented in config.example.toml; paths are relative to this file.
state_dir = "state"

[log]
format = "auto"        # console on a terminal, JSON under systemd
level = "info"

[providers.local]
kind = "local"
# A self-signed TRIAL seal, NOT QUALIFIED: replace it with your organisation's
# seal certificate (PKCS#12, or key = "...pem" plus certificate = "...pem").
certificate = "seal.p12"
password_file = "seal.pass"

[folders.demo]
inbox = "inbox"
outbox = "outbox"
errors = "errors"
provider = "local"
# Quick for a demonstration; scanners writing page by page want 5 s or more.
settle_seconds = 1.0
batch_max_wait_seconds = 1.0
min_free_bytes = "100MB"
"""

SERVICE_CONFIG = """\
# folderseal service configuration, written by `folderseal init --service`.
# Every key is documented in config.example.toml.
state_dir = {state_dir}

[log]
format = "auto"        # JSON lines with journald levels under systemd
level = "info"

[providers.local]
kind = "local"
# A self-signed TRIAL seal, NOT QUALIFIED: replace it with your organisation's
# seal certificate (PKCS#12, or key = "...pem" plus certificate = "...pem").
certificate = {certificate}
# The copy systemd makes for the service only (LoadCredential=seal.pass:...).
password_file = "$CREDENTIALS_DIRECTORY/seal.pass"

[folders.scans]
inbox = {inbox}
outbox = {outbox}
errors = {errors}
provider = "local"
"""

SEAL_FILES = ("config.toml", "seal.p12", "seal.pass")
# What systemd/folderseal.service expects; other paths need a drop-in.
UNIT_CONFIG_DIR = Path("/etc/folderseal")
UNIT_STATE_DIR = Path("/var/lib/folderseal")
UNIT_SHARE = Path("/srv/folderseal")


def _taken(directory: Path) -> bool:
    taken = [directory / name for name in SEAL_FILES if (directory / name).exists()]
    if taken:
        print(f"folderseal init: already exists: {', '.join(map(str, taken))}; nothing was "
              "changed (choose an empty folder)", file=sys.stderr)
    return bool(taken)


def init(directory: Path) -> int:
    config = directory / "config.toml"
    if _taken(directory):
        return ExitCode.FAILURE
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("inbox", "outbox", "errors", "state"):
        (directory / sub).mkdir(exist_ok=True)
    seal = make_trial_seal(directory)
    config.write_text(CONFIG, encoding="utf-8")
    print(f"wrote {config} and a trial seal ({seal.pkcs12_path}, NOT QUALIFIED).\n"
          f"Start:  folderseal run -c {config}\n"
          f"Then drop files into {directory / 'inbox'}; signed results appear in "
          f"{directory / 'outbox'}.")
    return ExitCode.OK


@dataclass(frozen=True, slots=True)
class ServiceLayout:
    """Where ``init --service`` puts things (absolute paths) and whom the service runs as."""

    directory: Path
    user: str
    state_dir: Path
    inbox: Path
    outbox: Path
    errors: Path

    @property
    def folders(self) -> tuple[Path, Path, Path]:
        return self.inbox, self.outbox, self.errors


def init_service(layout: ServiceLayout) -> int:
    """Write the service's configuration, trial seal and folders; 1 with a message if not."""
    if os.geteuid() != 0:
        print("folderseal init --service sets owners and modes, so it runs as root: "
              f"sudo folderseal init --service {layout.directory}", file=sys.stderr)
        return ExitCode.FAILURE
    try:
        account = pwd.getpwnam(layout.user)
    except KeyError:
        print(f"folderseal init --service: there is no user {layout.user!r} to run the "
              "service as; create it first:\n  sudo useradd --system --home-dir "
              f"/var/lib/folderseal --shell /usr/sbin/nologin {layout.user}\n"
              "(or name another user with --user); nothing was changed", file=sys.stderr)
        return ExitCode.FAILURE
    uid, gid = account.pw_uid, account.pw_gid
    group = _group_name(gid)
    blocked = [p for p in (layout.directory, layout.state_dir, *layout.folders)
               if p.exists() and not p.is_dir()]
    if blocked:
        print(f"folderseal init --service: not a folder: {', '.join(map(str, blocked))}; "
              "nothing was changed (move it away or choose another path)", file=sys.stderr)
        return ExitCode.FAILURE
    if _taken(layout.directory):
        return ExitCode.FAILURE
    kept = [p for p in (layout.directory, layout.state_dir, *layout.folders) if p.exists()]
    _make_folder(layout.directory, 0o750, 0, gid)
    seal = make_trial_seal(layout.directory)   # both files root:root 0600
    os.chown(seal.pkcs12_path, 0, gid)          # the service reads the (encrypted) key
    os.chmod(seal.pkcs12_path, 0o640)
    config = layout.directory / "config.toml"
    _write_new(config, SERVICE_CONFIG.format(
        state_dir=_quoted(layout.state_dir), certificate=_quoted(seal.pkcs12_path),
        inbox=_quoted(layout.inbox), outbox=_quoted(layout.outbox),
        errors=_quoted(layout.errors)), 0o640, gid)
    _make_folder(layout.state_dir, 0o750, uid, gid)
    for folder in layout.folders:
        # setgid: files dropped by members of the group keep it, so the service reads them
        _make_folder(folder, 0o2770, uid, gid)
    _explain(layout, group, seal.pkcs12_path, seal.password_path, kept)
    return ExitCode.OK


def _explain(layout: ServiceLayout, group: str, p12: Path, password: Path,
             kept: list[Path]) -> None:
    user, config = layout.user, layout.directory / "config.toml"
    lines = [f"wrote {config} (root:{group} 0640) and a trial seal, NOT QUALIFIED: "
             f"{p12} (root:{group} 0640), its password {password} (root:root 0600, read "
             "by the service through LoadCredential=)",
             f"state_dir {layout.state_dir} ({user}:{group} 0750)",
             f"folders {', '.join(map(str, layout.folders))} ({user}:{group} 2770)"]
    lines += [f"kept {path} as it was (its owner and mode are unchanged)" for path in kept]
    lines.append(f"Whoever drops files into {layout.inbox} (people, a scanner's or a Samba "
                 f"share's account) must be in the group {group}: sudo usermod -aG {group} "
                 f"NAME. Signed results appear in {layout.outbox}, failures in "
                 f"{layout.errors}.")
    drop_in = []
    if layout.directory != UNIT_CONFIG_DIR:
        drop_in.append(f"ExecStart= and LoadCredential=seal.pass:{password}")
    if layout.state_dir != UNIT_STATE_DIR:
        drop_in.append(f"ReadWritePaths={layout.state_dir}")
    outside = [str(p) for p in layout.folders if not p.is_relative_to(UNIT_SHARE)]
    if outside:
        drop_in.append(f"ReadWritePaths=-{' -'.join(outside)}")
    if drop_in:
        lines.append("systemd/folderseal.service expects /etc/folderseal, /var/lib/folderseal "
                     "and /srv/folderseal: set " + "; ".join(drop_in) +
                     " in a drop-in (systemctl edit folderseal)")
    lines.append("Check it as the service will run it, then start it:\n"
                 f"  sudo systemd-run --pipe --wait --quiet -p User={user} "
                 f"-p LoadCredential=seal.pass:{password} folderseal check -c {config}\n"
                 "  sudo systemctl enable --now folderseal")
    print("\n".join(lines))


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _quoted(path: Path) -> str:
    return json.dumps(str(path))  # a TOML basic string


def _make_folder(path: Path, mode: int, uid: int, gid: int) -> None:
    """Make ``path`` with this owner and mode (missing parents: root's, 0755); a folder that
    exists is left as it is."""
    if path.exists():
        return
    for parent in reversed(path.parents):
        if not parent.exists():
            parent.mkdir()
            os.chmod(parent, 0o755)
    path.mkdir()
    os.chown(path, uid, gid)
    os.chmod(path, mode)  # after chown, which clears setgid; and whatever the umask


def _write_new(path: Path, text: str, mode: int, gid: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchown(out.fileno(), 0, gid)
        os.fchmod(out.fileno(), mode)
        out.write(text)
