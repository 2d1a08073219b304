"""The status page in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) loads it while the daemon works against the SEAL
emulator, and the test reads what a person would see. The screenshot is kept in
``test-artifacts/status-page.png`` (or ``$FOLDERSEAL_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from folderseal.providers.seal.emulator import EmulatorHandle, start_seal
from tests.helpers import Daemon, Layout, error_records, sidecars, wait_until

KEY = "page-key-0c41e2"
ARTIFACTS = Path(os.environ.get("FOLDERSEAL_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "test-artifacts"))


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromedriver are missing: 'make test' installs them "
                    "(Debian packages chromium, chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1800"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with start_seal(api_key=KEY, data_dir=tmp_path / "emulator", seed=7,
                    step_delay=0.02) as handle:
        yield handle


def test_the_status_page_shows_a_person_what_waits_runs_and_failed(
        tmp_path: Path, emulator: EmulatorHandle, browser: webdriver.Chrome) -> None:
    """Signed files in the chart, a file waiting with its reason, a batch in flight with
    its state and age, a failure with its reason; healthy, so no alarm."""
    (tmp_path / "signius.key").write_text(KEY + "\n")
    layout = Layout(tmp_path, provider={
        "kind": "seal", "base_url": emulator.url, "api_key_file": "signius.key",
        "poll_interval_seconds": 0.1, "timeout_seconds": 5.0, "status_grace_seconds": 1.0},
        extra='\n[metrics]\nlisten = "127.0.0.1:0"\n')
    layout.write()
    daemon = Daemon(layout).started()
    url = daemon.wait_for_event("web.listening", timeout=60)["url"]
    for i in range(5):
        (layout.inbox / f"letter-{i}.txt").write_text(f"letter {i}")
    (layout.inbox / "empty.txt").write_bytes(b"")
    wait_until(lambda: len(sidecars(layout.outbox)) == 5 and error_records(layout.errors),
               timeout=60, what="five sealed, one failed")
    emulator.set_faults("never-close=1")              # the next batch stays in flight
    (layout.inbox / "slow.txt").write_text("signed some time")
    daemon.wait_for_event("batch.accepted", timeout=30)
    (layout.inbox / "scan.pdf").write_bytes(b"%PDF-1.7\n" + b"0" * 4000)  # no %%EOF yet

    def page_shows_everything() -> bool:
        browser.get(url)
        text = browser.find_element(By.TAG_NAME, "body").text
        return "not complete yet" in text and "ACCEPTED" in text

    wait_until(page_shows_everything, timeout=30, what="the page to show the waiting file")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert browser.title == "folderseal on test-node"
    assert "Healthy: nothing needs a person now." in body
    assert "Daemon running" in body
    folder = browser.find_element(By.ID, "folder-scans")
    assert "Folder scans" in folder.text
    waiting = folder.find_element(By.CSS_SELECTOR, "table.waiting").text
    assert "scan.pdf" in waiting and "the PDF is not complete yet" in waiting
    batches = folder.find_element(By.CSS_SELECTOR, "table.batches").text
    assert "ACCEPTED" in batches and " s" in batches
    failures = folder.find_element(By.CSS_SELECTOR, "table.failures").text
    assert "empty.txt" in failures and "empty" in failures
    chart = folder.find_element(By.CSS_SELECTOR, "svg.chart")
    bars = chart.find_elements(By.TAG_NAME, "rect")
    assert len(bars) == 60 and chart.get_attribute("aria-label") == \
        "5 files signed in the last hour"
    assert max(float(bar.get_attribute("height") or 0) for bar in bars) > 0
    assert "5 files signed in the last hour." in folder.text

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert daemon.stop() == 0
