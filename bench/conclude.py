"""How every benchmark script ends: its figures printed, and exit 1 on a missed target."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def conclude(results: dict[str, Any], missed: list[str], *, as_json: bool, quick: bool,
             show: Callable[[dict[str, Any]], None]) -> None:
    """Print ``results`` (as JSON, or through ``show``) with the ``missed`` targets, and
    exit 1 if a full run missed one (``--quick`` only checks that the script works)."""
    results["missed"] = missed
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        show(results)
    if missed and not quick:
        sys.exit(1)
