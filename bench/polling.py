"""Polling a share that other programs use (issue 13, target 4): the daemon's CPU beside
watchdog's ``PollingObserver``, on the same folder at the same interval.

    .venv/bin/python bench/polling.py            # a minute, side by side
    .venv/bin/python bench/polling.py --quick    # a few seconds, to check the script

The inbox holds 10,000 files that the folder's ``exclude`` patterns leave alone (a
share where other programs keep their files) and nothing new arrives. The daemon runs
with ``watch = "polling"`` and ``poll_interval_seconds = 1``; a process of its own runs
watchdog's PollingObserver on the same folder with ``timeout = 1``. Both start, settle
for a few seconds, then the CPU each used (user + system, from /proc) is read over the
same window. Target: the daemon at most a fifth of the observer. Exits 1 when missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import Daemon, Layout  # noqa: E402

TARGET_SHARE = 0.2  # the daemon's CPU over the observer's
OBSERVER = """
import sys, time
from watchdog.events import FileSystemEventHandler
from watchdog.observers.polling import PollingObserver
observer = PollingObserver(timeout=1.0)
observer.schedule(FileSystemEventHandler(), sys.argv[1], recursive=True)
observer.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process used so far, its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(files: int, seconds: float, settle: float) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="folderseal-polling-"))
    layout = Layout(root / "share", folder={"watch": "polling", "poll_interval_seconds": 1.0,
                                             "exclude": ["*.dat"]})
    layout.write()
    for i in range(files):  # other programs' files, left alone by the folder's exclude
        (layout.inbox / f"other-{i:05d}.dat").write_bytes(b"x")
    daemon = Daemon(layout).started()
    observer = subprocess.Popen([sys.executable, "-c", OBSERVER, str(layout.inbox)],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert observer.stdout is not None and observer.stdout.readline().strip() == "ready"
        time.sleep(settle)  # start-up and the first scans are not the steady state
        ours, theirs = cpu_seconds(daemon.process.pid), cpu_seconds(observer.pid)
        time.sleep(seconds)
        ours = cpu_seconds(daemon.process.pid) - ours
        theirs = cpu_seconds(observer.pid) - theirs
    finally:
        observer.kill()
        observer.wait()
        daemon.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)
    return {"files": files, "seconds": seconds, "daemon_cpu_s": ours, "observer_cpu_s": theirs,
            "share": ours / theirs if theirs else float("inf")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds (checks the script)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure(2000, 3.0, 2.0) if args.quick else measure(10_000, 60.0, 5.0)
    figures["met"] = figures["share"] <= TARGET_SHARE
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"polling {figures['files']} excluded files every 1 s for "
              f"{figures['seconds']:.0f} s: daemon {figures['daemon_cpu_s']:.2f} s CPU, "
              f"watchdog PollingObserver {figures['observer_cpu_s']:.2f} s CPU: "
              f"{figures['share']:.2f} of it (target <= {TARGET_SHARE})")
    if not figures["met"] and not args.quick:
        sys.exit(1)


if __name__ == "__main__":
    main()
