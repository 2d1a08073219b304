"""The daemon: intake on folder threads, batches on batch threads, signing in processes.

One concurrency model: threads. Each folder's intake (watch hints, scans, settle,
claims, batch forming) runs on a thread of its own (service/folderloop.py), so a share
that hangs stops only its folder; the main thread watches over them, keeps the notes the
heartbeat sends and pings systemd's watchdog. Batch threads (each with its own store
connection) drive batches through the provider's lifecycle; the local provider signs in
worker processes. SIGTERM or SIGINT sets the stop flag: the intakes stop claiming, each
batch thread finishes the step it is in (the local signer stops between files; a remote
batch's state is durable), worker processes exit, and the process exits 0. A second
signal exits at once.

An unexpected exception in any thread stops the daemon with exit code 1, so systemd
restarts it; a share that goes away is an outage handled by the intake, not a crash.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, cast

from folderseal.batches.backoff import backoff
from folderseal.batches.machine import Busy, Machine
from folderseal.batches.views import Staging
from folderseal.core import safety, statelock, systemd
from folderseal.core.config import Settings
from folderseal.core.errors import (
    ConfigError,
    ExitCode,
    FolderSealError,
    NodeNameTaken,
    TransientError,
)
from folderseal.core.logs import get as get_logger
from folderseal.core.procmetrics import give_back_freed_memory
from folderseal.intake.folder import FolderIntake
from folderseal.intake.hashing import Hasher
from folderseal.intake.watch import Hint
from folderseal.providers import Provider, ProviderFactory, build
from folderseal.providers.local.tracker import stop_resource_tracker
from folderseal.providers.measured import MeasuredProvider
from folderseal.publish.probe import Probe
from folderseal.publish.sink import Sink
from folderseal.service import budgets, node, startchecks, status
from folderseal.service.folderloop import FolderLoop, HungFolders
from folderseal.service.leasekeeper import keep_leases
from folderseal.service.notices import Notices
from folderseal.service.web import WebServer
from folderseal.store import Store
from folderseal.store.opening import open_store
from folderseal.work import WorkFolder

HEARTBEAT_SECONDS = 2.0
TRIM_SECONDS = 10.0  # how often freed C heap memory is handed back (give_back_freed_memory)
STATUS_SECONDS = 10.0   # systemd's STATUS= line: a full status report each time
STALL_SECONDS = 60.0    # a main loop this late is hung, without a systemd watchdog
STATE_RETRY_SECONDS = 2.0
NOTICES_JOIN_SECONDS = 1.0
FOLDER_JOIN_SECONDS = 5.0  # a folder thread stuck on a hung share is left behind
MAX_SLEEP = 1.0


class Daemon:
    """The running daemon. Its methods are its life (prepare, run, stop) and the wiring of each
    folder's parts and threads; what each part does lives in its own module.

    ``build_provider`` makes each configured provider from its name, its
    ``[providers.<name>]`` table and the state folder: the registry's kinds by default; a
    test hands in its own provider class instead of swapping one into a built daemon.
    Whatever it builds, the daemon checks, starts and closes, and wraps in
    :class:`MeasuredProvider`, so every provider's steps are timed alike.
    """

    def __init__(self, settings: Settings, *, batch_threads: int = 2,
                 delay: Callable[[int], float] = backoff, config_path: Path | None = None,
                 build_provider: ProviderFactory = build) -> None:
        self.settings = settings
        self.batch_threads = batch_threads
        self.delay = delay
        self.build_provider = build_provider
        self.node = settings.node_name
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.batches_ready = threading.Condition()
        self.busy = Busy()  # batches the batch threads are working on
        self.log = get_logger(node=self.node)
        self.providers: dict[str, Provider] = {}
        self.intakes: dict[str, FolderIntake] = {}
        self.loops: dict[str, FolderLoop] = {}  # each intake's thread, while it runs
        self.hung = HungFolders(self.loops, self.log)
        self.folder_stores: dict[str, Store] = {}  # each intake's store connection
        self.works: dict[str, WorkFolder] = {}
        self.sinks: dict[str, Sink] = {}  # each folder's, on the main thread's store
        self.store: Store | None = None
        self.fatal: BaseException | None = None
        self.started_at = time.time()
        self.loop_at = self.started_at    # the main loop's last round
        self._notes: dict[str, Any] = {}  # the main loop's last, for the heartbeat thread
        self._notes_kept = self._notes_sent = 0  # how many rounds' notes: kept, in the store
        self._notes_changed = threading.Condition()
        self.notices = Notices(config_path, settings.state_dir, self.log)
        self.threads: list[threading.Thread] = []
        self.notifier = systemd.Notifier()
        # Late by a whole WatchdogSec= is when systemd gives up on the daemon too.
        self.stall_seconds = 2 * self.notifier.interval if self.notifier.interval \
            else STALL_SECONDS
        self.web: WebServer | None = None
        self._lock_fd: int | None = None
        self.staging = Staging(settings.state_dir)  # prepare() says where, by the store

    # -- start and stop ------------------------------------------------------------

    def prepare(self) -> None:
        """Everything that can refuse to start: lock, layout, store, seal, work folders."""
        settings = self.settings
        if not settings.folders:
            raise ConfigError("no [folders.<name>] table is configured: nothing to watch")
        safety.check_layout(settings)
        self._lock_fd = statelock.acquire(settings.state_dir)  # makes the folder if needed
        self.store = open_store(settings, self.node, check=True)
        # Fleet mode stages on the share, per batch and epoch (views.Staging).
        self.staging = Staging.of(settings)
        released = node.register(self.store, settings, self.started_at)
        if released:
            self.log.info("daemon.leases_released", batches=released)
        startchecks.open_batches_are_configured(self.store, settings)
        startchecks.store_is_current(self.store, settings)
        for name in sorted({folder.provider for folder in settings.folders.values()}):
            provider = self.build_provider(name, settings.providers[name], settings.state_dir)
            budgets.share_request_limit(provider, settings, self.node)  # fleet-wide on PostgreSQL
            self.providers[name] = cast(Provider, MeasuredProvider(provider))
        self.notices.start(self.providers)
        if settings.metrics.address is not None:
            self.web = WebServer(settings.metrics.address, self.report, self.health)
        for name, folder in settings.folders.items():
            cap = self.providers[folder.provider].max_batch_files
            if cap is not None and cap < folder.batch_max_files:
                self.log.info("folder.batch_capped", folder=name, provider=folder.provider,
                              batch_max_files=folder.batch_max_files, cap=cap,
                              reason=f"provider {folder.provider!r} "
                              f"({settings.providers[folder.provider].kind}) takes at most "
                              f"{cap} file(s) per batch; batch_max_files is capped for it")
            intake = self._intake(name)
            self.intakes[name] = intake
            intake.start(time.time())
        for provider in self.providers.values():
            provider.start()
        if self.web is not None:
            self.web.start()

    def _intake(self, name: str) -> FolderIntake:
        """One folder's parts: its work folder, its sink on this thread's store, the probe
        of its output folders (whose errors thread puts rejected files into the errors
        folder), and the intake that drives them, on a store connection of its own (its
        thread's, once :meth:`run` starts it) and with watch hints of its own."""
        assert self.store is not None
        folder = self.settings.folders[name]
        work = self.works[name] = WorkFolder(folder.work_folder, name, self.node)
        self.sinks[name] = Sink(name, folder, work, self.store, self.node)
        probe = Probe(name, folder, self.settings.state_dir, self.store, work, folder.provider,
                      self.settings.providers[folder.provider].kind)
        store = self.folder_stores[name] = self.store.connect(handed_over=True)
        hints: queue.SimpleQueue[Hint] = queue.SimpleQueue()
        intake = FolderIntake(name, folder, store, work, probe, hints, threading.Event(),
                              provider=folder.provider,
                              reject=lambda _claim, _why: probe.rejected(),
                              max_batch_files=self.providers[folder.provider].max_batch_files,
                              on_batch=self._batches_ready,
                              node_alive=lambda other: node.alive(store, self.settings, other),
                              alive_seconds=node.alive_seconds(self.settings))
        self.loops[name] = FolderLoop(intake, hints, intake.watcher.wake, self.stop)
        return intake

    def sink_rejected(self) -> None:
        """Put the files the intakes rejected into the errors folders now, on this thread
        (``folderseal sign``, which has no main loop to hold up)."""
        for name, intake in self.intakes.items():
            intake.probe.sink_rejected(self.sinks[name].failures)

    def close(self) -> None:
        if self.web is not None:
            self.web.close()
        for intake in self.intakes.values():
            intake.stop()
        for name, store in self.folder_stores.items():
            thread = self._folder_thread(name)
            if thread is None or not thread.is_alive():  # a hung one may still use it
                store.close()
        for provider in self.providers.values():
            provider.close()
        # The signing workers are gone: no process of ours may outlive the daemon.
        stop_resource_tracker()
        if self.store is not None:
            self.store.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            os._exit(ExitCode.FAILURE)  # asked twice: stop now
        self._wake_all()

    def _wake_all(self) -> None:
        self.stop.set()
        self.wake.set()
        for loop in self.loops.values():
            loop.wake.set()

    # -- running -------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; the exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.threads = [threading.Thread(target=self._guard, args=(self._batch_loop,),
                                         name=f"batches-{i}", daemon=True)
                        for i in range(self.batch_threads)]
        self.threads.append(threading.Thread(target=self._guard, args=(self._notices_loop,),
                                             name="notices", daemon=True))
        self.threads.append(threading.Thread(target=self._guard, args=(self._leases_loop,),
                                             name="leases", daemon=True))
        if self.settings.store.database_url() is not None:  # other nodes' work wakes it
            self.threads.append(threading.Thread(target=self._guard,
                                                 args=(self._wakeup_loop,), name="wakeup",
                                                 daemon=True))
        self.threads.append(threading.Thread(target=self._guard, args=(self._heartbeat_loop,),
                                             name="heartbeat", daemon=True))
        assert self.store is not None
        for name, loop in self.loops.items():
            intake = self.intakes[name]
            hasher = Hasher(intake.claims, self.store, intake.hash_recorded, self.stop)
            self.threads += [threading.Thread(target=self._guard, args=(loop.run,),
                                              name=f"intake-{name}", daemon=True),
                             threading.Thread(target=self._guard, args=(hasher.run,),
                                              name=f"hasher-{name}", daemon=True)]
        for thread in self.threads:
            thread.start()
        self.log.info("daemon.started", pid=os.getpid(), folders=sorted(self.intakes),
                      state_dir=str(self.settings.state_dir))
        try:
            self._guard(self._main_loop)
        finally:
            self._wake_all()
            with self.batches_ready:
                self.batches_ready.notify_all()
            with self._notes_changed:  # the heartbeat thread stops waiting
                self._notes_changed.notify_all()
            self.notifier.stopping()
            for thread in self.threads:
                thread.join(self._join_seconds(thread))
                if thread.is_alive() and thread.name.startswith(("intake-", "hasher-")):
                    self.log.warning("folder.not_stopped", thread=thread.name,
                                     reason="it still waits on a share that hangs",
                                     next_step="nothing: it was only claiming, and the "
                                     "next start finishes its claims")
            self.close()
        if isinstance(self.fatal, FolderSealError):  # e.g. a foreign work folder: exit 78
            self.log.error("daemon.stopped", reason=str(self.fatal))
            return self.fatal.exit_code
        if self.fatal is not None:
            self.log.error("daemon.stopped", reason="unexpected failure; systemd restarts it")
            return ExitCode.FAILURE
        self.log.info("daemon.stopped", reason="asked to stop")
        return ExitCode.OK

    @staticmethod
    def _join_seconds(thread: threading.Thread) -> float | None:
        """How long stopping waits for a thread: a provider check under way changes
        nothing, and a folder's intake may hang on its share; the rest finish their step."""
        if thread.name == "notices":
            return NOTICES_JOIN_SECONDS
        return FOLDER_JOIN_SECONDS if thread.name.startswith(("intake-", "hasher-")) else None

    def _folder_thread(self, name: str) -> threading.Thread | None:
        return next((t for t in self.threads if t.name == f"intake-{name}"), None)

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - any surprise ends the daemon
            if self.fatal is None:
                self.fatal = exc
            self.log.exception("daemon.crashed", thread=threading.current_thread().name)
            self._wake_all()

    def _main_loop(self) -> None:
        """Watch over the folder threads: the heartbeat's notes, READY, the pings."""
        last_notes = last_status = last_trim = 0.0
        ready = False
        line = ""
        while not self.stop.is_set():
            now = time.time()
            self.loop_at = now
            self.hung.log_changes()
            if now - last_notes >= HEARTBEAT_SECONDS:  # the heartbeat thread sends them
                self.keep_notes(now)
                last_notes = now
            if ready or all(loop.ready for loop in self.loops.values()):
                if not ready or now - last_status >= STATUS_SECONDS:
                    self.keep_notes(now)  # the line reads them from the store
                    self.notes_sent(HEARTBEAT_SECONDS)
                    line, last_status = self._status_line(), now
                if not ready:  # every reachable inbox scanned; a share that is down says so
                    self.notifier.ready(line)
                    ready = True
                # From this loop, and only while nothing a restart would mend is wrong: a
                # hung loop, a dead thread or watcher stops the pings, and systemd restarts
                # the daemon. A folder hung on its share does not: a restart would hang too.
                self.notifier.beat(now, line, healthy=not self.problems(now))
            if now - last_trim >= TRIM_SECONDS:
                give_back_freed_memory()
                last_trim = now
            self.wake.wait(MAX_SLEEP / 2)
            self.wake.clear()

    def _notices_loop(self) -> None:
        assert self.store is not None
        if any(provider.steps.publishes for provider in self.providers.values()):
            try:
                store = self.store.connect()  # a connection of this thread's own
            except TransientError as exc:  # the store is away: tidy at the next start
                self.log.warning("provider.tidy_failed", reason=str(exc),
                                 next_step="it is tried again at the next start")
            else:
                try:
                    startchecks.tidy_published(store, self.providers, self.log)
                finally:
                    store.close()
        self.notices.keep_checking(self.providers, self.stop)

    def _leases_loop(self) -> None:
        assert self.store is not None
        store = self.store.connect()  # as this node: it shares the batch threads' leases
        # (PostgreSQL: a connection that is lost is opened again at its next use.)
        try:
            keep_leases(store, self.stop)
        finally:
            store.close()

    def _wakeup_loop(self) -> None:
        """PostgreSQL only: another node's new or released batch wakes the batch threads at
        once (store/wakeup.py); the poll in _batch_loop stays the safety net."""
        from folderseal.store.wakeup import listen  # psycopg: only when a URL names it
        url = self.settings.store.database_url()
        assert url is not None
        listen(url, self.node, self._batches_ready, self.stop)

    def _batches_ready(self) -> None:
        with self.batches_ready:
            self.batches_ready.notify_all()

    def _batch_loop(self) -> None:
        assert self.store is not None
        store = self.store.connect()  # a connection of this thread's own
        try:
            machine = self._machine(store)
            while not self.stop.is_set():
                try:
                    if machine.run_once():
                        continue
                    due = store.next_due()  # on the store's clock, as the batch's times
                    timeout = MAX_SLEEP if due is None else \
                        min(MAX_SLEEP, max(0.01, due - store.clock()))
                except TransientError as exc:  # the store takes no writes or is away: wait
                    self.log.warning("batches.paused", reason=str(exc))
                    self.stop.wait(STATE_RETRY_SECONDS)
                    continue
                with self.batches_ready:
                    self.batches_ready.wait(timeout)
        finally:
            store.close()

    def _machine(self, store: Store) -> Machine:
        """A state machine on ``store`` (a batch thread's own, or the main thread's)."""
        sinks = self.sinks if store is self.store else {
            name: Sink(name, self.settings.folders[name], work, store, self.node)
            for name, work in self.works.items()}
        return Machine(store, self.providers, sinks, self.works, self.settings.state_dir,
                       self.stop, delay=self.delay, busy=self.busy, staging=self.staging)

    # -- the heartbeat ---------------------------------------------------------------
    # On a thread and a store connection of its own: a store write that waits, or a
    # main loop that is stuck, must not stop the beat, or other nodes would count this
    # live node dead and take its batches and claims over. The main loop keeps the notes
    # the beat sends (what `status` shows of each folder, as each folder's thread last
    # noted it; a folder hung on its share says so); ``main_loop_at`` shows their age.

    def keep_notes(self, now: float) -> None:
        """Keep this round's notes for the heartbeat thread, and have it send them now."""
        notes = {"folders": {name: loop.notes() for name, loop in self.loops.items()},
                 "warnings": self.notices.texts()}
        with self._notes_changed:
            self._notes = notes
            self._notes_kept += 1
            self._notes_changed.notify_all()

    def notes_sent(self, timeout: float) -> bool:
        """Wait until the notes kept last are in the store (what status reads), for
        ``timeout`` at most: False if they are not (the store does not answer)."""
        with self._notes_changed:
            return self._notes_changed.wait_for(
                lambda: self._notes_sent >= self._notes_kept or self.stop.is_set(), timeout)

    def heartbeat(self, store: Store | None = None) -> None:
        """Record that this daemon is alive (on ``store``: default the main thread's),
        with the main loop's last notes, when its last round began, and this host's
        clock, which status compares with the time the store stamps."""
        store = store or self.store
        assert store is not None
        with self._notes_changed:
            notes: dict[str, Any] = dict(self._notes)
            kept = self._notes_kept
        notes["main_loop_at"] = self.loop_at
        notes[node.CLOCK_NOTE] = time.time()  # just before the store stamps it: the offset
        store.heartbeat(os.getpid(), self.started_at, notes)
        with self._notes_changed:
            self._notes_sent = max(self._notes_sent, kept)
            self._notes_changed.notify_all()

    def _heartbeat_loop(self) -> None:
        """Beat every HEARTBEAT_SECONDS, and as soon as the main loop kept new notes."""
        assert self.store is not None
        store = self.store.connect()  # a connection of this thread's own
        store.instance = self.store.instance  # whose beats these are (register_node)
        try:
            while not self.stop.is_set():
                with self._notes_changed:
                    tried = self._notes_kept  # the notes this beat sends, or later ones
                try:
                    self.heartbeat(store)
                except TransientError as exc:
                    self.log.warning("daemon.heartbeat_failed", reason=str(exc),
                                     next_step="check that the store answers; past "
                                     "lease_seconds without a beat other nodes count this "
                                     "one dead")
                except NodeNameTaken as exc:  # this one was thought dead: stop, exit 78
                    self.fatal = exc
                    self.stop.set()
                    self.wake.set()
                    return
                with self._notes_changed:  # until new notes, or the next beat is due
                    self._notes_changed.wait_for(
                        lambda: self._notes_kept > tried or self.stop.is_set(),  # noqa: B023
                        HEARTBEAT_SECONDS)
        finally:
            store.close()

    # -- health --------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The status report (as ``folderseal status`` prints it)."""
        return status.collect(self.settings, warnings=self.notices.texts())

    def _status_line(self) -> str:
        try:
            return status.summary(self.report())
        except Exception as exc:  # noqa: BLE001 - a status line must never stop the loop
            return f"status unavailable: {type(exc).__name__}"

    def problems(self, now: float | None = None) -> list[str]:
        """Why the daemon is not making progress, of what a restart would mend (empty
        when nothing): the main loop late, a folder's watcher down or scan overdue, a
        thread gone. A folder hung on its share is not among them (see hung_folders)."""
        now = time.time() if now is None else now
        found = []
        if now - self.loop_at > self.stall_seconds:
            found.append(f"the main loop has made no progress for {now - self.loop_at:.0f} s")
        found += [p for name, intake in self.intakes.items()
                  if not self.loops[name].hung_seconds() and (p := intake.health(now))]
        found += [f"the thread {t.name} stopped" for t in self.threads if not t.is_alive()]
        return found

    def hung_folders(self) -> list[str]:
        """The folders whose intake waits on a share that hangs, and for how long."""
        return self.hung.named()

    def health(self) -> list[str]:
        """:meth:`problems`, hung folders, and whether the store answers (``/healthz``)."""
        found = self.problems() + self.hung_folders()
        why = self.store.why_unavailable() if self.store is not None else "it is not open"
        if why is not None:
            found.append(f"the store does not answer: {why}")
        return found

    # -- one-shot ------------------------------------------------------------------

    def drain(self, until: Callable[[], bool], timeout: float) -> None:
        """Advance batches on this thread until ``until()`` holds (for ``folderseal sign``)."""
        assert self.store is not None
        machine = self._machine(self.store)
        deadline = time.time() + timeout
        while not until() and not self.stop.is_set() and time.time() < deadline:
            if not machine.run_once():
                due = self.store.next_due()
                time.sleep(0.05 if due is None else min(1.0, max(0.0, due - self.store.clock())))
