"""The PostgreSQL server the tests use, and a store of its own for each test.

The server is the one on 127.0.0.1:5432 (``FOLDERSEAL_TEST_POSTGRES`` names another);
:func:`server` starts the Debian cluster when it is down, and fails the test (never
skips it) when it still cannot be reached. Each test works in a schema of its own with a
random name, made for it and dropped with everything in it afterwards: its URL sets the
schema as the search path, so the store's tables, its migrations table and the advisory
lock of :func:`folderseal.store.postgres.migrate` (keyed by the schema) are the test's
alone, and two test processes never see each other's rows.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

URL = os.environ.get("FOLDERSEAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def _answers(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip()
    return None


def server() -> str:
    """The server's URL, started first if it is down; pytest.fail if it cannot be."""
    if _answers(URL) is None:
        return URL
    versions = sorted(Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").is_dir() \
        else []
    if versions:  # another test process may be starting it too: either start will do
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name,
                        "main", "start"], capture_output=True, check=False, timeout=60)
    deadline = time.monotonic() + 30
    while (why := _answers(URL)) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    if why is not None:
        pytest.fail(f"PostgreSQL does not answer at {URL} ({why}); the store tests need it: "
                    f"start it with `{START}` (or set FOLDERSEAL_TEST_POSTGRES to a server "
                    "with a database the tests may make schemas in)", pytrace=False)
    return URL


def in_schema(url: str, schema: str) -> str:
    """``url`` with ``schema`` as the search path of every connection made with it."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-c search_path={schema}')}"


@contextmanager
def own_schema(url: str) -> Iterator[str]:
    """A URL whose connections work in a new, empty schema; dropped with all it holds."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield in_schema(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
