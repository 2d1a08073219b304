"""``folderseal init``: a starter configuration and a trial seal, ready to run.

The seal is self-signed and clearly labelled as not qualified: it proves the
pipeline works, not who sealed. Nothing existing is overwritten.

``init DIR`` is for a trial: everything in one folder, paths relative to the
configuration, so the folder can be moved. ``init --service DIR`` (as root) is for
the systemd unit: the configuration and seal in DIR (``/etc/folderseal``), the store
in ``/var/lib/folderseal`` and the folders under ``/srv/folderseal``, each with the
owner and mode the service user needs and no more. The seal's password stays
``root:root 0600``: the service reads the copy systemd makes with ``LoadCredential=``.

Two groups keep the secrets apart from the people who drop files. The service's own
group (its user's primary group, ``folderseal``) holds the service's user alone and may
read the configuration and the seal (``root:folderseal 0640``). The accounts that drop
files (people, a scanner's or a Samba share's account) go in the drop group
(``folderseal-drop``, made here if missing, with the service's user added to it): it
owns the inbox, outbox and errors folders (``2770``, setgid, so what they drop keeps
that group and the service can read it), never the configuration.
"""

from __future__ import annotations

import argparse
import errno
import grp
import json
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from folderseal import signing  # its names load pyHanko when first used, not here
from folderseal.commands.shared import add_command
from folderseal.core.errors import ExitCode
from folderseal.core.keyfiles import group_name

if TYPE_CHECKING:
    from folderseal.commands.shared import Subparsers

GROUP_FILE = "/etc/group"
# What `init --service` writes unless told otherwise: what systemd/folderseal.service expects.
SERVICE_DEFAULTS = {"user": "folderseal", "drop_group": "folderseal-drop",
                    "state_dir": "/var/lib/folderseal",
                    "inbox": "/srv/folderseal/inbox", "outbox": "/srv/folderseal/outbox",
                    "errors": "/srv/folderseal/errors"}

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


def add_parser(commands: Subparsers) -> None:
    init = add_command(commands, "init", handle,
                       "write a starter configuration and a trial seal", config=False)
    init.add_argument("dir", nargs="?", default=None, metavar="DIR",
                      help="where to write (default: the current folder; with --service "
                           "/etc/folderseal)")
    init.add_argument("--service", action="store_true",
                      help="as root, for the systemd unit: the store, the folders and the "
                           "seal owned and moded for the service user (see systemd/README.md)")
    init.add_argument("--user", help="with --service: the user the service runs as "
                                     "(default folderseal; it must exist)")
    init.add_argument("--drop-group", dest="drop_group", metavar="GROUP",
                      help="with --service: the group of the accounts that drop files, owning "
                           "the folders but not the configuration (default folderseal-drop; "
                           "made if missing)")
    for key in ("state_dir", "inbox", "outbox", "errors"):
        init.add_argument(f"--{key.replace('_', '-')}", dest=key, metavar="PATH",
                          help=f"with --service: this folder (default {SERVICE_DEFAULTS[key]})")


def handle(args: argparse.Namespace) -> int:
    given = {k: getattr(args, k) for k in SERVICE_DEFAULTS if getattr(args, k) is not None}
    if not args.service:
        if given:
            print("folderseal init: --user, --drop-group, --state-dir, --inbox, --outbox and "
                  "--errors go with --service", file=sys.stderr)
            return ExitCode.USAGE
        return init(Path(args.dir or "."))
    chosen = SERVICE_DEFAULTS | given

    def folder(key: str) -> Path:
        return Path(chosen[key]).absolute()  # the config lives elsewhere: no relative paths

    return init_service(ServiceLayout(
        directory=Path(args.dir or "/etc/folderseal").absolute(), user=chosen["user"],
        drop_group=chosen["drop_group"], state_dir=folder("state_dir"),
        inbox=folder("inbox"), outbox=folder("outbox"), errors=folder("errors")))


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
    seal = signing.make_trial_seal(directory)
    config.write_text(CONFIG, encoding="utf-8")
    print(f"wrote {config} and a trial seal ({seal.pkcs12_path}, NOT QUALIFIED).\n"
          f"Start:  folderseal run -c {config}\n"
          f"Then drop files into {directory / 'inbox'}; signed results appear in "
          f"{directory / 'outbox'}.")
    return ExitCode.OK


@dataclass(frozen=True, slots=True)
class ServiceLayout:
    """Where ``init --service`` puts things (absolute paths), whom the service runs as, and
    the group of the accounts that drop files."""

    directory: Path
    user: str
    drop_group: str
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
    group = group_name(gid)
    if layout.drop_group == group:
        print(f"folderseal init --service: the drop group cannot be {group}, the group of "
              f"{layout.user}, which may read the configuration and the seal; name another "
              "with --drop-group; nothing was changed", file=sys.stderr)
        return ExitCode.FAILURE
    blocked = [p for p in (layout.directory, layout.state_dir, *layout.folders)
               if p.exists() and not p.is_dir()]
    if blocked:
        print(f"folderseal init --service: not a folder: {', '.join(map(str, blocked))}; "
              "nothing was changed (move it away or choose another path)", file=sys.stderr)
        return ExitCode.FAILURE
    if _taken(layout.directory):
        return ExitCode.FAILURE
    kept = [p for p in (layout.directory, layout.state_dir, *layout.folders) if p.exists()]
    try:
        drop_gid, joined = _drop_group(layout.drop_group, layout.user)
    except (OSError, subprocess.CalledProcessError) as exc:
        why = exc.stderr.decode(errors="replace").strip() \
            if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        print(f"folderseal init --service: cannot make the group {layout.drop_group} or add "
              f"{layout.user} to it ({why}); make it yourself (groupadd --system "
              f"{layout.drop_group}; usermod -aG {layout.drop_group} {layout.user}) and run "
              "this again; nothing else was changed", file=sys.stderr)
        return ExitCode.FAILURE
    _make_folder(layout.directory, 0o750, 0, gid)
    seal = signing.make_trial_seal(layout.directory)   # both files root:root 0600
    os.chown(seal.pkcs12_path, 0, gid)          # the service reads the (encrypted) key
    os.chmod(seal.pkcs12_path, 0o640)
    config = layout.directory / "config.toml"
    _write_new(config, SERVICE_CONFIG.format(
        state_dir=_quoted(layout.state_dir), certificate=_quoted(seal.pkcs12_path),
        inbox=_quoted(layout.inbox), outbox=_quoted(layout.outbox),
        errors=_quoted(layout.errors)), 0o640, gid)
    _make_folder(layout.state_dir, 0o750, uid, gid)
    for folder in layout.folders:
        # setgid: what the drop group's members drop keeps the group, which the service
        # is in, so it reads them
        _make_folder(folder, 0o2770, uid, drop_gid)
    _explain(layout, group, seal.pkcs12_path, seal.password_path, kept, joined)
    return ExitCode.OK


def _drop_group(name: str, user: str) -> tuple[int, list[str]]:
    """The drop group's id, made if missing, with ``user`` in it; and what was done."""
    done = []
    try:
        entry = grp.getgrnam(name)
        gid, members = entry.gr_gid, entry.gr_mem
    except KeyError:
        subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
        gid, members = _local_gid(name), []
        done.append(f"made the group {name} for the accounts that drop files")
    if user not in members:
        subprocess.run(["usermod", "--append", "--groups", name, user], check=True,
                       capture_output=True)
        done.append(f"added {user} to the group {name}, so the service reads what they drop")
    return gid, done


def _local_gid(name: str) -> int:
    """The id of a group groupadd just made, read from /etc/group, where it wrote it: a
    name service cache (nscd) may go on saying there is no such group for a while."""
    with open(GROUP_FILE, encoding="utf-8") as groups:
        for line in groups:
            fields = line.rstrip("\n").split(":")
            if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
                return int(fields[2])
    raise OSError(errno.ENOENT, f"groupadd made no group {name} in {GROUP_FILE}")


def _explain(layout: ServiceLayout, group: str, p12: Path, password: Path,
             kept: list[Path], joined: list[str]) -> None:
    user, drop, config = layout.user, layout.drop_group, layout.directory / "config.toml"
    lines = [f"wrote {config} (root:{group} 0640) and a trial seal, NOT QUALIFIED: "
             f"{p12} (root:{group} 0640), its password {password} (root:root 0600, read "
             "by the service through LoadCredential=)",
             f"state_dir {layout.state_dir} ({user}:{group} 0750)",
             f"folders {', '.join(map(str, layout.folders))} ({user}:{drop} 2770)"]
    lines += joined
    lines += [f"kept {path} as it was (its owner and mode are unchanged)" for path in kept]
    lines.append(f"Whoever drops files into {layout.inbox} (people, a scanner's or a Samba "
                 f"share's account) must be in the group {drop}: sudo usermod -aG {drop} "
                 f"NAME. Keep them out of the group {group}: it may read the configuration "
                 f"and the seal, and is for {user} alone. Signed results appear in "
                 f"{layout.outbox}, failures in {layout.errors}.")
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
