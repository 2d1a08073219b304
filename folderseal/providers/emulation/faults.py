"""Fault injection for the emulators: what goes wrong, and how often.

A spec is a comma-separated list of ``kind=probability`` (``kind`` alone means 1), for
example ``500-before=0.1,429=0.2,truncate``. Each emulator names the kinds it knows
(``kinds``); the request faults are common to all:

* request faults, drawn once per authenticated request to any endpoint: ``429``,
  ``500-before``, ``drop-before``, ``500-after``, ``drop`` (at most one of them, in that
  order of precedence) and ``slow`` (which combines with any of them). SEAL's emulator
  knows all but ``drop-before``;
* SEAL's: ``truncate``, drawn once per successful package download; and the batch
  faults, drawn when a batch is accepted: ``unsafe-entry`` and ``never-close`` once per
  batch, ``fail-document`` once per document;
* other emulators draw their own kinds with ``draw``.

Every decision comes from one ``random.Random(seed)`` behind a lock, so a run with a
fixed seed and a fixed order of requests makes the same decisions. Every configured
kind is drawn on every occasion, hit or not, so one fault firing never shifts the
numbers the later decisions get.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "BATCH_KINDS",
    "KINDS",
    "REQUEST_KINDS",
    "UNSAFE_NAMES",
    "BatchFaults",
    "Faults",
    "RequestFaults",
    "parse_faults",
]

# Precedence order of the mutually exclusive request faults: refusals first (nothing
# done), then the ones that do the work and lose the answer.
EXCLUSIVE_REQUEST_KINDS = ("429", "500-before", "drop-before", "500-after", "drop")
REQUEST_KINDS = (*EXCLUSIVE_REQUEST_KINDS, "slow")
BATCH_KINDS = ("unsafe-entry", "fail-document", "never-close")
# The kinds SEAL's emulator knows.
KINDS = ("429", "500-before", "500-after", "drop", "slow", "truncate", *BATCH_KINDS)

# The unsafe extra package entries, used in turn by successive faulty batches. None
# stands for "a duplicate of a real entry name", resolved when the package is built.
UNSAFE_NAMES: tuple[str | None, ...] = (
    "../evil.txt",
    "/abs/evil.txt",
    "sub/dir.txt",
    "evil\x07bell.txt",
    None,
)


def parse_faults(spec: str, kinds: Sequence[str] = KINDS) -> dict[str, float]:
    """Parse a fault spec naming some of ``kinds`` into {kind: probability}; raise
    ValueError saying what is wrong."""
    result: dict[str, float] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue  # tolerate "", trailing commas and spaces: nothing to inject
        kind, sep, value = item.partition("=")
        kind = kind.strip()
        if kind not in kinds:
            raise ValueError(
                f"unknown fault kind {kind!r} in {spec!r}; known kinds: {', '.join(kinds)}"
            )
        if kind in result:
            raise ValueError(f"fault kind {kind!r} is given twice in {spec!r}")
        probability = 1.0
        if sep:
            try:
                probability = float(value.strip())
            except ValueError:
                raise ValueError(
                    f"fault {kind!r} has probability {value.strip()!r}, which is not a number"
                ) from None
            if math.isnan(probability) or not 0.0 <= probability <= 1.0:
                raise ValueError(
                    f"fault {kind!r} has probability {value.strip()}; it must be between 0 and 1"
                )
        result[kind] = probability
    return result


@dataclass(frozen=True, slots=True)
class RequestFaults:
    """What happens to one request: an exclusive outcome (or None) and whether it is slow."""

    outcome: str | None = None
    slow: bool = False


@dataclass(frozen=True, slots=True)
class BatchFaults:
    """What happens to one accepted batch."""

    # The extra unsafe entry's name; "" = none, None = duplicate a real entry's name.
    unsafe_entry: str | None = ""
    never_close: bool = False
    # Indexes (0-based, in document order) of the documents that will not be signed.
    failed_documents: frozenset[int] = field(default_factory=frozenset)


class Faults:
    """The fault decisions of one emulator run."""

    def __init__(
        self, spec: str | Mapping[str, float], seed: int | None, kinds: Sequence[str] = KINDS
    ) -> None:
        self.kinds = tuple(kinds)
        self.probabilities = dict(parse_faults(spec, kinds) if isinstance(spec, str) else spec)
        for kind in self.probabilities:
            if kind not in kinds:
                raise ValueError(f"unknown fault kind {kind!r}")
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._unsafe_turn = 0
        self.injected: Counter[str] = Counter()  # kind → faults actually injected

    def __repr__(self) -> str:
        return f"Faults({self.probabilities!r})"

    def replace(self, spec: str) -> None:
        """Use a new spec from now on (same random sequence); ValueError if it is bad."""
        probabilities = parse_faults(spec, self.kinds)
        with self._lock:
            self.probabilities = probabilities

    def counts(self) -> dict[str, int]:
        """How many faults of each kind were injected so far."""
        with self._lock:
            return dict(self.injected)

    def _hit(self, kind: str) -> bool:
        # Callers hold the lock. Unconfigured kinds draw nothing.
        p = self.probabilities.get(kind)
        if p is None:
            return False
        return self._rng.random() < p

    def for_request(self) -> RequestFaults:
        """Draw the request faults for one request."""
        with self._lock:
            hits = [kind for kind in EXCLUSIVE_REQUEST_KINDS if self._hit(kind)]
            slow = self._hit("slow")
            self.injected.update(hits[:1] + ["slow"] * slow)
        return RequestFaults(outcome=hits[0] if hits else None, slow=slow)

    def draw(self, kind: str) -> bool:
        """Draw whether a fault of ``kind`` happens now (False when it is not configured)."""
        with self._lock:
            hit = self._hit(kind)
            self.injected.update([kind] * hit)
            return hit

    def truncate(self) -> bool:
        """Draw whether this package download is cut short."""
        return self.draw("truncate")

    def for_batch(self, document_count: int) -> BatchFaults:
        """Draw the faults of a batch being accepted with ``document_count`` documents."""
        with self._lock:
            unsafe: str | None = ""
            if self._hit("unsafe-entry"):
                unsafe = UNSAFE_NAMES[self._unsafe_turn % len(UNSAFE_NAMES)]
                self._unsafe_turn += 1
            never_close = self._hit("never-close")
            failed = frozenset(i for i in range(document_count) if self._hit("fail-document"))
            self.injected.update(["unsafe-entry"] * (unsafe != "") + ["never-close"] * never_close
                                 + ["fail-document"] * len(failed))
        return BatchFaults(unsafe_entry=unsafe, never_close=never_close, failed_documents=failed)
