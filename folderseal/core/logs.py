"""Structured logs: one event per step, JSON under systemd, console on a terminal.

Events are named ``area.past_tense_verb`` (``file.claimed``, ``batch.delivered``)
and carry ``folder``, ``batch``, ``file`` and ``provider`` where they apply. Every
event passes through the redactor last before rendering, and tracebacks are rendered
without local variables (structlog's dict tracebacks show locals by default, and a
local may hold a password).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from folderseal.core import systemd
from folderseal.core.model import path_text
from folderseal.core.redact import REDACTOR

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def _redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    redacted: dict[str, Any] = REDACTOR.data(event)
    return redacted


def _paths_as_text(_logger: Any, _method: str,
                   event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """Render bytes (raw file names) readably; invalid UTF-8 becomes \\xNN escapes."""
    for key, value in event.items():
        if isinstance(value, bytes):
            event[key] = value.decode("utf-8", "backslashreplace")
        elif isinstance(value, str) and any("\udc80" <= c <= "\udcff" for c in value):
            event[key] = path_text(value)
    return event


# syslog priorities, for the "<N>" prefix journald reads off each stdout line.
_PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2,
               "exception": 3}


class _JournalRenderer:
    """Under systemd, ``<N>`` before each JSON line: ``journalctl -p err`` then works."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        level = str(event.get("level", method))
        return f"<{_PRIORITIES.get(level, 6)}>{self.inner(logger, method, event)}"


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog (and the standard library's logging, used by libraries)."""
    out = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _paths_as_text,
    ]
    renderer: Any
    if use_json:
        tracebacks: Any = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        renderer = structlog.processors.JSONRenderer()
        if systemd.on_journal(out):
            renderer = _JournalRenderer(renderer)
    else:
        tracebacks = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(),
            exception_formatter=structlog.dev.plain_traceback,
        )
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), tracebacks, _redact,
                    renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries (pyHanko, watchdog) log through the standard library: route their
    # warnings through the same processors, so they are redacted and rendered alike.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, tracebacks,
                        _redact, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def get(name: str = "folderseal", **bound: Any) -> Any:
    """A logger with the given context bound."""
    return structlog.get_logger(name).bind(**bound)
