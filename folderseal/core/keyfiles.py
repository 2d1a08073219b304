"""Secrets other accounts could read: a warning naming the file and the fix.

A key or password file (``password_file``, ``api_key_file``, a PEM private ``key``, an
mTLS ``client_key``) should be readable by the service alone: mode 0600 owned by its
user, or 0640 with a group no other account belongs to (``root:folderseal``: the
service's own group, which ``folderseal init --service`` keeps for it, and gives the
state folder, so the fix names the state folder's group; the people and scanners who
drop files are in another group, ``folderseal-drop``). A PKCS#12 whose
password is kept apart protects its key with that password, so its group may read it
(``init --service`` writes it 0640 ``root:folderseal``); every account may not. Files
under ``$CREDENTIALS_DIRECTORY`` are systemd's copies (``LoadCredential=``), private to
the service: exempt. A configuration file that holds a secret itself (``password``,
``api_key``) is held to the same rule.

"The service" is root, the user this runs as, and the owner of the state folder (the
service's user, when ``check`` or ``status`` run as root).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CREDENTIALS = "$CREDENTIALS_DIRECTORY"
# Secrets a provider's table may hold itself.
INLINE = ("password", "api_key", "api_token", "s3_secret_access_key")


@dataclass(frozen=True, slots=True)
class SecretFile:
    """A configured file that holds a secret, or a key protected by a password."""

    key: str                      # the configuration key that names it
    path: Path
    group_may_read: bool = False  # a PKCS#12 whose password is kept elsewhere


def service_accounts(state_dir: Path) -> frozenset[str]:
    """The accounts that are the service: root, this process's user, the state folder's
    owner."""
    accounts = {"root", user_name(os.geteuid())}
    with contextlib.suppress(OSError):
        accounts.add(user_name(state_dir.stat().st_uid))
    return frozenset(accounts)


def service_group(state_dir: Path) -> str:
    """The service's own group: the state folder's (``init --service`` makes it the
    group of the user it names with ``--user``); "" if it cannot be told."""
    try:
        return group_name(state_dir.stat().st_gid)
    except OSError:
        return ""


def _fix(group: str) -> str:
    """What makes a secret file private to the service (``group``: its own group)."""
    chown = f"chown root:{group}" if group else "chown root:GROUP, GROUP the service user's own"
    return ("chmod 600 it (owned by the service's user), or chmod 640 with a group only the "
            f"service is in ({chown})")


def exposure(secret_files: Iterable[SecretFile], service: frozenset[str],
             group: str = "") -> list[str]:
    """One warning per secret file that accounts other than ``service`` may read;
    ``group``, the service's own group, is named in the fix."""
    warnings = []
    for secret in secret_files:
        if _private_to_the_service(secret.path):
            continue
        readers = _readers(secret.path, service, group_may_read=secret.group_may_read)
        if readers:
            what = ("its key is protected by its password alone"
                    if secret.group_may_read else "they can read the secret")
            warnings.append(f"{secret.key} {secret.path} is readable by {readers}: {what}; "
                            f"{_fix(group)}")
    return warnings


def inline_secrets(config: Path, service: frozenset[str]) -> list[str]:
    """A warning if the configuration file holds a secret (``password``, ``api_key``) and
    accounts other than ``service`` may read it."""
    try:
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []  # loading the configuration says what is wrong with it
    providers = raw.get("providers")
    keys = [f"providers.{name}.{key}"
            for name, table in (providers.items() if isinstance(providers, dict) else ())
            if isinstance(table, dict) for key in INLINE if table.get(key)]
    readers = _readers(config, service) if keys else ""
    if not readers:
        return []
    return [f"{config} holds {', '.join(keys)} and is readable by {readers}: they can read "
            "the secret; move it to a file only the service may read (password_file, "
            "api_key_file, api_token_file; or a systemd credential, "
            "\"$CREDENTIALS_DIRECTORY/NAME\"), or "
            f"chmod 600 {config} (or 640 with a group only the service is in)"]


def _readers(path: Path, service: frozenset[str], group_may_read: bool = False) -> str:
    """Who besides ``service`` may read ``path`` ("" if nobody, or if it is not there)."""
    try:
        st = path.stat()
    except OSError:
        return ""  # missing or unreadable: the check that reads it says so
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        return ""
    if mode & stat.S_IROTH:
        return f"every account on this host (mode {mode:04o})"
    others = _members(st.st_gid) - service if mode & stat.S_IRGRP and not group_may_read \
        else set()
    if others:
        verb = "belongs" if len(others) == 1 else "belong"
        return (f"group {group_name(st.st_gid)} (mode {mode:04o}), which "
                f"{', '.join(sorted(others))} {verb} to")
    return ""


def names_credential(path: Path) -> bool:
    """True for a configured path under ``$CREDENTIALS_DIRECTORY`` (not yet resolved)."""
    return str(path).startswith((CREDENTIALS + "/", "${CREDENTIALS_DIRECTORY}/"))


def _private_to_the_service(path: Path) -> bool:
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    return names_credential(path) or (bool(directory) and path.is_relative_to(str(directory)))


def _members(gid: int) -> set[str]:
    """The accounts in a group: listed members and those whose primary group it is."""
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        members = set()
    return members | {entry.pw_name for entry in pwd.getpwall() if entry.pw_gid == gid}


def group_name(gid: int) -> str:
    """A group's name, or its number if it has none."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def user_name(uid: int) -> str:
    """A user's name, or "uid N" if it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
