"""folderseal's memory benchmark: peak RSS on big files, for each way a file is sealed.

    .venv/bin/python bench/memory.py            # 2 GiB and 1 GiB files (a minute or two)
    .venv/bin/python bench/memory.py --quick    # small sizes, to check the script

Measures the peak resident set (VmHWM) of the daemon, run in a subprocess, in one run:
  (a) the local signer sealing one 2 GiB non-PDF file: the main process and each
      signing worker (bench/throughput.py's (d));
  (b) one 1 GiB file through SEAL, zipped into the batch package, uploaded, signed,
      downloaded, extracted and published, against the SEAL emulator run in this
      process (bench/seal_stream.py; the emulator's memory is not measured);
  (c) one 1 GiB file attached through Clevver and stored, against the Clevver emulator
      run in this process (bench/clevver.py's (c)).
Each is measured again with a file a tenth of the size, to show RSS does not grow with
the file. The target from the issue: every peak <= 150 MB with the big files. Prints
the figures beside the target; a full run exits 1 when a target is missed (``--quick``
only checks that the script works).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.clevver import big_file as clevver_big_file  # noqa: E402
from bench.conclude import conclude  # noqa: E402
from bench.seal_stream import measure as seal_measure  # noqa: E402
from bench.throughput import peak_rss  # noqa: E402
from folderseal.providers.emulation.journal import log_to  # noqa: E402

TARGET_MB = 150
# The target names a run can miss: the figure and its bound.
TARGETS = {"local_main_mb <= 150": ("local_big", "main_mb"),
           "local_worker_mb <= 150": ("local_big", "worker_mb_max"),
           "seal_daemon_mb <= 150": ("seal_big", "daemon_peak_mb"),
           "clevver_daemon_mb <= 150": ("clevver_big", "daemon_peak_mb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (checks the script)")
    parser.add_argument("--local-mib", type=int, default=2048,
                        help="the file the local signer seals")
    parser.add_argument("--provider-mib", type=int, default=1024,
                        help="the file sent through SEAL and through Clevver")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.quick:
        args.local_mib, args.provider_mib = 64, 32
    log_to(io.StringIO())  # the emulators' request lines would drown the figures
    root = Path(tempfile.mkdtemp(prefix="folderseal-memory-bench-"))
    results: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        for label, mib in (("big", args.local_mib), ("tenth", _tenth(args.local_mib))):
            results[f"local_{label}"] = {"mib": mib, **peak_rss(root, mib << 20, f"local-{label}")}
        for label, mib in (("big", args.provider_mib), ("tenth", _tenth(args.provider_mib))):
            where = root / f"seal-{label}"
            where.mkdir()
            results[f"seal_{label}"] = seal_measure(where, mib)
        for label, mib in (("big", args.provider_mib), ("tenth", _tenth(args.provider_mib))):
            results[f"clevver_{label}"] = clevver_big_file(root, mib, f"clevver-{label}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    conclude(results, [name for name, (run, figure) in TARGETS.items()
                       if results[run][figure] > TARGET_MB],
             as_json=args.json, quick=args.quick, show=_print)


def _tenth(mib: int) -> int:
    return max(1, mib // 10)


def _print(results: dict[str, Any]) -> None:
    big, tenth = results["local_big"], results["local_tenth"]
    print(f"machine: {results['cpus']} CPUs; peak RSS (VmHWM), target <= {TARGET_MB} MB each")
    print(f"(a) local signer, {big['mib']} MiB file: main {big['main_mb']:.0f} MB, worker "
          f"{big['worker_mb_max']:.0f} MB ({big['workers_seen']} child processes, "
          f"{big['seconds']:.1f} s); {tenth['mib']} MiB file: main {tenth['main_mb']:.0f} MB, "
          f"worker {tenth['worker_mb_max']:.0f} MB")
    for key, name in (("seal", "(b) SEAL batch"), ("clevver", "(c) Clevver attach")):
        big, tenth = results[f"{key}_big"], results[f"{key}_tenth"]
        print(f"{name}, {big['mib']} MiB file: daemon {big['daemon_peak_mb']:.0f} MB "
              f"({big['seconds']:.1f} s); {tenth['mib']} MiB file: daemon "
              f"{tenth['daemon_peak_mb']:.0f} MB")
    print("targets missed: " + (", ".join(results["missed"]) or "none"))


if __name__ == "__main__":
    main()
