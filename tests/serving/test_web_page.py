"""The search page in real headless Chromium against a real server: words, photo upload, filters, paging, more like this."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import CHROMIUM, LAUNCH_ARGS, free_port, require_browser

from modalens.catalog import read_catalog
from modalens.search import SearchEngine

playwright_api = require_browser()


@pytest.fixture(scope="module")
def server(mini_catalog, tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("web") / "index"
    engine = SearchEngine(index_dir, progress=False)
    engine.build(read_catalog(mini_catalog))
    engine.close()
    port = free_port()
    cmd = [sys.executable, "-m", "modalens", "serve", "--index", str(index_dir), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stdout.read().decode())
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def page(server):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server)
        page.wait_for_function("document.querySelectorAll('#filter-gender option').length > 1")
        page.errors = errors
        yield page
        browser.close()


def result_cards(page):
    page.wait_for_selector("[data-testid=result]")
    return page.locator("[data-testid=result]")


def search_words(page, words: str) -> None:
    page.fill("[data-testid=query]", words)
    page.click("[data-testid=search-button]")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Results')")


def test_words_return_the_expected_products(page, tmp_path):
    search_words(page, "black analog wrist watch")
    cards = result_cards(page)
    assert cards.count() == 12
    assert "Watches" in cards.first.locator(".attrs").inner_text()
    path = tmp_path / "search.png"
    page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, Path(os.environ.get("MODALENS_SCREENSHOTS", tmp_path)) / "search-page.png")
    assert path.stat().st_size > 20_000  # a rendered grid of photos, not a blank page
    assert not page.errors


def test_filter_narrows_the_results(page):
    search_words(page, "shoes")
    before = page.locator("[data-testid=result] .attrs").all_inner_texts()
    assert any(not a.startswith("Women") for a in before)
    page.select_option("#filter-gender", "Women")
    page.wait_for_function("[...document.querySelectorAll('[data-testid=result] .attrs')].every(e => e.textContent.startsWith('Women'))")
    attrs = page.locator("[data-testid=result] .attrs").all_inner_texts()
    assert attrs and all(a.startswith("Women") for a in attrs)
    page.select_option("#filter-gender", "")


def test_photo_upload_finds_its_product(page, mini_catalog):
    product = read_catalog(mini_catalog).products[7]
    page.fill("[data-testid=query]", "")
    page.set_input_files("[data-testid=photo]", product.image)
    page.wait_for_function("document.querySelector('#status').textContent.includes('photo')")
    assert result_cards(page).first.get_attribute("data-id") == product.id
    page.click("[data-testid=clear-photo]")


def test_paging_and_more_like_this(page):
    search_words(page, "shirt")
    first_page = set(page.locator("[data-testid=result]").evaluate_all("els => els.map(e => e.dataset.id)"))
    page.click("[data-testid=next]")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Results 13')")
    second_page = set(page.locator("[data-testid=result]").evaluate_all("els => els.map(e => e.dataset.id)"))
    assert second_page and not first_page & second_page
    clicked = page.locator("[data-testid=result]").first.get_attribute("data-id")
    page.locator("[data-testid=more-like-this]").first.click()
    page.wait_for_function(f"document.querySelector('#status').textContent.includes('more like {clicked}')")
    shown = page.locator("[data-testid=result]").evaluate_all("els => els.map(e => e.dataset.id)")
    assert shown and clicked not in shown
    assert not page.errors


@pytest.mark.parametrize(
    "path, operation, shown",
    [("/docs", ".opblock-summary-path", ["/api/search", "/api/products/{product_id}"]), ("/redoc", "[data-section-id^='tag/search']", ["Search Text", "Get Product"])],
)
def test_api_docs_render_offline(server, path, operation, shown, tmp_path):
    """/docs and /redoc draw the operations with nothing but this server: every other address is refused."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        outside: list[str] = []

        def only_this_server(route):
            if route.request.url.startswith(server):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_this_server)
        page.goto(server + path)
        page.wait_for_selector(operation, timeout=30_000)
        text = page.inner_text("body")
        assert all(words in text for words in shown), text[:500]
        page.screenshot(path=str(tmp_path / "docs.png"))
        shutil.copy(tmp_path / "docs.png", Path(os.environ.get("MODALENS_SCREENSHOTS", tmp_path)) / f"api{path.replace('/', '-')}.png")
        browser.close()
    assert not outside, f"the docs page asked for {outside}"
