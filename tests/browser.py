"""Debian's Chromium for the browser tests, driven by Playwright.

Playwright's own browser download cannot work here (no internet), so tests launch the
system's Chromium (``make browser`` installs it) with the flags a closed network needs.
"""

from __future__ import annotations

import shutil
from typing import Any

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from ``playwright.chromium``."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is missing: run `make browser` (apt-get install chromium)"
    return playwright.chromium.launch(executable_path=path, args=ARGS)
