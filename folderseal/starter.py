"""``folderseal init DIR``: a starter configuration and a trial seal, ready to run.

The seal is self-signed and clearly labelled as not qualified: it proves the
pipeline works, not who sealed. Paths in the written configuration are relative to
it, so the folder can be moved. Nothing existing is overwritten.
"""

from __future__ import annotations

import sys
from pathlib import Path

from folderseal.engine import make_trial_seal
from folderseal.errors import ExitCode

CONFIG = """\
# folderseal starter configuration, written by `folderseal init`.
# Every key is documented in config.example.toml; paths are relative to this file.
state_dir = "state"

[log]
format = "auto"        # console on a terminal, JSON under systemd
level = "info"

[providers.local]
kind = "local"
# A self-signed TRIAL seal, NOT QUALIFIED: replace it with your organisation's
# seal certificate (PKCS#12, or key = "...pem" plus certificate = "...pem").
certificate = "seal.p12"
password_file = "seal.pass"

[folders.demo]
inbox = "inbox"
outbox = "outbox"
errors = "errors"
provider = "local"
# Quick for a demonstration; scanners writing page by page want 5 s or more.
settle_seconds = 1.0
batch_max_wait_seconds = 1.0
min_free_bytes = "100MB"
"""


def init(directory: Path) -> int:
    config = directory / "config.toml"
    taken = [p for p in (config, directory / "seal.p12", directory / "seal.pass") if p.exists()]
    if taken:
        print(f"folderseal init: already exists: {', '.join(map(str, taken))}; nothing was "
              "changed (choose an empty folder)", file=sys.stderr)
        return ExitCode.FAILURE
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("inbox", "outbox", "errors", "state"):
        (directory / sub).mkdir(exist_ok=True)
    seal = make_trial_seal(directory)
    config.write_text(CONFIG, encoding="utf-8")
    print(f"wrote {config} and a trial seal ({seal.pkcs12_path}, NOT QUALIFIED).\n"
          f"Start:  folderseal run -c {config}\n"
          f"Then drop files into {directory / 'inbox'}; signed results appear in "
          f"{directory / 'outbox'}.")
    return ExitCode.OK
