"""Tests for folderseal.providers.local.pool: real spawned worker processes, no mocking of the
pool."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any

import pytest

from folderseal.providers.local.pool import (
    PoolClosed,
    TaskFailed,
    TaskTimeout,
    WorkerCrashed,
    WorkerPool,
    WorkerSetupFailed,
)

ROOT = Path(__file__).resolve().parents[2]
TASKS = "tests.pool_tasks"
SECRET = "hunter2-correct-horse-battery"

pytestmark = pytest.mark.timeout(60)

PoolFactory = Callable[..., WorkerPool]


@pytest.fixture
def make_pool() -> Iterator[PoolFactory]:
    """Build started pools running tests.pool_tasks:call, and close them all afterwards."""
    pools: list[WorkerPool] = []

    def make(**overrides: Any) -> WorkerPool:
        options: dict[str, Any] = {
            "setup": f"{TASKS}:setup_state", "handler": f"{TASKS}:call", "setup_arg": None,
            "workers": 2, "task_timeout": 10.0, "max_tasks_per_worker": 1000,
        }
        options.update(overrides)
        pool = WorkerPool(**options)
        pools.append(pool)
        pool.start()
        return pool

    yield make
    for pool in pools:
        pool.close(timeout=0)


def is_our_child(pid: int) -> bool:
    """Whether ``pid`` is still a process (even a zombie) whose parent is this test process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return f"\nPPid:\t{os.getpid()}\n" in status


def is_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs: absent, or a zombie waiting for its new parent."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_results_match_their_tasks_with_concurrent_submitters(make_pool: PoolFactory) -> None:
    """Tasks submitted from several threads at once each get their own task's result."""
    pool = make_pool(workers=3)
    submitted: list[tuple[tuple[int, int, bytes], Future[Any]]] = []
    lock = threading.Lock()

    def submitter(thread_no: int) -> None:
        for i in range(150):
            task = (thread_no, i, bytes([i % 256]) * (2_000_000 if i == 77 else i))
            future = pool.submit(("echo", task))
            with lock:
                submitted.append((task, future))

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pids = set()
    for task, future in submitted:
        echoed, pid, _token = future.result(timeout=30)
        assert echoed == task
        pids.add(pid)
    assert len(submitted) == 900
    assert pids == set(pool.worker_pids())
    stats = pool.stats()
    assert (stats.completed, stats.queued, stats.running, stats.crashed) == (900, 0, 0, 0)


def test_setup_runs_once_per_worker(make_pool: PoolFactory) -> None:
    """Each worker runs setup exactly once and keeps using the state it created."""
    pool = make_pool(workers=3)
    results = [f.result(timeout=10) for f in [pool.submit(("identify", None)) for _ in range(90)]]
    tokens_by_pid: dict[int, set[str]] = defaultdict(set)
    for pid, token, setups in results:
        assert setups == 1
        tokens_by_pid[pid].add(token)
    assert len(tokens_by_pid) == 3
    assert all(len(tokens) == 1 for tokens in tokens_by_pid.values())


def test_workers_are_spawned_not_forked(make_pool: PoolFactory) -> None:
    """Workers start from a fresh interpreter (spawn) without touching the global start method."""
    # Spawning through any context fixes the default method as a side effect (the stdlib
    # asks for it when it prepares a child), so fix it first: the pool must not change it.
    method_before = multiprocessing.get_start_method()
    pool = make_pool(workers=1)
    only_in_parent = ["_pytest", "pytest", __name__]
    assert all(name in sys.modules for name in only_in_parent)
    assert pool.submit(("loaded", only_in_parent)).result(timeout=10) == []
    assert pool.submit(("loaded", [TASKS])).result(timeout=10) == [TASKS]
    assert multiprocessing.get_start_method() == method_before != "spawn"


def test_timeout_kills_the_worker_and_the_next_task_runs(make_pool: PoolFactory) -> None:
    """A task running past task_timeout raises TaskTimeout and a replacement takes the next one."""
    pool = make_pool(workers=1, task_timeout=0.5)
    (old_pid,) = pool.worker_pids()
    started = time.monotonic()
    with pytest.raises(TaskTimeout, match=r"took longer than 0\.5 s; the worker was stopped"):
        pool.submit(("sleep", 30)).result(timeout=10)
    assert time.monotonic() - started < 3
    _seconds, new_pid = pool.submit(("sleep", 0)).result(timeout=10)
    assert new_pid != old_pid
    assert not is_our_child(old_pid)
    assert pool.stats().timed_out == 1


def test_timeout_counts_from_when_a_worker_starts_the_task(make_pool: PoolFactory) -> None:
    """Time spent waiting in the queue does not count against a task's timeout."""
    pool = make_pool(workers=1, task_timeout=1.0)
    futures = [pool.submit(("sleep", 0.6)) for _ in range(3)]
    assert [f.result(timeout=10)[0] for f in futures] == [0.6, 0.6, 0.6]


def test_a_message_of_tasks_is_answered_task_by_task(make_pool: PoolFactory) -> None:
    """submit_many hands one worker several tasks in one message: each future resolves as
    its task finishes (the first while the last still runs), and each task's timeout
    counts from when the worker started that task."""
    pool = make_pool(workers=1, task_timeout=1.0)
    first, slow, last = pool.submit_many([("echo", 1), ("sleep", 0.7), ("sleep", 0.7)])
    assert first.result(timeout=10)[0] == 1
    assert not last.done()
    assert slow.result(timeout=10)[0] == 0.7
    assert last.result(timeout=10)[0] == 0.7
    assert pool.stats().completed == 3


def test_a_task_that_crashes_or_hangs_in_a_message_fails_alone(make_pool: PoolFactory) -> None:
    """A crash or a hang in a message is pinned on its own task; the tasks after it in the
    message run on the replacement worker."""
    pool = make_pool(workers=1, task_timeout=1.0)
    (old_pid,) = pool.worker_pids()
    futures = pool.submit_many([("echo", 1), ("segfault", None), ("echo", 2), ("sleep", 30),
                                ("echo", 3)])
    assert futures[0].result(timeout=60)[1] == old_pid
    with pytest.raises(WorkerCrashed):
        futures[1].result(timeout=60)
    second_pid = futures[2].result(timeout=60)[1]
    assert second_pid != old_pid
    with pytest.raises(TaskTimeout):
        futures[3].result(timeout=60)
    assert futures[4].result(timeout=60)[1] not in (old_pid, second_pid)
    stats = pool.stats()
    assert (stats.crashed, stats.timed_out, stats.completed) == (1, 1, 3)


def test_crashing_workers_raise_worker_crashed(make_pool: PoolFactory) -> None:
    """os._exit(3) and SIGSEGV in a task raise WorkerCrashed with the code or signal only there."""
    pool = make_pool(workers=2)
    before = [pool.submit(("echo", i)) for i in range(20)]
    exited = pool.submit(("exit_with", 3))
    crashed = pool.submit(("segfault", None))
    after = [pool.submit(("echo", i)) for i in range(20, 40)]
    # Generous timeouts: on a loaded machine a dying process may take seconds to go.
    with pytest.raises(WorkerCrashed, match=r"worker died \(exit code 3\)") as exit_info:
        exited.result(timeout=60)
    assert (exit_info.value.exitcode, exit_info.value.signal) == (3, None)
    with pytest.raises(WorkerCrashed, match=r"\(signal 11, SIGSEGV\)") as segv_info:
        crashed.result(timeout=60)
    assert (segv_info.value.exitcode, segv_info.value.signal) == (-11, signal.SIGSEGV)
    assert [f.result(timeout=10)[0] for f in before + after] == list(range(40))
    assert pool.stats().crashed == 2


@pytest.mark.parametrize(("kind", "type_name"),
                         [("two-args", "NeedsTwoArgs"), ("lock", "HoldsALock")])
def test_unpicklable_exception_becomes_task_failed(
        make_pool: PoolFactory, kind: str, type_name: str) -> None:
    """An exception that cannot come back as itself arrives as TaskFailed with type and message."""
    pool = make_pool(workers=1)
    (pid,) = pool.worker_pids()
    with pytest.raises(TaskFailed) as info:
        pool.submit(("raise_unpicklable", kind)).result(timeout=10)
    assert info.value.type_name == type_name
    assert ("broken ByteRange" if kind == "two-args" else "locked") in info.value.message
    assert pool.submit(("echo", 1)).result(timeout=10)[1] == pid


def test_picklable_exception_comes_back_as_itself(make_pool: PoolFactory) -> None:
    """A handler's picklable exception is re-raised in the parent with its type and message."""
    pool = make_pool(workers=1)
    with pytest.raises(ValueError) as info:
        pool.submit(("raise_value_error", "page 3 has no room for a signature")).result(10)
    assert type(info.value) is ValueError
    assert str(info.value) == "page 3 has no room for a signature"
    assert any("raised in worker pid" in note for note in getattr(info.value, "__notes__", []))


def test_unpicklable_result_becomes_task_failed(make_pool: PoolFactory) -> None:
    """A result that cannot be pickled gives TaskFailed, and the worker serves the next task."""
    pool = make_pool(workers=1)
    with pytest.raises(TaskFailed, match="result could not be pickled"):
        pool.submit(("unpicklable_result", None)).result(timeout=10)
    assert pool.submit(("echo", 3)).result(timeout=10)[0] == 3


def test_sys_exit_in_a_task_does_not_exit_the_parent(make_pool: PoolFactory) -> None:
    """A handler calling sys.exit gives TaskFailed, not SystemExit, and the worker lives on."""
    pool = make_pool(workers=1)
    with pytest.raises(TaskFailed, match="^SystemExit: 5$"):
        pool.submit(("exit_request", None)).result(timeout=10)
    assert pool.submit(("echo", 2)).result(timeout=10)[0] == 2


def test_recycling_replaces_workers_without_losing_tasks(make_pool: PoolFactory) -> None:
    """Workers are replaced after max_tasks_per_worker tasks and every task still completes."""
    pool = make_pool(workers=2, max_tasks_per_worker=3)
    first_pids = set(pool.worker_pids())
    futures = [pool.submit(("echo", i)) for i in range(30)]
    results = [f.result(timeout=20) for f in futures]
    assert [r[0] for r in results] == list(range(30))
    tasks_per_pid: dict[int, int] = defaultdict(int)
    for _, pid, _token in results:
        tasks_per_pid[pid] += 1
    assert max(tasks_per_pid.values()) <= 3
    assert len(tasks_per_pid) >= 10
    assert set(tasks_per_pid) - first_pids
    deadline = time.monotonic() + 5  # the last retirements may trail the last results
    while pool.stats().recycled < len(tasks_per_pid) - 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.stats().recycled >= len(tasks_per_pid) - 2
    assert not any(is_our_child(pid) for pid in first_pids)


def test_failing_setup_raises_from_start_without_the_secret() -> None:
    """start() raises WorkerSetupFailed with setup's message, no secret, and no workers left."""
    pool = WorkerPool(setup=f"{TASKS}:setup_fails", handler=f"{TASKS}:call",
                      setup_arg={"key": "/etc/key.pem", "password": SECRET},
                      workers=2, task_timeout=5, max_tasks_per_worker=10)
    started = time.monotonic()
    with pytest.raises(WorkerSetupFailed, match="wrong password") as info:
        pool.start()
    assert time.monotonic() - started < 10
    for text in (str(info.value), repr(info.value), repr(pool)):
        assert SECRET not in text
    assert pool.worker_pids() == []
    assert not [p for p in multiprocessing.active_children() if p.name == "signer-worker"]
    with pytest.raises(WorkerSetupFailed, match="wrong password"):
        pool.submit(("echo", 1)).result(timeout=1)


def test_secret_is_not_in_worker_argv_or_environment(make_pool: PoolFactory) -> None:
    """setup_arg travels over the pipe: it is in neither argv nor the environment of a worker."""
    pool = make_pool(setup_arg={"password": SECRET})
    assert pool.submit(("echo", 1)).result(timeout=10)
    for pid in pool.worker_pids():
        assert SECRET.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert SECRET.encode() not in Path(f"/proc/{pid}/environ").read_bytes()


def test_setup_failing_later_fails_pending_and_future_tasks(
        make_pool: PoolFactory, tmp_path: Path) -> None:
    """A replacement whose setup fails fails queued and new tasks with WorkerSetupFailed."""
    flag = tmp_path / "key-gone"
    pool = make_pool(setup=f"{TASKS}:setup_fails_if_flag", setup_arg=str(flag), workers=1,
                     max_tasks_per_worker=2)
    assert pool.submit(("echo", 1)).result(timeout=10)[0] == 1
    flag.touch()
    last_on_old_worker = pool.submit(("sleep", 0.2))
    pending = pool.submit(("echo", 3))
    assert last_on_old_worker.result(timeout=10)[0] == 0.2
    with pytest.raises(WorkerSetupFailed, match="the key file became unreadable"):
        pending.result(timeout=10)
    with pytest.raises(WorkerSetupFailed):
        pool.submit(("echo", 4)).result(timeout=10)
    deadline = time.monotonic() + 5
    while pool.worker_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.worker_pids() == []


def test_close_fails_queued_tasks_and_reaps_workers(make_pool: PoolFactory) -> None:
    """close() lets the running task finish, fails queued ones with PoolClosed, reaps workers."""
    pool = make_pool(workers=1)
    pids = pool.worker_pids()
    running = pool.submit(("sleep", 0.5))
    queued = [pool.submit(("echo", i)) for i in range(5)]
    time.sleep(0.2)
    pool.close()
    assert running.result(timeout=0)[0] == 0.5
    for future in queued:
        with pytest.raises(PoolClosed) as info:
            future.result(timeout=0)
        assert not info.value.started
    with pytest.raises(PoolClosed):
        pool.submit(("echo", 9)).result(timeout=1)
    assert pool.worker_pids() == []
    assert not any(is_our_child(pid) for pid in pids)
    assert not [p for p in multiprocessing.active_children() if p.name.endswith("-worker")]


def test_close_fails_the_tasks_of_a_message_that_never_started(make_pool: PoolFactory) -> None:
    """A message's task killed by close() raises PoolClosed as started; those after it in
    the message never ran, and say so."""
    pool = make_pool(workers=1)
    running, waiting = pool.submit_many([("sleep", 30), ("echo", 1)])
    time.sleep(0.2)
    pool.close(timeout=0.3)
    with pytest.raises(PoolClosed) as info:
        running.result(timeout=10)
    assert info.value.started
    with pytest.raises(PoolClosed) as info:
        waiting.result(timeout=10)
    assert not info.value.started


def test_close_kills_tasks_still_running_at_its_timeout(make_pool: PoolFactory) -> None:
    """A task still running when close()'s timeout ends is killed and raises PoolClosed."""
    pool = make_pool(workers=2)
    pids = pool.worker_pids()
    running = pool.submit(("sleep", 30))
    time.sleep(0.2)
    started = time.monotonic()
    pool.close(timeout=0.3)
    assert time.monotonic() - started < 3
    with pytest.raises(PoolClosed) as info:
        running.result(timeout=0)
    assert info.value.started
    assert not any(is_our_child(pid) for pid in pids)


def test_worker_dying_while_idle_is_replaced_before_the_next_task() -> None:
    """A worker killed while idle is replaced, and the next task runs instead of failing."""
    with WorkerPool(setup=f"{TASKS}:setup_state", handler=f"{TASKS}:call", setup_arg=None,
                    workers=1, task_timeout=10, max_tasks_per_worker=100) as pool:
        (pid,) = pool.worker_pids()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5  # until it has exited, without reaping it
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        echoed, new_pid, _token = pool.submit(("echo", 1)).result(timeout=10)
        assert (echoed, pool.stats().crashed) == (1, 1)
        assert new_pid != pid and not is_our_child(pid)
    assert pool.worker_pids() == []


def test_close_without_waiting_returns_at_once_and_still_reaps(make_pool: PoolFactory) -> None:
    """close(wait=False) returns at once; running tasks are stopped at the timeout and reaped."""
    pool = make_pool(workers=1)
    (pid,) = pool.worker_pids()
    running = pool.submit(("sleep", 30))
    time.sleep(0.2)
    started = time.monotonic()
    pool.close(wait=False, timeout=0.3)
    assert time.monotonic() - started < 0.1
    with pytest.raises(PoolClosed, match="closed while the task ran"):
        running.result(timeout=5)
    deadline = time.monotonic() + 5
    while is_our_child(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not is_our_child(pid)


def test_cancelled_queued_task_is_skipped(make_pool: PoolFactory) -> None:
    """A future cancelled while queued never runs and the tasks behind it still do."""
    pool = make_pool(workers=1)
    busy = pool.submit(("sleep", 0.3))
    cancelled = pool.submit(("exit_with", 4))
    assert cancelled.cancel()
    after = pool.submit(("echo", 5))
    assert after.result(timeout=10)[0] == 5
    assert busy.result(timeout=10)[0] == 0.3
    assert pool.stats().crashed == 0


def test_workers_ignore_sigint(make_pool: PoolFactory, capfd: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C's SIGINT reaching the workers neither kills them nor prints a traceback."""
    pool = make_pool(workers=2)
    pids = pool.worker_pids()
    running = pool.submit(("sleep", 0.3))
    time.sleep(0.1)
    for pid in pids:
        os.kill(pid, signal.SIGINT)
    assert running.result(timeout=10)[0] == 0.3
    results = [f.result(timeout=10) for f in [pool.submit(("echo", i)) for i in range(10)]]
    assert {pid for _, pid, _ in results} <= set(pids)
    assert pool.worker_pids() == pids
    assert "KeyboardInterrupt" not in capfd.readouterr().err


PARENT_SCRIPT = f"""
import time
from folderseal.providers.local.pool import WorkerPool
pool = WorkerPool(setup="{TASKS}:setup_state", handler="{TASKS}:call", setup_arg=None,
                  workers=2, task_timeout=60, max_tasks_per_worker=100)
pool.start()
pool.submit(("sleep", 60))
time.sleep(0.3)
print(*pool.worker_pids(), flush=True)
time.sleep(60)
"""


def test_workers_exit_when_the_parent_is_killed() -> None:
    """When the parent dies by SIGKILL its workers, busy or idle, exit within a few seconds."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT_SCRIPT], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2 and not any(is_gone(pid) for pid in pids)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while not all(is_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(is_gone(pid) for pid in pids)


def test_many_trivial_tasks_have_low_overhead(make_pool: PoolFactory) -> None:
    """2,000 trivial tasks on 2 workers take well under 8 s; the per-task overhead is small."""
    pool = make_pool(workers=2)
    started = time.monotonic()
    futures = [pool.submit(("nothing", i)) for i in range(2000)]
    _done, not_done = wait(futures, timeout=20)
    assert not not_done
    assert [f.result() for f in futures] == list(range(2000))
    assert time.monotonic() - started < 8
