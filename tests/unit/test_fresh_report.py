"""Tests for folderseal.service.web.FreshReport: the report the page and /metrics show,
made on a thread of its own."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from folderseal.service import web


class Maker:
    """Makes numbered reports, slowly, counting the calls; can be made to fail."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.calls = 0
        self.failing = False

    def __call__(self) -> dict[str, Any]:
        time.sleep(self.seconds)
        self.calls += 1
        if self.failing:
            raise RuntimeError("the store went away")
        return {"n": self.calls}


def test_requests_take_the_last_report_and_the_thread_makes_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first request waits for a report; the next ones answer at once with the last
    one (never making one themselves), which the thread makes again, REFRESH_SECONDS
    after the last at the soonest, once it was asked for; not while nobody asks."""
    monkeypatch.setattr(web, "REFRESH_SECONDS", 0.2)
    maker = Maker()
    report = web.FreshReport(maker)
    report.start()
    try:
        assert report() == {"n": 1}
        started = time.monotonic()
        answers = [report()["n"] for _ in range(50)]
        assert time.monotonic() - started < 0.05, "a request made a report itself"
        assert answers == [1] * 50
        deadline = time.monotonic() + 5
        while report()["n"] < 3:
            assert time.monotonic() < deadline, "the report was not made again"
            time.sleep(0.05)
        time.sleep(0.5)  # asked by nobody since: at most the one report asked for
        calls = maker.calls
        time.sleep(0.6)
        assert maker.calls == calls, "made again while nobody asked"
    finally:
        report.stop()
        report.thread.join(5)
    assert not report.thread.is_alive()


def test_a_report_that_fails_keeps_the_last_and_a_first_that_fails_is_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A report that cannot be made leaves the last one shown; with none made yet the
    request fails (the page answers 500, the log says why)."""
    monkeypatch.setattr(web, "REFRESH_SECONDS", 0.1)
    maker = Maker(seconds=0.0)
    maker.failing = True
    report = web.FreshReport(maker)
    report.start()
    try:
        with pytest.raises(RuntimeError, match="no status report could be made yet"):
            report()
        maker.failing = False
        deadline = time.monotonic() + 5
        while True:
            try:
                first = report()
                break
            except RuntimeError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        maker.failing = True
        time.sleep(0.3)
        assert report() == first
    finally:
        report.stop()


def test_a_stale_report_makes_the_request_wait_for_a_fresh_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A request finding only a report older than STALE_SECONDS (nobody asked for a
    while) waits for one begun after it, so the page never shows old news."""
    monkeypatch.setattr(web, "STALE_SECONDS", 0.3)
    maker = Maker()
    report = web.FreshReport(maker)
    report.start()
    try:
        assert report() == {"n": 1}
        time.sleep(0.5)
        answers: list[int] = []
        threads = [threading.Thread(target=lambda: answers.append(report()["n"]))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        # Each a report begun after it asked; not one made for each request.
        assert len(answers) == 3 and set(answers) <= {2, 3}, answers
        assert maker.calls <= 3
    finally:
        report.stop()
