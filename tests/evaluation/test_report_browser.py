"""The report in a real headless Chromium: it renders, shows its tables and photos, logs no errors, and screenshots well.

Needs Debian's ``chromium`` (/usr/bin/chromium) and the PyPI package
``playwright`` (never ``playwright install``: the system browser is used);
skipped with the reason when either is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = os.environ.get("MODALENS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTH, HEIGHT = 1280, 900


try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

# Checked before any fixture runs, so a machine without a browser skips at once.
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.skipif(
        sync_playwright is None,
        reason="the playwright package is not installed (pip install playwright; the system chromium is used)",
    ),
]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_report_renders_in_chromium(browser, mini_report, tmp_path):
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"network request {r.url}") if not r.url.startswith(("file:", "data:")) else None)
    page.goto(mini_report.as_uri(), wait_until="load")

    assert "modalens-lite" in page.locator("h1").inner_text()
    headings = page.locator("h2").all_inner_texts()
    for expected in ("At a glance", "Zero-shot classification", "Text ↔ image retrieval", "Category → product retrieval",
                     "Image → image retrieval", "k-NN classification", "Linear probe", "How these numbers were made"):  # fmt: skip
        assert any(h.startswith(expected) for h in headings), (expected, headings)
    assert page.locator("table").count() >= 7
    assert page.locator("#summary table tbody tr").count() >= 15
    images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(images) >= 25 and all(done and width > 0 for done, width in images), "an inline image did not decode"
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH, "the page scrolls sideways"

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    page.close()
    assert errors == []
    with Image.open(shot) as image:
        assert image.size == (WIDTH, HEIGHT)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 20  # not blank
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # text, header gradient, interval bars
    header = pixels[:60].reshape(-1, 3).mean(axis=0)
    assert header[2] > header[0] + 40  # the blue title band is there
    keep = os.environ.get("MODALENS_REPORT_SCREENSHOT")  # to look at it: MODALENS_REPORT_SCREENSHOT=/tmp/report.png
    if keep:
        shutil.copy(shot, keep)


def test_report_fits_a_phone(browser, mini_report, tmp_path):
    """At 390 px nothing spills sideways: wide tables scroll inside themselves, sections stack."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(mini_report.as_uri(), wait_until="load")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways on a phone"
    shot = tmp_path / "report-phone.png"
    page.screenshot(path=str(shot))
    if os.environ.get("MODALENS_SCREENSHOTS"):
        shutil.copy(shot, Path(os.environ["MODALENS_SCREENSHOTS"]) / "report-phone.png")
    page.close()
