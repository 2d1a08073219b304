"""The README's service-install block: the exact commands an operator runs.

The block is the one ``sh`` fence between ``<!-- service-install:begin -->`` and
``<!-- service-install:end -->`` (tests/acceptance/test_service.py checks that
systemd/README.md carries the same). Each command line (a trailing backslash continues
it) is run as written.
"""

from __future__ import annotations

import re
from pathlib import Path

BEGIN = "<!-- service-install:begin -->"
END = "<!-- service-install:end -->"


def install_block(markdown: Path) -> list[str]:
    """The block's commands, in order; ValueError naming what is missing."""
    text = markdown.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"{markdown.name} needs exactly one {BEGIN} … {END} pair "
                         f"(has {text.count(BEGIN)} and {text.count(END)})")
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    fence = re.search(r"^```sh\n(.*?)^```", block, re.MULTILINE | re.DOTALL)
    if fence is None:
        raise ValueError(f"{markdown.name}: no ```sh fence between the service-install markers")
    commands: list[str] = []
    pending = ""
    for line in fence.group(1).splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command and not command.startswith("#"):
            commands.append(command)
    if not commands:
        raise ValueError(f"{markdown.name}: the service-install block has no commands")
    return commands
