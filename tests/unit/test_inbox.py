"""Tests for folderseal.intake.inbox: looking at a file on a network share."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from folderseal.intake import inbox


def test_a_file_a_windows_program_holds_open_is_looked_at_not_an_outage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a share, a file whose open() CIFS refuses with EBUSY (a Windows program holds it:
    a sharing violation) is looked at by its stat, as a file still in use, instead of
    raising, which detached the whole folder as an outage."""
    path = tmp_path / "scan.pdf"
    path.write_bytes(b"%PDF-1.7 being written")
    real_open = os.open

    def sharing_violation(target: Any, *args: Any, **kwargs: Any) -> int:
        if Path(target) == path:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(target))
        return real_open(target, *args, **kwargs)

    monkeypatch.setattr(inbox.os, "open", sharing_violation)
    look = inbox.look_at(path, network=True)
    assert look is not None and look.regular and look.size == path.stat().st_size
