"""Tests for folderseal.core.keyfiles: secret files other accounts may read are warned about."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from folderseal.core import keyfiles
from folderseal.core.keyfiles import (
    SecretFile,
    exposure,
    inline_secrets,
    service_accounts,
    service_group,
)

SERVICE = frozenset({"root", "folderseal"})


def _file(tmp_path: Path, mode: int, name: str = "seal.pass") -> Path:
    path = tmp_path / name
    path.write_text("secret\n")
    path.chmod(mode)
    return path


def test_a_file_every_account_may_read_is_named_with_the_fix(tmp_path: Path) -> None:
    """A 0644 password file gets a warning naming its key, path, mode and chmod 600."""
    path = _file(tmp_path, 0o644)
    [warning] = exposure([SecretFile("password_file", path)], SERVICE, "folderseal")
    assert warning.startswith(f"password_file {path} is readable by every account")
    assert "0644" in warning and "chmod 600" in warning and "root:folderseal" in warning


def test_a_file_only_its_owner_may_read_is_fine(tmp_path: Path) -> None:
    """0600 (and 0400) raise no warning."""
    assert exposure([SecretFile("api_key_file", _file(tmp_path, 0o600, "a")),
                     SecretFile("key", _file(tmp_path, 0o400, "b"))], SERVICE) == []


def test_group_read_is_fine_for_a_group_of_one_account(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """0640 with a dedicated group (root:folderseal, only the service in it) is the fix the
    warning itself offers: no warning."""
    monkeypatch.setattr(keyfiles, "_members", lambda gid: {"folderseal"})
    assert exposure([SecretFile("password_file", _file(tmp_path, 0o640))], SERVICE) == []


def test_group_read_warns_when_a_single_other_account_is_in_the_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """0640 with a group whose one member is not the service (root:adm with only syslog
    in adm) is readable by that account: it is named."""
    monkeypatch.setattr(keyfiles, "_members", lambda gid: {"syslog"})
    [warning] = exposure([SecretFile("password_file", _file(tmp_path, 0o640))], SERVICE)
    assert "which syslog belongs to" in warning and "chmod 600" in warning


def test_the_state_folders_owner_is_the_service(tmp_path: Path) -> None:
    """Run as root (`check`, `status` by hand), the owner of the state folder counts as
    the service, with root and this process's user; a state folder not made yet adds no
    one."""
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 1, 1)  # daemon:daemon, which every Debian has
    me = keyfiles.user_name(os.geteuid())
    assert service_accounts(state) == {"root", me, "daemon"}
    assert service_accounts(tmp_path / "missing") == {"root", me}


def test_group_read_warns_when_other_accounts_share_the_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """0640 with a group other accounts are in names them (not the service's own account)
    and the fix."""
    monkeypatch.setattr(keyfiles, "_members", lambda gid: {"folderseal", "alice", "bob"})
    [warning] = exposure([SecretFile("client_key", _file(tmp_path, 0o640))], SERVICE)
    assert "readable by group" in warning and "which alice, bob belong to" in warning
    assert "chmod 600" in warning


def test_a_pkcs12_with_its_password_elsewhere_may_be_group_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PKCS#12 protected by a password kept apart may be read by its group (as `init
    --service` writes it), not by every account."""
    monkeypatch.setattr(keyfiles, "_members", lambda gid: {"folderseal", "alice"})
    p12 = SecretFile("certificate", _file(tmp_path, 0o640, "seal.p12"), group_may_read=True)
    assert exposure([p12], SERVICE) == []
    p12.path.chmod(0o644)
    [warning] = exposure([p12], SERVICE)
    assert "readable by every account" in warning and "password alone" in warning


def test_files_under_the_credentials_directory_are_exempt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd's LoadCredential= copies are the service's own: never warned about."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert exposure([SecretFile("password_file", _file(tmp_path, 0o644))], SERVICE) == []


def test_a_missing_file_is_left_to_the_check_that_reads_it(tmp_path: Path) -> None:
    """No warning (and no crash) for a file that is not there."""
    assert exposure([SecretFile("password_file", tmp_path / "nope")], SERVICE) == []


def _config(tmp_path: Path, mode: int, table: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'state_dir = "state"\n\n[providers.signius]\nkind = "seal"\n{table}\n')
    path.chmod(mode)
    return path


def test_a_config_holding_a_secret_that_others_may_read_is_named_with_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration file with an inline api_key, readable by every account or by a group
    with other members, gets a warning naming the key (never its value) and the fix."""
    config = _config(tmp_path, 0o644, 'api_key = "inline-s3cret"')
    [warning] = inline_secrets(config, SERVICE)
    assert warning.startswith(f"{config} holds providers.signius.api_key and is readable by "
                              "every account on this host (mode 0644)")
    assert "api_key_file" in warning and "$CREDENTIALS_DIRECTORY" in warning
    assert "inline-s3cret" not in warning
    config.chmod(0o640)
    monkeypatch.setattr(keyfiles, "_members", lambda gid: {"folderseal", "scanner"})
    [warning] = inline_secrets(config, SERVICE)
    assert "which scanner belongs to" in warning


def test_a_config_without_a_secret_or_private_to_the_service_is_fine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No warning for a readable configuration that names its secret by file, nor for one
    holding a secret that only the service may read."""
    assert inline_secrets(_config(tmp_path, 0o644, 'api_key_file = "k"'), SERVICE) == []
    monkeypatch.setattr(keyfiles, "_members", lambda gid: {"folderseal"})
    assert inline_secrets(_config(tmp_path, 0o640, 'api_key = "x1234"'), SERVICE) == []


def test_the_fix_names_the_state_folders_group_as_the_services(tmp_path: Path) -> None:
    """The fix a warning offers names the service's own group, the state folder's (as
    `init --service --user daemon` makes it), not a fixed root:folderseal."""
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 1, 1)  # daemon:daemon, which every Debian has
    path = _file(tmp_path, 0o644)
    [warning] = exposure([SecretFile("password_file", path)], service_accounts(state),
                         service_group(state))
    assert "chown root:daemon)" in warning and "folderseal" not in warning, warning
