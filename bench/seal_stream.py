"""Memory while a big batch goes through SEAL: the daemon must stream, not buffer.

    .venv/bin/python bench/seal_stream.py              # one 1 GiB file (a few minutes)
    .venv/bin/python bench/seal_stream.py --mib 64     # quicker

The SEAL emulator runs in this process (its memory is not measured); the daemon runs
in a subprocess against it over loopback. One non-PDF file of the given size is
dropped: it is zipped into the batch package, uploaded, signed, downloaded in the
returned package, extracted and checked, then published. The daemon's peak RSS
(VmHWM) is printed; the target is under 150 MB whatever the size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from folderseal.providers.seal.emulator import start_seal  # noqa: E402
from tests.helpers import Daemon, Layout, wait_until  # noqa: E402

KEY = "bench-key-0123456789"


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(root: Path, mib: int) -> dict[str, float]:
    """Seal one ``mib`` MiB file through SEAL; the daemon's peak RSS and the time it took."""
    with start_seal(api_key=KEY, data_dir=root / "emulator", step_delay=0.05) as emulator:
        (root / "signius.key").write_text(KEY)
        layout = Layout(root, folder={"settle_seconds": 0.5, "batch_max_bytes": "100GB",
                                      "min_free_bytes": "10MB"},
                        provider={"kind": "seal", "base_url": emulator.url,
                                  "api_key_file": "signius.key", "poll_interval_seconds": 0.2,
                                  "timeout_seconds": 300.0})
        layout.write()
        staging = root / "big.bin"
        block = os.urandom(1 << 20)
        with staging.open("wb") as handle:
            for _ in range(mib):
                handle.write(block)
        daemon = Daemon(layout).started()
        try:
            started = time.monotonic()
            os.rename(staging, layout.inbox / "big.bin")
            wait_until(lambda: (layout.outbox / "big.bin.json").exists(), timeout=3600,
                       what="the big file sealed")
            seconds = time.monotonic() - started
            peak = _hwm(daemon.process.pid)
        finally:
            daemon.stop(timeout=120)
        sidecar = json.loads((layout.outbox / "big.bin.json").read_text())
        assert sidecar["input"]["bytes"] == mib << 20
        return {"mib": mib, "daemon_peak_mb": peak / 1e6, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="folderseal-seal-bench-") as root:
        figures = measure(Path(root), args.mib)
    print(f"one {figures['mib']} MiB file through SEAL (emulator): daemon peak RSS "
          f"{figures['daemon_peak_mb']:.0f} MB (target < 150 MB), {figures['seconds']:.1f} s")


if __name__ == "__main__":
    main()
