"""Logs: JSON off a terminal, secrets masked, tracebacks without local variables."""

from __future__ import annotations

import io
import json
import uuid

import structlog

from folderseal.core import logs
from folderseal.core.redact import REDACTOR


def _events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_log_events_are_json_when_not_on_a_terminal() -> None:
    """Off a TTY (as under systemd) every event is one JSON object with level and time."""
    stream = io.StringIO()
    logs.configure("auto", "info", stream)
    logs.get(folder="scans").info("file.claimed", file="abc", bytes=12)
    [event] = _events(stream)
    assert event["event"] == "file.claimed" and event["folder"] == "scans"
    assert event["level"] == "info" and event["timestamp"].endswith("Z")


def test_registered_secrets_never_reach_the_log() -> None:
    """A registered secret is masked in messages, values and exception text alike."""
    secret = f"pw-{uuid.uuid4().hex}"
    REDACTOR.add(secret)
    stream = io.StringIO()
    logs.configure("json", "debug", stream)
    log = logs.get()
    log.warning("provider.refused", reason=f"server said: wrong key {secret}")
    try:
        raise RuntimeError(f"connection with {secret} failed")
    except RuntimeError:
        log.exception("batch.crashed")
    text = stream.getvalue()
    assert secret not in text
    assert text.count("***") >= 2


def test_tracebacks_carry_no_local_variables() -> None:
    """A logged traceback shows frames, not the values of local variables."""
    stream = io.StringIO()
    logs.configure("json", "info", stream)

    def load_key() -> None:
        passphrase_in_a_local = "local-value-that-must-not-show"  # noqa: F841
        raise ValueError("cannot load the key")

    try:
        load_key()
    except ValueError:
        logs.get().exception("provider.failed")
    [event] = _events(stream)
    assert "local-value-that-must-not-show" not in stream.getvalue()
    frames = event["exception"][0]["frames"]
    assert any(frame["name"] == "load_key" for frame in frames)
    assert all("locals" not in frame for frame in frames)


def test_invalid_utf8_file_names_are_logged_readably() -> None:
    """A file name with undecodable bytes is logged with \\x escapes, not a crash."""
    stream = io.StringIO()
    logs.configure("json", "info", stream)
    logs.get().info("file.claimed", source="caf\udce9.txt")
    assert _events(stream)[0]["source"] == "caf\\xe9.txt"


def teardown_module() -> None:
    structlog.reset_defaults()
