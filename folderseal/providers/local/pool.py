"""A small process pool for CPU-bound signing, with per-task timeouts and crash isolation.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot stop one hung task, and one
crashed worker breaks the whole executor. Here each worker is its own ``spawn``ed process
(never fork: the parent has threads) with its own ``multiprocessing.Pipe``, owned by one
long-lived *slot* thread. The slot takes tasks FIFO from the shared queue, sends each to
its worker and waits for the reply with ``Connection.poll(task_timeout)``: nothing
busy-waits, and a timeout counts from when the worker started the task.

* Each worker runs ``state = setup(setup_arg)`` once, then ``handler(state, task)`` per
  task. ``setup_arg`` (maybe a key password) goes over the pipe, never argv or environment.
* ``submit_many`` hands a worker several tasks in one message; it runs them in order and
  replies to each as it finishes, so it never waits for the parent between them (a
  parent busy on other threads answers late). Each task's timeout still counts from
  when the worker started it (as the parent sees it: from reading the reply to the one
  before).
* No reply in time: the worker is SIGKILLed and the task raises TaskTimeout. EOF on the
  pipe: the worker died, and the task raises WorkerCrashed with the exit code or signal.
  The slot then replaces the worker, and the tasks of the same message that had not
  started run on the new one. A worker is recycled once it has run
  ``max_tasks_per_worker`` tasks (at the end of a message); its replacement starts
  setting up when the message that reaches the count is sent.
* A failing setup (e.g. a wrong key password) breaks the pool instead of respawning
  forever: pending and later tasks fail with WorkerSetupFailed, and start() raises it.
* Workers die with the parent: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (it fires when the
  *thread* that created the child exits, so only the long-lived slot threads spawn), a
  watchdog thread that exits once ``os.getppid()`` changes, and EOF on the pipe. They
  ignore SIGINT: the parent handles Ctrl-C.

close() fails queued messages' tasks with PoolClosed and gives the messages already sent
``timeout`` seconds before killing their workers (the task running then raises PoolClosed
with ``started=True``, the ones after it in its message PoolClosed). Futures resolve on the
slot threads, so done-callbacks may submit but must be short.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import Any

from folderseal.core.errors import FolderSealError
from folderseal.providers.local.poolchild import PICKLE, worker_main

log = logging.getLogger(__name__)
_STOP_GRACE = 5.0  # seconds a retired worker gets to exit before it is killed
# After SIGKILL: a process stuck in the kernel (a disk under heavy writes) may take a
# while to go; its exit code or signal is what the operator reads in the log.
_KILL_GRACE = 30.0
_SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}


class PoolError(FolderSealError):
    """Base of the errors a WorkerPool reports."""


class TaskTimeout(PoolError):
    """The task ran longer than the pool's task_timeout; its worker was killed."""

    def __init__(self, timeout: float, name: str = "signer") -> None:
        super().__init__(f"the {name} task took longer than {timeout:g} s; "
                         "the worker was stopped")
        self.timeout = timeout


class WorkerCrashed(PoolError):
    """The worker process died while running the task."""

    def __init__(self, exitcode: int | None, name: str = "signer") -> None:
        super().__init__(f"the {name} worker died ({_describe_exit(exitcode)})")
        self.exitcode = exitcode
        self.signal = -exitcode if exitcode is not None and exitcode < 0 else None


class TaskFailed(PoolError):
    """The handler raised an exception that could not be sent back as itself."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message = type_name, message


class WorkerSetupFailed(PoolError):
    """A worker's setup function failed, so the pool cannot run tasks."""


class PoolClosed(PoolError):
    """The pool was closed before the task started (or, if ``started``, while it ran)."""

    def __init__(self, message: str = "the pool is closed", started: bool = False) -> None:
        super().__init__(message)
        self.started = started


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a pool: live workers, task counts and worker turnover."""

    workers: int
    running: int
    queued: int
    completed: int
    crashed: int
    timed_out: int
    recycled: int


def _describe_exit(code: int | None) -> str:
    if code is None or code >= 0:
        return f"exit code {code}"
    hint = "; killed from outside, perhaps by the out-of-memory killer" if code == -9 else ""
    return f"signal {-code}, {_SIGNAL_NAMES.get(-code, 'unknown')}{hint}"


@dataclass(eq=False)
class _Worker:
    process: SpawnProcess
    conn: Connection
    pid: int
    done: int = 0
    busy: bool = False
    killed: bool = False  # close() killed it: its task raises PoolClosed, not WorkerCrashed


@dataclass(eq=False)
class _Slot:
    thread: threading.Thread
    worker: _Worker | None = None
    spare: _Worker | None = None  # the replacement, warming up during a worker's last task


class WorkerPool:
    """Runs ``handler(state, task)`` in spawned worker processes; see the module docstring.

    Its methods are the pool's life (start, submit, close) and the bookkeeping of each worker
    process (spawn, reap, time out, replace); splitting them would expose the shared worker
    table."""

    def __init__(self, *, setup: str, handler: str, setup_arg: object, workers: int,
                 task_timeout: float, max_tasks_per_worker: int, name: str = "signer",
                 setup_timeout: float = 60.0) -> None:
        if ":" not in setup or ":" not in handler:
            raise ValueError("setup and handler must be given as 'module:function'")
        if min(workers, max_tasks_per_worker, task_timeout, setup_timeout) <= 0:
            raise ValueError("workers, max_tasks_per_worker and the timeouts must be positive")
        self._setup_blob = pickle.dumps((setup, handler, setup_arg), PICKLE)
        self._name, self._max_tasks = name, max_tasks_per_worker
        self._timeout, self._setup_timeout = task_timeout, setup_timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[list[tuple[Future[Any], bytes]] | None] = \
            queue.SimpleQueue()
        self._slots = [_Slot(threading.Thread(target=self._serve, args=(i,), daemon=True,
                                              name=f"{name}-pool-{i}")) for i in range(workers)]
        self._ready = threading.Event()
        self._started = self._closing = False
        self._broken: str | None = None  # why the pool cannot run tasks; set once
        self._counts: collections.Counter[str] = collections.Counter()

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the workers and wait until all finished setup; raise WorkerSetupFailed if not."""
        with self._lock:
            if self._started or self._closing:
                raise RuntimeError("a WorkerPool can be started only once")
            self._started = True
        for slot in self._slots:
            slot.thread.start()
        self._ready.wait()
        if self._broken is not None:
            self.close()
            raise WorkerSetupFailed(self._broken)

    def submit(self, task: object) -> Future[Any]:
        """Queue ``task`` (an unpicklable one raises here); the future gives the result."""
        return self.submit_many([task])[0]

    def submit_many(self, tasks: list[object]) -> list[Future[Any]]:
        """Queue ``tasks`` for one worker, to run one after another (an unpicklable one
        raises here); a future per task gives its result."""
        items: list[tuple[Future[Any], bytes]] = [(Future(), pickle.dumps(task, PICKLE))
                                                  for task in tasks]
        with self._lock:
            if self._broken is not None:
                error: PoolError = WorkerSetupFailed(self._broken)
            elif self._closing:
                error = PoolClosed("the pool is closed; it takes no new tasks")
            else:
                self._queue.put(items)
                return [future for future, _ in items]
        for future, _ in items:
            future.set_exception(error)
        return [future for future, _ in items]

    def close(self, wait: bool = True, timeout: float = 10) -> None:
        """Take no new tasks, fail queued ones, give running ones ``timeout`` s, reap workers."""
        with self._lock:
            self._closing = True
            queued = self._drain()
        for future in queued:
            _settle(future, False, PoolClosed("the pool closed before the task ran"))
        self._ready.set()
        if self._started:
            deadline = time.monotonic() + timeout
            if wait and threading.current_thread() not in [s.thread for s in self._slots]:
                self._shutdown(deadline)
            else:
                threading.Thread(target=self._shutdown, args=(deadline,), daemon=True).start()

    def stats(self) -> PoolStats:
        """Return a snapshot of the pool's workers and task counters."""
        workers = self._workers()
        with self._lock:
            queued = 0 if self._closing or self._broken else self._queue.qsize()
            c = self._counts
            return PoolStats(len(workers), sum(w.busy for w in workers), queued, c["completed"],
                             c["crashed"], c["timed_out"], c["recycled"])

    def worker_pids(self) -> list[int]:
        """Return the pids of the worker processes that have not been reaped yet."""
        return sorted(w.pid for w in self._workers())

    def _workers(self) -> list[_Worker]:
        return [w for s in self._slots for w in (s.worker, s.spare) if w is not None]

    def _drain(self) -> list[Future[Any]]:  # with the lock held; wakes every slot to exit
        futures = []
        with contextlib.suppress(queue.Empty):
            while True:
                item = self._queue.get_nowait()
                futures += [future for future, _ in item or ()]
        for _ in self._slots:
            self._queue.put(None)
        return futures

    def _count(self, what: str) -> int:
        with self._lock:
            self._counts[what] += 1
            return self._counts[what]

    def _serve(self, index: int) -> None:
        """Body of a slot thread: keep one ready worker and feed it tasks from the queue."""
        slot = self._slots[index]
        try:
            self._replace(slot)
            if slot.worker is not None and self._count("ready") == len(self._slots):
                self._ready.set()
            while (items := self._queue.get()) is not None:
                items = [item for item in items if item[0].set_running_or_notify_cancel()]
                try:
                    while items:
                        if slot.worker is None or not slot.worker.process.is_alive():
                            self._replace(slot)  # it died: the tasks never reached it
                        items = self._run(slot, items)
                        if slot.worker is None or slot.worker.done >= self._max_tasks:
                            self._replace(slot)
                except BaseException as exc:
                    for future, _ in items:  # those settled already stay as they are
                        _settle(future, False, exc if isinstance(exc, WorkerSetupFailed)
                                else PoolClosed("the pool failed", started=True))
                    raise
        except WorkerSetupFailed as exc:
            self._break(str(exc))
        except BaseException:
            log.exception("a thread of the %s pool failed", self._name)
            self._break("the pool stopped after an internal error; see the log")
        finally:
            for w in (slot.worker, slot.spare):
                if w is not None:
                    self._retire(w, kill=w is slot.spare)
            slot.worker = slot.spare = None

    def _run(self, slot: _Slot, items: list[tuple[Future[Any], bytes]],
             ) -> list[tuple[Future[Any], bytes]]:
        """Send ``items`` to the slot's worker in one message and settle each future as
        its reply comes; return the items that never started because the worker died or
        timed out on an earlier one (they go to its replacement)."""
        w = slot.worker
        if w is None:
            _settle_all(items, PoolClosed("the pool closed before the task ran"))
            return []
        if w.done + len(items) >= self._max_tasks and slot.spare is None and not self._closing:
            slot.spare = self._spawn()  # sets up while this worker runs its last tasks
        w.busy = True
        try:
            with contextlib.suppress(OSError):  # a dead worker: its first reply reads EOF
                w.conn.send_bytes(pickle.dumps([data for _, data in items], PICKLE))
            for index, (future, _) in enumerate(items):
                _settle(future, *self._reply(slot, w))
                if slot.worker is not w:
                    rest = items[index + 1:]
                    if w.killed:
                        _settle_all(rest, PoolClosed("the pool closed before the task ran"))
                        return []
                    return rest
        finally:
            w.busy = False
        return []

    def _reply(self, slot: _Slot, w: _Worker) -> tuple[bool, object]:
        """The outcome of the task ``w`` is running (it started when the one before it
        replied); a worker that died or ran over the timeout is retired."""
        try:
            if not w.conn.poll(self._timeout):
                slot.worker, _ = None, self._retire(w, kill=True)
                self._count("timed_out")
                log.warning("%s worker %d killed: a task ran over %g s", self._name, w.pid,
                            self._timeout)
                return False, TaskTimeout(self._timeout, self._name)
            reply = w.conn.recv_bytes()
        except (EOFError, OSError):
            slot.worker, code = None, self._retire(w)
            if w.killed:
                return False, PoolClosed("the pool was closed while the task ran; the worker "
                                         "was stopped", started=True)
            self._count("crashed")
            log.warning("%s worker %d died running a task (%s)", self._name, w.pid,
                        _describe_exit(code))
            return False, WorkerCrashed(code, self._name)
        w.done += 1
        self._count("completed")
        try:
            msg = pickle.loads(reply)
        except Exception as exc:
            return False, TaskFailed(type(exc).__name__, f"the reply could not be read: {exc}")
        if msg[0] == "ok":
            return True, msg[1]
        return False, (msg[1] if msg[0] == "error" else TaskFailed(msg[1], msg[2]))

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(target=worker_main, args=(child_conn, os.getpid()),
                                    name=f"{self._name}-worker", daemon=True)
        process.start()
        child_conn.close()
        with contextlib.suppress(OSError):  # if it died already, setup reports it
            parent_conn.send_bytes(self._setup_blob)
        return _Worker(process, parent_conn, process.pid or 0)

    def _replace(self, slot: _Slot) -> None:
        """Give ``slot`` a ready worker: its spare if one is warming up, else a new one."""
        old, slot.worker = slot.worker, None
        if old is not None:  # recycled after its last task, or found dead while idle
            code = self._retire(old)
            if old.done >= self._max_tasks:
                self._count("recycled")
            else:
                self._count("crashed")
                log.warning("idle %s worker %d died (%s)", self._name, old.pid,
                            _describe_exit(code))
        w, slot.spare = slot.spare, None
        if self._closing or self._broken is not None:
            if w is not None:
                self._retire(w, kill=True)
            return
        w = slot.worker = w or self._spawn()
        msg: Any = None
        in_time = False  # replied (or died) within setup_timeout
        with contextlib.suppress(EOFError, OSError):
            in_time = w.conn.poll(self._setup_timeout)
            msg = pickle.loads(w.conn.recv_bytes()) if in_time else None
        if msg == ("ready",):
            return
        slot.worker, code = None, self._retire(w, kill=True)
        if self._closing:
            return
        exec_hint = f"; could this user not run {sys.executable}?" if code == 255 else ""
        reason = (f"did not finish setup within {self._setup_timeout:g} s" if not in_time
                  else f"exited during setup ({_describe_exit(code)}{exec_hint})" if msg is None
                  else f"could not start: {msg[1]}: {msg[2]}")
        raise WorkerSetupFailed(f"the {self._name} worker {reason}")

    def _retire(self, w: _Worker, kill: bool = False) -> int | None:
        """Stop ``w`` (EOF on its pipe makes it exit; SIGKILL if asked or if it lingers)."""
        if kill:
            w.process.kill()
        w.conn.close()
        w.process.join(_STOP_GRACE)
        if w.process.exitcode is None:
            w.process.kill()
            w.process.join(_KILL_GRACE)
        return w.process.exitcode

    def _break(self, message: str) -> None:
        with self._lock:
            if self._broken is not None:
                return
            self._broken = message
            queued = self._drain()
        log.error("the %s pool cannot run tasks: %s", self._name, message)
        for future in queued:
            _settle(future, False, WorkerSetupFailed(message))
        self._ready.set()

    def _shutdown(self, deadline: float) -> None:
        for slot in self._slots:
            slot.thread.join(max(0.0, deadline - time.monotonic()))
        for w in self._workers():  # still running a task (or setting up) at the deadline
            w.killed = True
            w.process.kill()
        for slot in self._slots:
            slot.thread.join(2 * _STOP_GRACE + 1)


def _settle_all(items: list[tuple[Future[Any], bytes]], error: BaseException) -> None:
    for future, _ in items:
        _settle(future, False, error)


def _settle(future: Future[Any], ok: bool, value: object) -> None:
    with contextlib.suppress(InvalidStateError):  # cancelled, or already settled
        if ok:
            future.set_result(value)
        else:
            assert isinstance(value, BaseException)
            future.set_exception(value)
