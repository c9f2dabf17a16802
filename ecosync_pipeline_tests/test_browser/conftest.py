"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright.

A missing browser fails the test with the command that installs it, never skips it:
a skipped browser test would let the UI path go unchecked without anyone noticing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("ECOSYNC_CHROMIUM", "/usr/bin/chromium")
# No sandbox (containers, root), no GPU, and nothing that phones home while offline.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The Chromium binary, or a failure saying how to install it."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run scripts/browser.sh (it installs "
            "Debian's chromium package), or set ECOSYNC_CHROMIUM to a Chromium binary.",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Any]:
    """A headless Chromium (Playwright Browser) for this module's tests.

    Not for the session: Playwright's sync API keeps an asyncio loop running in the main
    thread while it is open, and later tests that call asyncio.run() would fail.
    """
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        pytest.fail(
            f"Playwright for Python is missing ({exc}): install the dev extras "
            "(pip install -e '.[dev]', or scripts/setup.sh).",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=chromium_executable, args=CHROMIUM_ARGS, headless=True
            )
        except Error as exc:
            pytest.fail(
                f"Chromium at {chromium_executable} did not start under Playwright: {exc}",
                pytrace=False,
            )
        try:
            yield chromium
        finally:
            chromium.close()
