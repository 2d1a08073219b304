"""Tests for folderseal.core.config: TOML files, defaults, env overrides and operator-facing
errors."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from folderseal.core.config import load
from folderseal.core.errors import ConfigError, ExitCode
from folderseal.core.redact import REDACTOR

PASSWORD = "S3cr3t-Pa55"

PROVIDER = """
[providers.local]
kind = "local"
certificate = "seal/seal.p12"
password_file = "seal/seal.pass"
"""

FOLDER = """
[folders.scans]
inbox = "inbox"
outbox = "outbox"
errors = "errors"
provider = "local"
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FOLDERSEAL_ variable of the calling shell may leak into a test."""
    for key in list(os.environ):
        if key.upper().startswith("FOLDERSEAL_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def minimal(tmp_path: Path, extra_folder: str = "", extra_top: str = "") -> Path:
    return write(tmp_path, extra_top + PROVIDER + FOLDER + extra_folder)


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value


def test_loads_a_toml_file(tmp_path: Path) -> None:
    """Values written in the file arrive in the settings."""
    path = write(tmp_path, 'state_dir = "/srv/state"\nnode = "scan-host-1"\n'
                 '[log]\nformat = "json"\nlevel = "debug"\n' + PROVIDER + FOLDER
                 + "settle_seconds = 2.5\nbatch_max_files = 7\nduplicates = \"skip\"\n"
                 + 'exclude = ["*.docx"]\nwatch = "polling"\n')
    settings = load(path)
    folder = settings.folders["scans"]
    assert settings.state_dir == Path("/srv/state")
    assert settings.node == "scan-host-1" and settings.node_name == "scan-host-1"
    assert (settings.log.format, settings.log.level) == ("json", "debug")
    assert folder.settle_seconds == 2.5
    assert folder.batch_max_files == 7
    assert folder.duplicates == "skip"
    assert folder.exclude == ["*.docx"]
    assert folder.watch == "polling"
    assert settings.providers["local"].kind == "local"


def test_defaults_match_the_documented_ones(tmp_path: Path) -> None:
    """Keys left out take the defaults config.example.toml documents."""
    settings = load(minimal(tmp_path))
    folder = settings.folders["scans"]
    assert settings.state_dir == Path("/var/lib/folderseal")
    assert settings.node == ""
    assert settings.store.url is None and settings.store.url_file is None
    assert settings.store.lease_seconds == 30.0 and not settings.store.auto_migrate
    assert (settings.log.format, settings.log.level) == ("auto", "info")
    assert settings.database == Path("/var/lib/folderseal/folderseal.sqlite")
    assert folder.archive is None and folder.work_dir is None
    assert folder.include == ["*"] and folder.exclude == []
    assert folder.recursive is True
    assert folder.watch == "auto"
    assert folder.poll_interval_seconds == 10.0
    assert folder.rescan_seconds == 300.0
    assert folder.settle_seconds == 5.0
    assert folder.stuck_after_seconds == 86400.0
    assert folder.batch_max_files == 100
    assert folder.batch_max_bytes == 200_000_000
    assert folder.batch_max_wait_seconds == 5.0
    assert folder.max_in_flight_files == 1000
    assert folder.min_free_bytes == 1_000_000_000
    assert folder.duplicates == "sign"
    assert folder.file_mode == 0o644
    assert folder.work_folder == tmp_path / "inbox" / ".folderseal" / "work"


def test_empty_strings_mean_not_set(tmp_path: Path) -> None:
    """archive = "" and work_dir = "" mean "not set", as the documented defaults say."""
    settings = load(minimal(tmp_path, 'archive = ""\nwork_dir = ""\n'))
    folder = settings.folders["scans"]
    assert folder.archive is None and folder.work_dir is None
    assert folder.work_folder == tmp_path / "inbox" / ".folderseal" / "work"


def test_relative_paths_are_resolved_against_the_config_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths are taken from the config file's folder, not the working directory."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    conf = tmp_path / "conf"
    conf.mkdir()
    path = write(conf, 'state_dir = "state"\n' + PROVIDER + FOLDER
                 + 'archive = "done"\nwork_dir = "inbox/.work"\n')
    settings = load(path)
    folder = settings.folders["scans"]
    provider = settings.providers["local"]
    assert settings.state_dir == conf / "state"
    assert folder.inbox == conf / "inbox"
    assert folder.outbox == conf / "outbox"
    assert folder.errors == conf / "errors"
    assert folder.archive == conf / "done"
    assert folder.work_dir == conf / "inbox" / ".work"
    assert provider.certificate == conf / "seal" / "seal.p12"
    assert provider.password_file == conf / "seal" / "seal.pass"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    """An absolute path in the file is used as it is."""
    path = write(tmp_path, PROVIDER + FOLDER.replace('"inbox"', '"/srv/share/scans"'))
    assert load(path).folders["scans"].inbox == Path("/srv/share/scans")


def test_env_override_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FOLDERSEAL_FOLDERS__SCANS__SETTLE_SECONDS beats settle_seconds in the file."""
    path = minimal(tmp_path, "settle_seconds = 7.0\nbatch_max_files = 3\n")
    monkeypatch.setenv("FOLDERSEAL_FOLDERS__SCANS__SETTLE_SECONDS", "1.5")
    folder = load(path).folders["scans"]
    assert folder.settle_seconds == 1.5
    assert folder.batch_max_files == 3  # keys without an override keep the file's value


def test_env_override_of_top_level_and_nested_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Top-level keys and [log] keys can be overridden too, and env paths are resolved."""
    path = minimal(tmp_path, extra_top='node = "from-file"\n')
    monkeypatch.setenv("FOLDERSEAL_NODE", "from-env")
    monkeypatch.setenv("FOLDERSEAL_LOG__LEVEL", "warning")
    monkeypatch.setenv("FOLDERSEAL_FOLDERS__SCANS__OUTBOX", "signed")
    settings = load(path)
    assert settings.node == "from-env"
    assert settings.log.level == "warning"
    assert settings.folders["scans"].outbox == tmp_path / "signed"


def test_table_names_are_folded_to_lower_case(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[folders.Scans] and provider = "LOCAL" are the same names as scans/local and env vars."""
    path = write(tmp_path, """
        [providers.Local]
        kind = "local"
        certificate = "seal.p12"

        [folders.Scans]
        inbox = "inbox"
        outbox = "outbox"
        errors = "errors"
        provider = "LOCAL"
        settle_seconds = 9.0
    """)
    monkeypatch.setenv("FOLDERSEAL_FOLDERS__SCANS__SETTLE_SECONDS", "0.5")
    settings = load(path)
    assert set(settings.folders) == {"scans"}
    assert set(settings.providers) == {"local"}
    assert settings.folders["scans"].provider == "local"
    assert settings.folders["scans"].settle_seconds == 0.5


def test_env_names_are_case_insensitive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lower-case environment name overrides the same key."""
    monkeypatch.setenv("FOLDERSEAL_folders__scans__settle_seconds", "2.0")
    assert load(minimal(tmp_path)).folders["scans"].settle_seconds == 2.0


def test_two_names_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    """[folders.scans] and [folders.SCANS] would share one env name: a ConfigError."""
    path = write(tmp_path, PROVIDER + FOLDER + FOLDER.replace("folders.scans", "folders.SCANS"))
    error = config_error(path)
    assert "case" in str(error)
    assert error.exit_code == ExitCode.CONFIG == 78


def test_byte_sizes_are_parsed(tmp_path: Path) -> None:
    """batch_max_bytes = "200MB" means 200,000,000 bytes; "1GiB" means 2**30."""
    path = minimal(tmp_path, 'batch_max_bytes = "200MB"\nmin_free_bytes = "1GiB"\n')
    folder = load(path).folders["scans"]
    assert folder.batch_max_bytes == 200_000_000
    assert folder.min_free_bytes == 2**30


def test_bad_byte_size_is_a_config_error(tmp_path: Path) -> None:
    """A size that is not a size names the key and its env name."""
    error = config_error(minimal(tmp_path, 'batch_max_bytes = "lots"\n'))
    assert "folders.scans.batch_max_bytes" in str(error)
    assert "FOLDERSEAL_FOLDERS__SCANS__BATCH_MAX_BYTES" in str(error)


def test_file_mode_is_octal(tmp_path: Path) -> None:
    """file_mode = "0640" is read as octal."""
    assert load(minimal(tmp_path, 'file_mode = "0640"\n')).folders["scans"].file_mode == 0o640


def test_file_mode_from_env_is_octal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An env file_mode "0600" is read as octal too."""
    monkeypatch.setenv("FOLDERSEAL_FOLDERS__SCANS__FILE_MODE", "0600")
    assert load(minimal(tmp_path)).folders["scans"].file_mode == 0o600


@pytest.mark.parametrize("mode", ['"0999"', '"rw-r--r--"', '"01777"', "644"])
def test_bad_file_mode_is_a_config_error(tmp_path: Path, mode: str) -> None:
    """A mode that is not octal, or outside 0000-0777, is refused naming file_mode."""
    error = config_error(minimal(tmp_path, f"file_mode = {mode}\n"))
    assert "folders.scans.file_mode" in str(error)
    assert "FOLDERSEAL_FOLDERS__SCANS__FILE_MODE" in str(error)
    assert error.exit_code == 78


def test_unknown_key_names_the_key_and_its_env_name(tmp_path: Path) -> None:
    """A misspelt key is refused, naming it in file and env form."""
    error = config_error(minimal(tmp_path, "settle_secnds = 5\n"))
    message = str(error)
    assert "folders.scans.settle_secnds" in message
    assert "FOLDERSEAL_FOLDERS__SCANS__SETTLE_SECNDS" in message
    assert "unknown key" in message
    assert error.exit_code == 78


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    """An unknown key at the top of the file is refused too."""
    error = config_error(minimal(tmp_path, extra_top='stat_dir = "x"\n'))
    assert "stat_dir" in str(error)
    assert "FOLDERSEAL_STAT_DIR" in str(error)


def test_missing_required_key(tmp_path: Path) -> None:
    """A folder without an inbox is refused, naming folders.scans.inbox."""
    path = write(tmp_path, PROVIDER + FOLDER.replace('inbox = "inbox"\n', ""))
    message = str(config_error(path))
    assert "folders.scans.inbox" in message
    assert "required" in message
    assert "FOLDERSEAL_FOLDERS__SCANS__INBOX" in message


def test_folder_naming_a_missing_provider(tmp_path: Path) -> None:
    """provider = "nope" without [providers.nope] is refused and the known names listed."""
    path = write(tmp_path, PROVIDER + FOLDER.replace('provider = "local"', 'provider = "nope"'))
    error = config_error(path)
    message = str(error)
    assert "folders.scans.provider" in message
    assert "'nope'" in message
    assert "local" in message
    assert error.exit_code == 78


def test_a_store_url_that_is_not_postgresql_is_refused_with_exit_78(tmp_path: Path) -> None:
    """Only "" (SQLite in state_dir) and postgresql:// URLs name a store."""
    path = minimal(tmp_path, extra_top='[store]\nurl = "mysql://fs@db/folderseal"\n')
    error = config_error(path)
    assert error.exit_code == 78
    assert "store.url" in str(error)
    assert "FOLDERSEAL_STORE__URL" in str(error)


def test_a_postgresql_url_is_read_and_its_password_redacted(tmp_path: Path) -> None:
    """The URL (with its password) may come from a file; the password is never shown."""
    (tmp_path / "store.url").write_text("postgresql://fs:s%40cret-pw@db/folderseal\n")
    path = minimal(tmp_path, extra_top='[store]\nurl_file = "store.url"\nlease_seconds = 12\n')
    settings = load(path)
    assert settings.store.url_file == tmp_path / "store.url"
    assert settings.store.database_url() == "postgresql://fs:s%40cret-pw@db/folderseal"
    assert settings.store.lease_seconds == 12.0
    shown = REDACTOR.text("could not connect to postgresql://fs:s%40cret-pw@db (s@cret-pw)")
    assert "s%40cret-pw" not in shown and "s@cret-pw" not in shown


def test_store_url_and_url_file_together_are_refused(tmp_path: Path) -> None:
    """Two sources of one secret in the file are a conflict (exit 78)."""
    (tmp_path / "store.url").write_text("postgresql://fs@db/folderseal\n")
    path = minimal(tmp_path, extra_top='[store]\nurl = "postgresql://fs@db/x"\n'
                                      'url_file = "store.url"\n')
    error = config_error(path)
    assert error.exit_code == 78 and "url or url_file" in str(error)


def test_the_environment_url_replaces_the_files_url_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FOLDERSEAL_STORE__URL beside a file's url_file is not "both set": it wins."""
    path = minimal(tmp_path, extra_top='[store]\nurl_file = "missing.url"\n')
    monkeypatch.setenv("FOLDERSEAL_STORE__URL", "postgresql://fs@db/other")
    assert load(path).store.database_url() == "postgresql://fs@db/other"


def test_unknown_provider_kind(tmp_path: Path) -> None:
    """A provider kind this version does not offer is named, with the kinds it does offer."""
    path = write(tmp_path, PROVIDER.replace('kind = "local"', 'kind = "teleport"') + FOLDER)
    error = config_error(path)
    message = str(error)
    assert "providers.local.kind" in message
    assert "'teleport'" in message
    assert "local" in message
    assert error.exit_code == 78


def test_invalid_folder_name(tmp_path: Path) -> None:
    """Table names hold only letters, digits and _ (so they have an env name)."""
    path = write(tmp_path, PROVIDER + FOLDER.replace("folders.scans", 'folders."my-scans"'))
    assert "folders.my-scans" in str(config_error(path))


def test_invalid_toml(tmp_path: Path) -> None:
    """A file that is not TOML is a ConfigError naming the file, not a traceback."""
    path = write(tmp_path, "state_dir = \n[folders\n")
    error = config_error(path)
    assert "not valid TOML" in str(error)
    assert str(path) in str(error)
    assert error.exit_code == 78


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError that says how to get one."""
    error = config_error(tmp_path / "nope.toml")
    assert "folderseal init" in str(error)
    assert error.exit_code == 78


def test_config_path_defaults_to_folderseal_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load() without a path reads $FOLDERSEAL_CONFIG."""
    path = minimal(tmp_path, "batch_max_files = 42\n")
    monkeypatch.setenv("FOLDERSEAL_CONFIG", str(path))
    assert load().folders["scans"].batch_max_files == 42


def test_password_and_password_file_together_are_refused(tmp_path: Path) -> None:
    """password and password_file are two sources of one secret: set one."""
    path = write(tmp_path, PROVIDER + f'password = "{PASSWORD}"\n' + FOLDER)
    error = config_error(path)
    assert "password" in str(error)
    assert PASSWORD not in str(error)


def test_validation_error_never_shows_a_password_from_the_file(tmp_path: Path) -> None:
    """A provider table with a password and a bad value: the error does not echo the password."""
    path = write(tmp_path, """
        [providers.local]
        kind = "local"
        certificate = "seal.p12"
        password = "S3cr3t-Pa55"
        workers = "x"
        sign_timeout_seconds = "S3cr3t-Pa55"
    """ + FOLDER)
    error = config_error(path)
    assert "providers.local.workers" in str(error)
    assert "providers.local.sign_timeout_seconds" in str(error)
    assert PASSWORD not in str(error)
    assert PASSWORD not in repr(error)
    assert error.__cause__ is None and error.__suppress_context__


def test_validation_error_never_shows_a_password_of_the_wrong_type(tmp_path: Path) -> None:
    """A password written as a TOML number is refused without quoting it."""
    path = write(tmp_path, PROVIDER.replace("password_file", "# password_file")
                 + "password = 982451653\n" + FOLDER)
    error = config_error(path)
    assert "providers.local.password" in str(error)
    assert "982451653" not in str(error)


def test_validation_error_never_shows_a_password_from_the_env(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A password given as FOLDERSEAL_PROVIDERS__LOCAL__PASSWORD is not echoed by an error."""
    secret = "Env-S3cr3t-Pa55-" + os.urandom(4).hex()
    path = write(tmp_path, """
        [providers.local]
        kind = "local"
        certificate = "seal.p12"
        workers = "x"
    """ + FOLDER)
    monkeypatch.setenv("FOLDERSEAL_PROVIDERS__LOCAL__PASSWORD", secret)
    error = config_error(path)
    assert "providers.local.workers" in str(error)
    assert secret not in str(error)


def test_password_from_the_env_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FOLDERSEAL_PROVIDERS__LOCAL__PASSWORD fills the password of [providers.local]."""
    path = write(tmp_path, """
        [providers.LOCAL]
        kind = "local"
        certificate = "seal.p12"
    """ + FOLDER)
    monkeypatch.setenv("FOLDERSEAL_PROVIDERS__LOCAL__PASSWORD", PASSWORD)
    provider = load(path).providers["local"]
    assert provider.password is not None
    assert provider.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(provider)
    assert provider.read_password() == PASSWORD.encode()


def test_bad_list_value_from_env_is_a_config_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An env value that cannot be parsed (a list written as *.pdf) is a ConfigError, exit 78."""
    monkeypatch.setenv("FOLDERSEAL_FOLDERS__SCANS__INCLUDE", "*.pdf")
    error = config_error(minimal(tmp_path))
    assert error.exit_code == 78


@pytest.mark.parametrize(("listen", "address"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:9464", ("::1", 9464)),
    ("0.0.0.0:0", ("0.0.0.0", 0)), ("", None)])
def test_metrics_listen_is_host_and_port(tmp_path: Path, listen: str,
                                         address: tuple[str, int] | None) -> None:
    """[metrics] listen takes "host:port" (IPv6 in brackets); "" turns it off."""
    settings = load(minimal(tmp_path, extra_top=f'[metrics]\nlisten = "{listen}"\n'))
    assert settings.metrics.address == address


@pytest.mark.parametrize("listen", ["9464", "localhost", "127.0.0.1:http", "[::1]:70000"])
def test_a_bad_metrics_listen_names_the_key(tmp_path: Path, listen: str) -> None:
    error = config_error(minimal(tmp_path, extra_top=f'[metrics]\nlisten = "{listen}"\n'))
    assert error.exit_code == ExitCode.CONFIG
    assert "metrics.listen" in str(error) and "FOLDERSEAL_METRICS__LISTEN" in str(error)


def test_paths_under_the_credentials_directory_resolve_when_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A password_file under $CREDENTIALS_DIRECTORY is read from the folder systemd gives
    the service; without the variable, reading it says how to get one."""
    text = PROVIDER.replace('"seal/seal.pass"', '"$CREDENTIALS_DIRECTORY/seal.pass"') + FOLDER
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    provider = load(write(tmp_path, text)).providers["local"]
    with pytest.raises(ConfigError, match="LoadCredential"):
        provider.read_password()  # type: ignore[union-attr]
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "seal.pass").write_text(PASSWORD + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    provider = load(write(tmp_path, text)).providers["local"]
    assert provider.password_file == credentials / "seal.pass"  # type: ignore[union-attr]
    assert provider.read_password() == PASSWORD.encode()  # type: ignore[union-attr]


SEAL = """
[providers.local]
kind = "seal"
base_url = "https://seal.example.org"
"""
LOCAL = """
[providers.local]
kind = "local"
certificate = "seal.p12"
"""


@pytest.mark.parametrize(("file_line", "variable", "kind"), [
    ('api_key_file = "signius.key"', "API_KEY", "seal"),
    ('api_key = "from-the-file"', "API_KEY_FILE", "seal"),
    ('password_file = "seal/seal.pass"', "PASSWORD", "local"),
    ('password = "from-the-file"', "PASSWORD_FILE", "local"),
])
def test_a_secret_from_the_env_overrides_the_other_form_in_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_line: str, variable: str,
        kind: str) -> None:
    """The environment wins over the file for a secret too: FOLDERSEAL_…__API_KEY beside
    the file's api_key_file (or the _FILE variable beside a value in the file) is used,
    not refused as "both"."""
    table = SEAL if kind == "seal" else LOCAL
    path = write(tmp_path, table + file_line + "\n" + FOLDER)
    secret_file = tmp_path / "env.secret"
    secret_file.write_text("from-the-env-file\n")
    value = str(secret_file) if variable.endswith("_FILE") else "from-the-env"
    monkeypatch.setenv(f"FOLDERSEAL_PROVIDERS__LOCAL__{variable}", value)
    provider = load(path).providers["local"]
    read = provider.read_api_key() if kind == "seal" else provider.read_password()  # type: ignore[union-attr]
    assert read == (b"from-the-env-file" if variable.endswith("_FILE") else b"from-the-env")


def test_both_forms_of_a_secret_in_the_env_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sources in the same layer (here both in the environment) are a conflict."""
    path = write(tmp_path, SEAL + 'api_key_file = "signius.key"\n' + FOLDER)
    monkeypatch.setenv("FOLDERSEAL_PROVIDERS__LOCAL__API_KEY", "from-the-env")
    monkeypatch.setenv("FOLDERSEAL_PROVIDERS__LOCAL__API_KEY_FILE", "/etc/other.key")
    error = config_error(path)
    assert "not both" in str(error) and "from-the-env" not in str(error)


def test_both_forms_of_a_secret_in_the_file_are_refused(tmp_path: Path) -> None:
    """api_key and api_key_file both in the file are a conflict, as before."""
    path = write(tmp_path, SEAL + 'api_key_file = "signius.key"\napi_key = "k-123456"\n'
                 + FOLDER)
    assert "not both" in str(config_error(path))


def test_an_empty_env_secret_does_not_hide_the_file_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty FOLDERSEAL_…__API_KEY means "not set": the file's api_key_file stays."""
    (tmp_path / "signius.key").write_text("file-key\n")
    path = write(tmp_path, SEAL + 'api_key_file = "signius.key"\n' + FOLDER)
    monkeypatch.setenv("FOLDERSEAL_PROVIDERS__LOCAL__API_KEY", "")
    assert load(path).providers["local"].read_api_key() == b"file-key"  # type: ignore[union-attr]


@pytest.mark.parametrize("node", ["../x", "a/b", ".hidden", "-x", "a b", "x" * 65])
def test_a_node_name_that_is_no_safe_folder_name_is_refused(tmp_path: Path, node: str) -> None:
    """Each node claims into <work>/nodes/<node>/, so its name is one plain folder name."""
    path = minimal(tmp_path, extra_top=f'node = "{node}"\n')
    error = config_error(path)
    assert error.exit_code == 78 and "node" in str(error)


def test_host_like_node_names_are_fine(tmp_path: Path) -> None:
    path = minimal(tmp_path, extra_top='node = "scan-host_1.example.org"\n')
    assert load(path).node == "scan-host_1.example.org"
