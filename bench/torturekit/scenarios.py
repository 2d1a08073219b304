"""The scenarios of the campaign; each returns one :class:`Row` of the table.

Every scenario builds its own world under ``root``, runs ``cycles`` rounds of its
trouble with files flowing, then lets a clean daemon drain the backlog, takes
``folderseal status`` while it runs, stops it (it must exit 0) and checks the
invariants (:mod:`checks`).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.torturekit.checks import Verdict, check, count_events
from bench.torturekit.world import Feeder, Life, World

SEAL_POINTS = ["claimed", "state:BATCHED", "seal:created", "state:CREATED", "seal:uploading",
               "seal:uploaded", "state:UPLOADED", "state:ACCEPTING", "seal:accepted",
               "state:ACCEPTED", "state:CLOSED", "seal:downloading", "state:DOWNLOADED",
               "output-published", "sidecar-published", "state:DELIVERED", "original-removed",
               "state:CLEANED"]
LOCAL_POINTS = ["claimed", "state:BATCHED", "state:CREATED", "state:UPLOADED",
                "state:ACCEPTING", "attempt", "state:ACCEPTED", "state:CLOSED",
                "state:DOWNLOADED", "output-published", "sidecar-published",
                "state:DELIVERED", "original-removed", "state:CLEANED"]
CLEVVER_POINTS = ["claimed", "state:BATCHED", "clevver:created", "state:CREATED",
                  "clevver:attaching", "clevver:attached", "state:UPLOADED", "state:ACCEPTING",
                  "clevver:starting", "clevver:started", "state:ACCEPTED", "state:CLOSED",
                  "state:DOWNLOADED", "output-published", "sidecar-published",
                  "state:DELIVERED", "original-removed", "state:CLEANED"]
# Centrapay's own points first: a short run (the test's sample) still hits each.
CENTRAPAY_POINTS = ["centrapay:publishing", "centrapay:published", "centrapay:creating",
                    "centrapay:created", "claimed", "state:BATCHED", "state:CREATED",
                    "state:UPLOADED", "state:ACCEPTING", "state:ACCEPTED",
                    "state:CLOSED", "state:DOWNLOADED", "output-published",
                    "sidecar-published", "state:DELIVERED", "original-removed",
                    "state:CLEANED"]
POINTS = {"seal": SEAL_POINTS, "local": LOCAL_POINTS, "clevver": CLEVVER_POINTS,
          "centrapay": CENTRAPAY_POINTS}
# Every emulator fault kind at once; the request faults together hit about 27% of calls.
CHAOS = ("429=0.08,500-before=0.08,500-after=0.08,drop=0.06,slow=0.1,truncate=0.3,"
         "unsafe-entry=0.3,fail-document=0.1,never-close=0.1")
# Clevver's: every lost attach answer abandons a remote batch of up to 8 files, so the
# request faults hit about 10% of calls; its own kinds (late start, a batch that never
# delivers, a late txid, quirky envelopes) are drawn per batch, asset or answer.
CLEVVER_CHAOS = ("429=0.03,500-before=0.02,500-after=0.02,drop-before=0.01,drop=0.02,"
                 "slow=0.05,late-start=0.2,never-deliver=0.1,late-txid=0.2,quirky=0.3")
# Centrapay's: every lost create answer costs one file (outcome_unknown, never re-sent),
# so the request faults hit about 12% of calls; its own kinds (a url it cannot fetch, a
# batch that answers 403 for a while after its create, quirky answers) per batch.
CENTRAPAY_CHAOS = ("429=0.03,500-before=0.02,500-after=0.02,drop-before=0.01,drop=0.02,"
                   "slow=0.05,bad-url=0.1,late-403=0.2,quirky=0.3")
CHAOS_BY_PROVIDER = {"seal": CHAOS, "clevver": CLEVVER_CHAOS, "centrapay": CENTRAPAY_CHAOS}
# Files a second the feeder drops in the crash scenario: Centrapay makes one batch (a
# create and its polls, one limiter) per file, so it is fed more slowly.
FEED_GAP = {"centrapay": 0.3}
# Centrapay's max_wait_seconds in the chaos scenario: a minute, as world.CENTRAPAY says
# (each of its batches is one file polled through one limiter; 10 s would turn polls
# queued under load into never_closed records). It is also how long a copy whose create
# is in doubt stays published, and so how long the drain may wait for publish_dir to
# empty. The crash scenario gives every provider 300 s (see crash()).
CHAOS_MAX_WAIT = {"centrapay": 60.0}
DRAIN_SECONDS = 180.0
PAUSES = {"folder.paused", "batches.paused", "daemon.heartbeat_failed"}


@dataclass
class Row:
    scenario: str
    cycles: int
    files: int = 0
    kills: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    twice: int = 0
    partial: int = 0
    waiting: int = 0
    wall: float = 0.0
    delivered: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def take(self, world: World, verdict: Verdict) -> Row:
        self.files, self.kills = verdict.files, self.kills + world.kills
        self.lost, self.twice, self.partial = (len(verdict.lost), len(verdict.twice),
                                               len(verdict.partial))
        self.waiting, self.delivered, self.failed = (verdict.waiting, verdict.delivered,
                                                     verdict.failed)
        self.problems += verdict.problems()
        self.notes["failures"] = dict(verdict.failures)
        return self


def settled(world: World, ignored: set[str] = frozenset()) -> bool:
    """Nothing waits: no file in the inbox (but ``ignored`` ones) or the work folder."""
    try:
        return _settled(world.layout.inbox, ignored)
    except FileNotFoundError:  # a folder the daemon removed while this looked: not yet
        return False


def _settled(inbox: Path, ignored: set[str]) -> bool:
    for path in inbox.rglob("*"):
        if not path.is_file() and not path.is_symlink():
            continue
        relative = path.relative_to(inbox)
        if relative.parts[0] == ".folderseal":
            if relative.parts[1:2] == ("work",) and path.name != "store-id" and \
                    not any(part.startswith(".") for part in relative.parts[2:]):
                return False
        elif str(relative) not in ignored and not path.name.startswith("."):
            return False
    return True


def drain(world: World, row: Row, life: Life | None = None, ignored: set[str] = frozenset(),
          timeout: float = DRAIN_SECONDS) -> Row:
    """Let one clean daemon finish the backlog, then check every invariant."""
    if life is None:
        life = start_or_recover(world, row)
    if life is None:
        return row.take(world, check(world, None, ignored))
    life.wait_for(lambda: settled(world, ignored), timeout)
    # A copy whose create is in doubt stays published max_wait_seconds, then goes.
    life.wait_for(lambda: not world.published(), world.publish_wait)
    time.sleep(0.5)
    status = world.status()
    code = life.stop()
    if code != 0:
        row.problems.append(f"the draining daemon exited with {code}: {tail(life)}")
    return row.take(world, check(world, status, ignored))


def no_failures(row: Row, when: str) -> Row:
    """Only good files are dropped here: any of them in errors is a finding."""
    if row.failed:
        row.problems.append(f"{row.failed} good files went to errors {when}: "
                            f"{row.notes.get('failures')}")
    return row


def tail(life: Life, lines: int = 6) -> str:
    return " | ".join(life.log.read_text(errors="replace").splitlines()[-lines:])


def start_or_recover(world: World, row: Row, env: dict[str, str] | None = None) -> Life | None:
    """Start the daemon; if it refuses (exit 78: a lost or damaged store), do what its
    message says, as an operator would: move a damaged store aside, run recover, and
    start again."""
    for _ in range(3):
        life = world.start(env)
        if life.started(timeout=60):
            return life
        code = life.exited(10)
        text = life.log.read_text(errors="replace")
        life.kill()
        if code != 78 or "folderseal recover" not in text:
            row.problems.append(f"the daemon did not start (exit {code}): {tail(life)}")
            return None
        row.notes["refused"] = row.notes.get("refused", 0) + 1
        if "damaged" in text:
            move_store_aside(world)
        out = world.run("recover")
        if out.returncode != 0 and "damaged" in out.stdout + out.stderr:
            move_store_aside(world)
            out = world.run("recover")
        if out.returncode != 0:
            row.problems.append(f"recover failed ({out.returncode}): {out.stdout[-300:]} "
                                f"{out.stderr[-300:]}")
            return None
        row.notes["recovered"] = row.notes.get("recovered", 0) + 1
    row.problems.append("the daemon refused to start three times in a row")
    return None


def move_store_aside(world: World) -> None:
    aside = world.root / "aside" / str(time.time_ns())
    aside.mkdir(parents=True)
    for path in world.layout.state.glob("folderseal.sqlite*"):
        shutil.move(path, aside / path.name)


def unexpected_exit(life: Life, code: int | None, row: Row) -> None:
    """A daemon that ends by itself (not killed) is a finding."""
    if code is not None and code != -9:
        row.problems.append(f"daemon life {life.log.name} exited with {code}: {tail(life)}")


# -- 1. crash ----------------------------------------------------------------------------

def crash(root: Path, cycles: int, rng: random.Random, provider: str = "seal",
          max_wait: float | None = None, store: str = "sqlite") -> Row:
    """Kill -9 at every named crash point in turn (its 1st to 3rd time), and every
    fourth cycle at a random moment, while the feeder drops files; the store SQLite in
    state_dir or (``store="postgres"``) a PostgreSQL schema of its own."""
    started = time.monotonic()
    # No fault here makes a batch never close, and the emulator signs in this process
    # with the daemon busy beside it: a long campaign on a slow machine builds a backlog,
    # and a 20 s max_wait would turn it into never_closed records the crashes did not cause.
    # (Centrapay: its copies in doubt stay published that long, so its drain waits so.)
    world = World.make(root, provider=provider, seed=rng.randrange(1 << 30),
                       seal={"max_wait_seconds": max_wait or 300.0}, store=store)
    row = Row(f"crash ({provider}{', PostgreSQL' if store == 'postgres' else ''})", cycles)
    points = POINTS[provider]
    hits: Counter[str] = Counter()
    try:
        with Feeder(world, rng, mean_gap=FEED_GAP.get(provider, 0.12)):
            for cycle in range(cycles):
                if cycle % 4 == 3:
                    life = world.start()
                    life.started()
                    time.sleep(rng.uniform(0.05, 3.0))
                    unexpected_exit(life, life.process.poll(), row)
                    life.kill()
                    hits["random moment"] += 1
                    continue
                point = points[(cycle - cycle // 4) % len(points)]
                life = world.start({"FOLDERSEAL_CRASH_AT": f"{point}@{rng.randint(1, 3)}"})
                code = life.exited(timeout=30)
                if code == -9:
                    world.kills += 1
                    hits[point] += 1
                else:
                    unexpected_exit(life, code, row)
                    hits[f"{point} (not reached: killed)"] += 1
                life.kill()
        row.faults = Counter({f"kill at {k}": v for k, v in hits.items()})
        if store == "postgres" and (world.layout.state / "folderseal.sqlite").exists():
            row.problems.append("a SQLite store was made in state_dir: the daemon did not "
                                "use the PostgreSQL store it was given")
        return drain(world, row)
    finally:
        world.close()
        row.wall = time.monotonic() - started


# -- 2. provider chaos -------------------------------------------------------------------

def chaos(root: Path, cycles: int, rng: random.Random, provider: str = "seal",
          max_wait: float | None = None) -> Row:
    """Every emulator fault kind at once (request faults on ~27% of calls, truncated
    downloads and unsafe package entries on 30%), files dropped in bursts."""
    started = time.monotonic()
    world = World.make(root, provider=provider, faults=CHAOS_BY_PROVIDER[provider],
                       seed=rng.randrange(1 << 30),
                       seal={"max_wait_seconds": max_wait or CHAOS_MAX_WAIT.get(provider,
                                                                                 10.0)})
    row = Row("provider chaos" if provider == "seal" else f"provider chaos ({provider})",
              cycles)
    try:
        life = world.start()
        if not life.started():
            row.problems.append(f"the daemon did not start: {tail(life)}")
            return row
        for _ in range(cycles):
            world.drop_some(rng)
            time.sleep(rng.uniform(0.1, 0.8))
            unexpected_exit(life, life.process.poll(), row)
        drain(world, row, life)
        assert world.emulator is not None
        row.faults = Counter(world.emulator.injected_faults())
        return row
    finally:
        world.close()
        row.wall = time.monotonic() - started


# -- 3. share outage ---------------------------------------------------------------------

class Share:
    """The inbox as a bindfs FUSE mount of ``backing``: a network share stand-in."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.process: subprocess.Popen[bytes] | None = None
        self.started: list[subprocess.Popen[bytes]] = []  # every bindfs of this share
        self.decoys: list[Share] = []

    def mount(self) -> None:
        # -f keeps bindfs in the foreground: killing it is the share dying under us.
        self.process = subprocess.Popen(["bindfs", "-f", "--no-allow-other",
                                         str(self.backing), str(self.mountpoint)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started.append(self.process)
        deadline = time.monotonic() + 10
        while not self.mounted():
            if time.monotonic() > deadline:
                raise RuntimeError("bindfs did not mount")
            time.sleep(0.05)

    def mount_elsewhere(self, old_device: int) -> None:
        """Mount again on a new device number, as an NFS or SMB share does after an
        outage: a decoy mount takes the number the kernel would hand out again. A lazy
        unmount frees the old number only once its last user lets go, maybe after the
        decoy was mounted: then the share is mounted again, beside one more decoy."""
        for _ in range(5):
            empty = Path(tempfile.mkdtemp(prefix="folderseal-decoy-"))
            (empty / "point").mkdir()
            decoy = Share(empty, empty / "point")
            decoy.mount()
            self.decoys.append(decoy)
            self.mount()
            if self.mountpoint.stat().st_dev != old_device:
                return
            self.unmount()
        raise RuntimeError("the share came back on its old device number five times")

    def mounted(self) -> bool:
        return subprocess.run(["mountpoint", "-q", str(self.mountpoint)]).returncode == 0

    def die(self) -> None:
        """The server goes away: every access fails (ENOTCONN), the mount stays."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.mountpoint)], check=False,
                       stderr=subprocess.DEVNULL)
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # A lazy unmount ends the server only once the kernel drops the last
                # reference to the mount; the mount is detached already, so end it here.
                self.process.kill()
                self.process.wait()
            self.process = None

    def close(self) -> None:
        """Unmount the share, if it is mounted, and every decoy."""
        if self.process is not None or self.mounted():
            self.unmount()
        for decoy in self.decoys:
            decoy.close()
            shutil.rmtree(decoy.backing, ignore_errors=True)
        self.decoys = []
        # A bindfs whose mount was detached lazily, or mounted over, may outlive it and
        # spin once its backing folder is removed: none is left running.
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.started = []


def _files_below(folder: Path) -> set[str]:
    """The files below ``folder`` now; the daemon moves claim and batch folders while
    this walks, so a folder that vanishes mid-walk is skipped (os.walk ignores it)."""
    return {str(Path(top, name).relative_to(folder))
            for top, _, names in os.walk(folder) for name in names}


def outage(root: Path, cycles: int, rng: random.Random) -> Row:
    """The share dies (bindfs killed: ENOTCONN) or is unmounted (the path is an empty
    folder) and comes back, while other hosts keep writing into the backing folder."""
    started = time.monotonic()
    world = World.make(root, provider="local", seed=rng.randrange(1 << 30),
                       folder={"poll_interval_seconds": 0.5})
    backing = root / "backing"
    backing.mkdir()
    share = Share(backing, world.layout.inbox)
    share.mount()
    row = Row("share outage", cycles)
    seen = Counter[str]()
    try:
        life = world.start()
        if not life.started():
            row.problems.append(f"the daemon did not start: {tail(life)}")
            return row
        if "polling" not in life.log.read_text():
            row.problems.append("a FUSE inbox was not polled")
        with Feeder(world, rng, mean_gap=0.3, into=backing):
            for cycle in range(cycles):
                world.drop_some(rng, most=4)  # this host writes through the share
                time.sleep(rng.uniform(0.5, 2.0))
                outages = count_events([life.log], {"folder.outage"})["folder.outage"]
                watching = count_events([life.log], {"folder.watching"})["folder.watching"]
                before = _files_below(backing / ".folderseal")
                mounted_on = world.layout.inbox.stat().st_dev
                how = "died" if cycle % 2 == 0 else "unmounted"
                share.die() if how == "died" else share.unmount()
                seen[f"share {how}"] += 1
                if not life.wait_for(lambda n=outages: count_events(
                        [life.log], {"folder.outage"})["folder.outage"] > n, 20):
                    row.problems.append(f"cycle {cycle}: no outage logged when the share {how}")
                status = world.status()["folders"]["scans"]
                if not status.get("outage"):
                    time.sleep(2.5)  # the next heartbeat carries it
                    status = world.status()["folders"]["scans"]
                seen["outage shown by status"] += bool(status.get("outage"))
                time.sleep(rng.uniform(0.5, 3.0))
                if how == "died":
                    share.unmount()
                else:
                    stray = list(world.layout.inbox.iterdir())
                    if stray:
                        row.problems.append(f"written into the bare mount point: {stray[:3]}")
                gone = {p for p in before - _files_below(backing / ".folderseal")
                        if "incoming" in p}
                if gone:  # claims may move on to batches (an in-flight step); never vanish
                    row.problems.append(f"cycle {cycle}: claimed files vanished during the "
                                        f"outage: {sorted(gone)[:3]}")
                share.mount_elsewhere(mounted_on)
                seen["share back on a new device"] += (
                    world.layout.inbox.stat().st_dev != mounted_on)
                if not life.wait_for(lambda n=watching: count_events(
                        [life.log], {"folder.watching"})["folder.watching"] > n, 90):
                    row.problems.append(f"cycle {cycle}: work did not resume after the share "
                                        "came back")
                unexpected_exit(life, life.process.poll(), row)
        row.faults = seen
        return no_failures(drain(world, row, life), "while the share was away")
    finally:
        share.close()
        world.close()
        row.wall = time.monotonic() - started


# -- 4. full disk ------------------------------------------------------------------------

def _tmpfs(path: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(path)], check=True)


def _fill(folder: Path) -> Path:
    """Fill ``folder``'s filesystem to the last byte (it may be full already)."""
    filler = folder / ".filler"
    try:
        with filler.open("wb") as f:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
    except OSError:
        pass
    return filler


def _work_files(world: World) -> set[str]:
    """The files in the work folder now; the daemon moves claim folders while this
    walks, so a folder that vanishes mid-walk is skipped (os.walk ignores it)."""
    work = world.layout.work
    return {str(Path(top, name).relative_to(work))
            for top, _, names in os.walk(work) for name in names
            if not name.startswith(".") and name != "store-id"}


def full_disk(root: Path, cycles: int, rng: random.Random) -> Row:
    """The outbox, then the state folder, each on a small tmpfs that fills up: work
    waits with the reason in status or the log, nothing leaves the work folder but
    by delivery, and delivery resumes when space returns."""
    started = time.monotonic()
    world = World.make(root, provider="local", seed=rng.randrange(1 << 30))
    row = Row("full disk", cycles)
    seen = Counter[str]()
    mounts = [world.layout.outbox, world.layout.state]
    for path in mounts:
        _tmpfs(path, "64m")
    try:
        life = world.start()
        if not life.started():
            row.problems.append(f"the daemon did not start: {tail(life)}")
            return row
        with Feeder(world, rng, mean_gap=0.2):
            for cycle in range(cycles):
                which = mounts[cycle % 2]
                time.sleep(rng.uniform(0.3, 1.5))
                filler = _fill(which)
                seen[f"{which.name} full"] += 1
                if which == world.layout.outbox:
                    ok = life.wait_for(lambda: _says_full(world), 30)
                    seen["'no space' shown by status"] += ok
                else:
                    before = sum(count_events([life.log], PAUSES).values())
                    ok = life.wait_for(lambda n=before: sum(
                        count_events([life.log], PAUSES).values()) > n, 30)
                    seen["pause logged"] += ok
                if not ok:
                    row.problems.append(f"cycle {cycle}: the {which.name} filled up and "
                                        "nothing said so")
                held = _work_files(world)
                time.sleep(rng.uniform(0.5, 2.0))
                vanished = held - _work_files(world)
                delivered = vanished and which == world.layout.outbox
                if vanished and not delivered:
                    row.problems.append(f"cycle {cycle}: left the work folder while the "
                                        f"{which.name} was full: {sorted(vanished)[:3]}")
                filler.unlink(missing_ok=True)
                unexpected_exit(life, life.process.poll(), row)
        row.faults = seen
        return no_failures(drain(world, row, life), "while a disk was full")
    finally:
        for path in mounts:
            subprocess.run(["umount", "-l", str(path)], check=False)
        world.close()
        row.wall = time.monotonic() - started


def _says_full(world: World) -> bool:
    folder = world.status().get("folders", {}).get("scans", {})
    texts = [b.get("last_error") or "" for b in folder.get("batches", [])] + \
        [folder.get("paused", "")]
    return any("No space left" in t for t in texts)


# -- 6. lost state -----------------------------------------------------------------------

DAMAGE = ("deleted", "corrupted", "rolled back")


def _damage_store(world: World, how: str, rng: random.Random) -> None:
    """Delete the store; write random bytes over part of it; or drop its WAL, so it
    forgets its latest transactions, as a store restored from an older copy would."""
    state = world.layout.state
    if how != "corrupted":
        for path in state.glob("folderseal.sqlite*"):
            if how == "deleted" or path.name != "folderseal.sqlite":
                path.unlink()
        return
    store = state / "folderseal.sqlite"
    size = store.stat().st_size
    start = 0 if rng.random() < 0.3 else rng.randrange(max(1, size))
    with store.open("r+b") as f:
        f.seek(start)
        f.write(os.urandom(min(4096, max(1, size - start))))


def lost_state(root: Path, cycles: int, rng: random.Random) -> Row:
    """With files in flight the store is deleted (under the running daemon), corrupted or
    rolled back (after a kill); the operator does what the daemon's refusal says (move a
    damaged store aside, ``folderseal recover``) and starts it again."""
    started = time.monotonic()
    world = World.make(root, provider="seal", seed=rng.randrange(1 << 30))
    row = Row("lost state", cycles)
    seen = Counter[str]()
    try:
        with Feeder(world, rng, mean_gap=0.12):
            for cycle in range(cycles):
                life = start_or_recover(world, row)
                if life is None:
                    break
                time.sleep(rng.uniform(0.5, 3.0))
                unexpected_exit(life, life.process.poll(), row)
                how = DAMAGE[cycle % len(DAMAGE)]
                if how == "deleted":  # under the running daemon
                    _damage_store(world, how, rng)
                    time.sleep(rng.uniform(0.0, 1.0))
                    life.kill()
                else:
                    life.kill()
                    _damage_store(world, how, rng)
                seen[f"store {how}"] += 1
        seen["daemon refused to start"] = row.notes.get("refused", 0)
        seen["folderseal recover run"] = row.notes.get("recovered", 0)
        row.faults = seen
        return drain(world, row)
    finally:
        world.close()
        row.wall = time.monotonic() - started


SCENARIOS: dict[str, Callable[[Path, int, random.Random], Row]] = {
    "crash-seal": lambda root, n, rng: crash(root, n, rng, "seal"),
    "crash-local": lambda root, n, rng: crash(root, n, rng, "local"),
    "crash-clevver": lambda root, n, rng: crash(root, n, rng, "clevver"),
    "crash-seal-postgres": lambda root, n, rng: crash(root, n, rng, "seal", store="postgres"),
    "crash-local-postgres": lambda root, n, rng: crash(root, n, rng, "local", store="postgres"),
    "chaos": chaos,
    "chaos-clevver": lambda root, n, rng: chaos(root, n, rng, "clevver"),
    "crash-centrapay": lambda root, n, rng: crash(root, n, rng, "centrapay"),
    "chaos-centrapay": lambda root, n, rng: chaos(root, n, rng, "centrapay"),
    "outage": outage,
    "full-disk": full_disk,
    "lost-state": lost_state,
}
