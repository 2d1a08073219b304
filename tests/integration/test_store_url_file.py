"""``[store] url_file`` is read again for each new connection to the PostgreSQL store, so
a password rotated in the file is used without a restart: by the connections a daemon
opens for its threads and by one opened again after the server cut it. The test server
trusts every connection, so the rotated URL is told apart by its application_name, seen
from the server (pg_stat_activity); its new password is masked like the old one."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from folderseal.core.config import load
from folderseal.core.errors import StateUnavailable
from folderseal.core.redact import REDACTOR
from folderseal.store.opening import open_store
from folderseal.store.postgres import migrate

CONFIG = """
state_dir = "state"
node = "scan-1"
[store]
url_file = "store.url"
[providers.remote]
kind = "seal"
base_url = "https://seal.invalid"
api_key = "k"
[folders.scans]
inbox = "inbox"
outbox = "outbox"
errors = "errors"
provider = "remote"
"""


def _with(url: str, password: str, name: str) -> str:
    """``url`` (the test's schema in its options) with a password and application_name."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@") + \
        f"&application_name={name}"


def _sessions(url: str, name: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (name,)).fetchone()
    return int(row[0]) if row else 0


def test_a_rotated_url_file_is_used_by_each_new_connection(postgres_url: str,
                                                            tmp_path: Path) -> None:
    assert postgres_url.startswith("postgresql://postgres@"), postgres_url
    migrate(postgres_url)
    tag = f"fs{time.monotonic_ns()}"
    (tmp_path / "store.url").write_text(_with(postgres_url, "pw-old-1", f"{tag}-old") + "\n")
    (tmp_path / "config.toml").write_text(CONFIG)
    settings = load(tmp_path / "config.toml")
    store = open_store(settings)
    threads = []
    try:
        assert _sessions(postgres_url, f"{tag}-old") == 1
        # The password is rotated: the file is replaced as a deploy tool does.
        rotated = tmp_path / "store.url.new"
        rotated.write_text(_with(postgres_url, "pw-new-2", f"{tag}-new") + "\n")
        rotated.replace(tmp_path / "store.url")
        threads.append(store.connect())  # a thread's connection: the new URL
        assert _sessions(postgres_url, f"{tag}-new") == 1
        assert "pw-new-2" not in REDACTOR.text("login pw-new-2")  # masked as the old one
        # The server cuts the first connection: it is opened again with the new URL.
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = %s", (f"{tag}-old",))
        with pytest.raises(StateUnavailable):
            store.nodes()  # the call the cut fails
        assert store.nodes() == []  # opened again
        assert _sessions(postgres_url, f"{tag}-old") == 0
        assert _sessions(postgres_url, f"{tag}-new") == 2
        # A file that cannot be read now is a transient failure, not a crash.
        (tmp_path / "store.url").unlink()
        with pytest.raises(StateUnavailable, match="cannot be read again"):
            store.connect()
    finally:
        for opened in threads:
            opened.close()
        store.close()
