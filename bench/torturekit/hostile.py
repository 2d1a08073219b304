"""Scenario 5, hostile input: what careless or malicious producers put in an inbox.

* names and sizes drawn by hypothesis: any bytes a Linux filesystem allows in a name
  (invalid UTF-8, newlines, control characters, ``:``), names of 255 bytes, names that
  collide after Unicode normalisation or case folding, sizes from 0 up to ``max_size``
  (and one 2 GiB file in the full campaign);
* files truncated, rewritten or replaced (rename over) while they settle: only the
  final version may be sealed;
* a symlink swapped in for a settled file just before its claim: never followed, so
  the file it points at is never sealed;
* files the daemon may not read (it runs as ``nobody`` when the campaign runs as root):
  they wait, then go to errors as stuck;
* SEAL packages carrying unsafe entry names (the emulator's ``unsafe-entry`` fault):
  never written anywhere.

Names the built-in ignore list covers stay in the inbox untouched; the list is written
out again here from the README's "Ignored names" rather than imported, so a change to
folderseal's list that drops a temp-file pattern shows up as a finding.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import time
import unicodedata
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench.torturekit.checks import check, read_json
from bench.torturekit.scenarios import Row, drain, settled, tail, unexpected_exit
from bench.torturekit.world import Dropped, World

IGNORED_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp")
IGNORED_NAMES = ("thumbs.db", "desktop.ini")
IN_PROGRESS = (b".scan-%d.pdf.Ab3xYz", b"~$report-%d.docx", b"upload-%d.PART", b"%d.crdownload",
               b".syncthing.doc-%d.tmp", b"Thumbs.db%d.tmp")
NAME_MAX = 255
BIG = 2 << 30


def ignored(name: bytes) -> bool:
    """True if folderseal must leave a file of this name alone (the built-in list)."""
    lowered = name.lower()
    return (name.startswith((b".", b"~")) or lowered.endswith(tuple(
        s.encode() for s in IGNORED_SUFFIXES)) or lowered in (n.encode() for n in IGNORED_NAMES))


# Any byte but "/" and NUL; a name is never "." or "..".
_byte_names = st.binary(min_size=1, max_size=40).map(
    lambda b: b.replace(b"/", b"_").replace(b"\0", b"_")).filter(lambda b: b not in (b".", b".."))


@st.composite
def _colliding(draw: st.DrawFn) -> list[bytes]:
    """Two to four names that look the same to a person: NFC/NFD forms and cases."""
    word = draw(st.text(alphabet="aeiouéüñçAÉ", min_size=1, max_size=12))
    forms = {unicodedata.normalize(f, word) for f in ("NFC", "NFD")} | {word.upper(),
                                                                        word.lower()}
    return [f"{form}.txt".encode() for form in sorted(forms)]


_long = st.integers(min_value=NAME_MAX - 8, max_value=NAME_MAX).map(
    lambda n: b"L" * (n - 4) + b".txt")
NAMES = st.one_of(_byte_names, _long, _colliding().map(lambda names: names[0]))
BATCH = st.one_of(st.lists(NAMES, min_size=1, max_size=5, unique=True),
                  _colliding())


class Hostile:
    def __init__(self, world: World, rng: random.Random, max_size: int) -> None:
        self.world = world
        self.rng = rng
        self.max_size = max_size
        self.n = 0
        self.skipped: set[str] = set()                  # names meant to be left alone
        self.expect_error: dict[str, set[str]] = {}     # source → acceptable error codes
        self.secret = world.root / "secret" / "payroll.txt"
        self.secret.parent.mkdir()
        self.secret.write_text("must never be sealed or published\n")
        self.seen: Counter[str] = Counter()

    def body(self, size: int) -> bytes:
        """Unique bytes of about ``size`` (the campaign tells files apart by sha256)."""
        self.n += 1
        head = f"hostile {self.n}\n".encode()
        return (head + self.rng.randbytes(max(0, size - len(head))))[:max(size, len(head))]

    def place(self, name: bytes, data: bytes) -> None:
        inbox = os.fsencode(self.world.layout.inbox)
        sub = b"h%04d" % self.n
        folder = os.path.join(inbox, sub)
        os.makedirs(folder, exist_ok=True)
        self._own(folder)
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data)
        self._own(path)
        source = os.fsdecode(os.path.join(sub, name))
        if ignored(name):
            self.skipped.add(source)
            self.seen["ignored names"] += 1
        else:
            self.world.record(source, data)
            self.seen["hypothesis names"] += 1

    def _own(self, path: bytes | str | Path) -> None:
        if self.world.user:
            shutil.chown(path, self.world.user)

    # -- the drops ------------------------------------------------------------------

    def names(self, names: list[bytes], sizes: list[int]) -> None:
        for name, size in zip(names, sizes, strict=False):
            self.place(name, self.body(size))
        # And one name a producer uses while it writes, which must be left alone.
        self.place(self.rng.choice(IN_PROGRESS) % self.n, self.body(100))

    def changed_while_settling(self) -> None:
        """Write, then truncate, rewrite or replace within the settle time."""
        inbox = self.world.layout.inbox
        name = f"changing-{self.n:04d}.txt"
        path = inbox / name
        path.write_bytes(self.body(50_000))
        self._own(path)
        how = self.rng.choice(["truncated", "rewritten", "replaced"])
        time.sleep(0.1)
        final = self.body(self.rng.randint(1, 30_000))
        if how == "truncated":
            os.truncate(path, 1000)
            final = path.read_bytes()
        elif how == "rewritten":
            path.write_bytes(final)
        else:
            tmp = inbox / f".{name}.new"
            tmp.write_bytes(final)
            self._own(tmp)
            tmp.rename(path)
        self.world.record(name, final)
        self.seen[f"{how} while settling"] += 1

    def symlink_swap(self, settle: float) -> None:
        """Let a file settle, then put a symlink to the secret in its place."""
        inbox = self.world.layout.inbox
        name = f"swap-{self.n:04d}.txt"
        data = self.body(2000)
        path = inbox / name
        path.write_bytes(data)
        self._own(path)
        time.sleep(settle * self.rng.uniform(0.6, 1.3))
        aside = self.world.root / "aside" / name
        aside.parent.mkdir(exist_ok=True)
        try:
            path.rename(aside)
        except FileNotFoundError:                       # claimed first: it is sealed
            self.world.record(name, data)
            self.seen["swap too late (claimed)"] += 1
            return
        path.symlink_to(self.secret)
        self.expect_error[name] = {"not_regular", "changed", "vanished"}
        self.seen["symlink swapped in"] += 1

    def unreadable(self) -> None:
        """A file owned by root, mode 0600, in an inbox the daemon (nobody) owns."""
        if not self.world.user:
            return
        name = "locked.txt"
        path = self.world.layout.inbox / name
        path.write_text("root only")
        path.chmod(0o600)
        self.expect_error[name] = {"stuck"}
        self.seen["unreadable files"] += 1

    def big(self) -> None:
        """One 2 GiB file: a unique head, then a sparse tail, written under a temp name."""
        name = "big.bin"
        tmp = self.world.layout.inbox / f".{name}.part"
        head = self.body(4096)
        with tmp.open("wb") as f:
            f.write(head)
            f.truncate(BIG)
        self._own(tmp)
        digest = hashlib.sha256(head)
        zeros = bytes(1 << 20)
        left = BIG - len(head)
        while left:
            chunk = zeros[:min(left, len(zeros))]
            digest.update(chunk)
            left -= len(chunk)
        tmp.rename(self.world.layout.inbox / name)
        self.world.dropped[digest.hexdigest()] = Dropped(name, digest.hexdigest(), BIG)
        self.seen["2 GiB files"] += 1

    # -- the checks beyond checks.py ----------------------------------------------------

    def verify(self, row: Row) -> None:
        layout = self.world.layout
        secret = hashlib.sha256(self.secret.read_bytes()).hexdigest()
        records = {}
        for path in layout.errors.rglob("*.error.json"):
            data = read_json(path) or {}
            records[data.get("source")] = data
        for source, codes in self.expect_error.items():
            code = records.get(source, {}).get("error", {}).get("code")
            if code not in codes:
                row.problems.append(f"{source!r}: expected an error record {sorted(codes)}, "
                                    f"found {code}")
        for path in layout.outbox.rglob("*"):
            if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == secret:
                row.problems.append(f"the symlinked secret was published as {path}")
        for source in self.skipped:
            if not os.path.lexists(os.path.join(os.fsencode(layout.inbox),
                                                os.fsencode(source))):
                row.problems.append(f"an ignored name was taken: {source!r}")
        if self.secret.read_text() != "must never be sealed or published\n":
            row.problems.append("the symlinked secret was changed")


def hostile(root: Path, cycles: int, rng: random.Random, max_size: int = 256_000,
            big: bool | None = None) -> Row:
    """``cycles`` hypothesis examples of names and sizes, each with a file changed while
    settling and a symlink swap; unreadable files and unsafe package entries throughout."""
    started = time.monotonic()
    settle = 0.6
    user = "nobody" if os.geteuid() == 0 else None
    world = World.make(root, provider="seal", faults="unsafe-entry=0.5",
                       seed=rng.randrange(1 << 30), user=user,
                       folder={"settle_seconds": settle, "stuck_after_seconds": 8.0},
                       seal={"max_wait_seconds": 60.0})
    row = Row("hostile input", cycles)
    kit = Hostile(world, rng, max_size)
    try:
        life = world.start()
        if not life.started():
            row.problems.append(f"the daemon did not start: {tail(life)}")
            return row
        kit.unreadable()
        if big if big is not None else cycles >= 20:
            kit.big()

        @settings(max_examples=cycles, deadline=None, database=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(names=BATCH, sizes=st.lists(st.integers(0, max_size), min_size=5, max_size=5))
        def example(names: list[bytes], sizes: list[int]) -> None:
            if kit.n > 0:
                sizes = [max(1, s) for s in sizes]   # one empty file: empty files are alike
            kit.names(names, sizes)
            kit.changed_while_settling()
            kit.symlink_swap(settle)
            left = set(kit.skipped) | set(kit.expect_error)
            if not life.wait_for(lambda: settled(world, left), 120):
                raise AssertionError(f"files still waiting after 120 s: {tail(life)}")
            verdict = check(world, None, left)
            assert not verdict.problems(), verdict.problems()

        try:
            example()
        except Exception as exc:  # noqa: BLE001 - a finding, reported in the row
            row.problems.append(f"hypothesis found: {str(exc)[:2000]}")
        unexpected_exit(life, life.process.poll(), row)
        life.wait_for(lambda: all(
            any(True for _ in world.layout.errors.rglob(f"{n}.error.json"))
            for n in kit.expect_error), 30)
        drain(world, row, life, ignored=kit.skipped | set(kit.expect_error),
              timeout=120 + 60 * (cycles >= 20))
        kit.verify(row)
        assert world.emulator is not None
        row.faults = kit.seen + Counter(world.emulator.injected_faults())
        return row
    finally:
        with contextlib.suppress(Exception):
            world.close()
        row.wall = time.monotonic() - started
