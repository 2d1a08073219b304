"""Secret files other accounts could read: a warning naming the file and the fix.

A key or password file (``password_file``, ``api_key_file``, a PEM private ``key``, an
mTLS ``client_key``) should be readable by the service alone: mode 0600 owned by its
user, or 0640 with a group no other account belongs to (``root:folderseal``). A PKCS#12
whose password is kept apart protects its key with that password, so its group may
read it (``folderseal init --service`` writes it 0640 ``root:folderseal``); every
account may not. Files under ``$CREDENTIALS_DIRECTORY`` are systemd's copies
(``LoadCredential=``), private to the service: exempt.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CREDENTIALS = "$CREDENTIALS_DIRECTORY"
FIX = ("chmod 600 it (owned by the service's user), or chmod 640 with a group only the "
       "service is in (chown root:folderseal)")


@dataclass(frozen=True, slots=True)
class SecretFile:
    """A configured file that holds a secret, or a key protected by a password."""

    key: str                      # the configuration key that names it
    path: Path
    group_may_read: bool = False  # a PKCS#12 whose password is kept elsewhere


def exposure(secret_files: Iterable[SecretFile]) -> list[str]:
    """One warning per secret file that accounts other than the service's may read."""
    warnings = []
    for secret in secret_files:
        try:
            st = secret.path.stat()
        except OSError:
            continue  # missing or unreadable: the check that reads it says so
        if _private_to_the_service(secret.path) or not stat.S_ISREG(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        what = ("its key is protected by its password alone"
                if secret.group_may_read else "they can read the secret")
        if mode & stat.S_IROTH:
            warnings.append(f"{secret.key} {secret.path} is readable by every account on this "
                            f"host (mode {mode:04o}): {what}; {FIX}")
        elif mode & stat.S_IRGRP and not secret.group_may_read:
            others = _members(st.st_gid)
            if len(others) > 1:
                warnings.append(
                    f"{secret.key} {secret.path} is readable by group {_group_name(st.st_gid)} "
                    f"(mode {mode:04o}), which {', '.join(sorted(others))} belong to: {what}; "
                    f"{FIX}")
    return warnings


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


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
