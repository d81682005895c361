"""A real browser for the tests: Debian's headless Chromium driven by Selenium through Debian's
chromedriver. No browser or driver is downloaded (Selenium Manager is bypassed by naming both
binaries), and the flags keep Chromium off the network: only the loopback pages a test opens.

    from browser import chromium, screenshot
    with chromium() as driver:
        driver.get(url)
        screenshot(driver, "oauth-consent")    # → $ANALYTICS_MCP_ARTIFACTS/screenshots/oauth-consent.png

Screenshots are test artefacts: they go to ``$ANALYTICS_MCP_ARTIFACTS/screenshots`` (default
``target/test-artifacts/screenshots`` in the repository), and tests/run prints where.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")

# Without the background-networking flags Chromium keeps trying to reach Google's services.
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints", "--metrics-recording-only",
    "--password-store=basic", "--window-size=1280,900",
]


def artifacts_dir() -> Path:
    root = Path(os.environ.get("ANALYTICS_MCP_ARTIFACTS", REPO / "target" / "test-artifacts"))
    path = root / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def chromium(window: tuple[int, int] = (1280, 900), extra_flags: list[str] | None = None) -> Iterator:
    """A fresh headless Chromium (own empty profile) for one test; quit and cleaned up afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"{binary} is missing: run tests/system-deps.sh (Debian chromium, chromium-driver)")
    profile = tempfile.mkdtemp(prefix="amcp-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (extra_flags or []):
        options.add_argument(flag)
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        with contextlib.suppress(Exception):
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver, name: str) -> Path:
    """Saves a PNG of the current page as a test artefact and returns its path."""
    path = artifacts_dir() / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def console_errors(driver) -> list[str]:
    """The page's console messages of level SEVERE (uncaught errors, CSP violations)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
