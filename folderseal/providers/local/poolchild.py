"""The worker process's side of :mod:`~folderseal.providers.local.pool`.

A spawned worker runs :func:`worker_main`: it ignores the signals meant for the parent,
dies with the parent (``PR_SET_PDEATHSIG`` and a watchdog thread), runs the setup named
by the parent once, then answers each task on its pipe (a message may carry several;
each is answered as it finishes).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import pickle
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

PICKLE = pickle.HIGHEST_PROTOCOL


def worker_main(conn: Connection, parent_pid: int) -> None:
    """Body of a worker process: set up once, then answer tasks until the pipe closes."""
    # Ctrl-C and a SIGTERM sent to the whole process group are for the parent, which
    # stops its workers itself; a worker killed mid-task would count against the file.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the watchdog still works
        ctypes.CDLL(None).prctl(1, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)  # PDEATHSIG
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    try:
        setup_name, handler_name, setup_arg = pickle.loads(conn.recv_bytes())
        handler = _resolve(handler_name)
        state = _resolve(setup_name)(setup_arg)
        del setup_arg
    except BaseException as exc:
        _reply(conn, ("setup_failed", type(exc).__name__, str(exc)))
        return
    # What setup loaded (modules, the seal) lives as long as the worker: the collector
    # need not walk it again at every full collection (setup's garbage is not kept).
    gc.collect()
    gc.freeze()
    _reply(conn, ("ready",))
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):  # the parent retired this worker, or is gone
            return  # a normal exit, which flushes stdout and stderr
        for task in pickle.loads(data):  # one message may carry several tasks
            try:
                reply: tuple[Any, ...] = ("ok", handler(state, pickle.loads(task)))
            except BaseException as exc:
                reply = _error_reply(exc)
            _reply(conn, reply)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _resolve(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _error_reply(exc: BaseException) -> tuple[Any, ...]:
    if isinstance(exc, Exception):  # never re-raise SystemExit or KeyboardInterrupt upstairs
        with contextlib.suppress(Exception):
            tb = "".join(traceback.format_exception(exc))
            exc.add_note(f"raised in worker pid {os.getpid()}:\n{tb}")
        with contextlib.suppress(Exception):
            pickle.loads(pickle.dumps(exc, PICKLE))
            return ("error", exc)
    return ("failed", type(exc).__name__, str(exc))


def _reply(conn: Connection, message: tuple[Any, ...]) -> None:
    try:
        data = pickle.dumps(message, PICKLE)
    except Exception as exc:
        text = f"the handler's result could not be pickled: {exc}"
        data = pickle.dumps(("failed", type(exc).__name__, text), PICKLE)
    try:
        conn.send_bytes(data)
    except OSError:  # the parent is gone or gave up on this worker
        os._exit(1)
