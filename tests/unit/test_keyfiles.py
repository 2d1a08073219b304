"""Tests for folderseal.keyfiles: secret files other accounts may read are warned about."""

from __future__ import annotations

from pathlib import Path

import pytest

from folderseal import keyfiles
from folderseal.keyfiles import SecretFile, exposure


def _file(tmp_path: Path, mode: int, name: str = "seal.pass") -> Path:
    path = tmp_path / name
    path.write_text("secret\n")
    path.chmod(mode)
    return path


def test_a_file_every_account_may_read_is_named_with_the_fix(tmp_path: Path) -> None:
    """A 0644 password file gets a warning naming its key, path, mode and chmod 600."""
    path = _file(tmp_path, 0o644)
    [warning] = exposure([SecretFile("password_file", path)])
    assert warning.startswith(f"password_file {path} is readable by every account")
    assert "0644" in warning and "chmod 600" in warning and "root:folderseal" in warning


def test_a_file_only_its_owner_may_read_is_fine(tmp_path: Path) -> None:
    """0600 (and 0400) raise no warning."""
    assert exposure([SecretFile("api_key_file", _file(tmp_path, 0o600, "a")),
                     SecretFile("key", _file(tmp_path, 0o400, "b"))]) == []


def test_group_read_is_fine_for_a_group_of_one_account(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """0640 with a dedicated group (root:folderseal, only the service in it) is the fix the
    warning itself offers: no warning."""
    monkeypatch.setattr(keyfiles, "_members", lambda gid: {"folderseal"})
    assert exposure([SecretFile("password_file", _file(tmp_path, 0o640))]) == []


def test_group_read_warns_when_other_accounts_share_the_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """0640 with a group other accounts are in names them and the fix."""
    monkeypatch.setattr(keyfiles, "_members", lambda gid: {"folderseal", "alice"})
    [warning] = exposure([SecretFile("client_key", _file(tmp_path, 0o640))])
    assert "readable by group" in warning and "alice, folderseal" in warning
    assert "chmod 600" in warning


def test_a_pkcs12_with_its_password_elsewhere_may_be_group_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PKCS#12 protected by a password kept apart may be read by its group (as `init
    --service` writes it), not by every account."""
    monkeypatch.setattr(keyfiles, "_members", lambda gid: {"folderseal", "alice"})
    p12 = SecretFile("certificate", _file(tmp_path, 0o640, "seal.p12"), group_may_read=True)
    assert exposure([p12]) == []
    p12.path.chmod(0o644)
    [warning] = exposure([p12])
    assert "readable by every account" in warning and "password alone" in warning


def test_files_under_the_credentials_directory_are_exempt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd's LoadCredential= copies are the service's own: never warned about."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert exposure([SecretFile("password_file", _file(tmp_path, 0o644))]) == []


def test_a_missing_file_is_left_to_the_check_that_reads_it(tmp_path: Path) -> None:
    """No warning (and no crash) for a file that is not there."""
    assert exposure([SecretFile("password_file", tmp_path / "nope")]) == []
