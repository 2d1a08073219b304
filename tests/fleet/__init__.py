"""The fleet tests' harness (issue 12): the parts a multi-node test is built of, each
usable on its own and by ``bench/torture.py``.

- :mod:`~tests.fleet.cluster`: a PostgreSQL cluster of one test's own (initdb, pg_ctl),
  to stop, restart or keep down longer than a lease;
- :mod:`~tests.fleet.proxy`: a TCP proxy in front of it, cut by reset or by blackhole;
- :mod:`~tests.fleet.clock`: a subprocess whose wall clock is off (libfaketime), its
  monotonic and boot clocks untouched;
- :mod:`~tests.fleet.nodes`: ``folderseal run`` processes sharing one inbox and one
  database, each with its node name, state folder, environment and log;
- :mod:`~tests.fleet.invariants`: the promises checked after a fleet run.

Pausing a node at a named point is ``FOLDERSEAL_PAUSE_AT`` (folderseal.core.crashpoints).
"""
