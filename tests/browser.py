"""Real headless Chromium for the page tests: Debian's browser driven by playwright (never `playwright install`)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MODALENS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
#: Without the background-networking flags Chromium keeps dialling out, which this offline machine refuses.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def require_browser():
    """playwright's sync API, or skip the calling test module with the reason."""
    api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
    return api


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
