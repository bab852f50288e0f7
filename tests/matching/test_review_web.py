"""The review page in real headless Chromium: a reviewer signs in with her key, decides with the keyboard; a restart loses nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from scipy.stats import beta
from browser import CHROMIUM, LAUNCH_ARGS, free_port, require_browser

from modalens.matching.offers import Offer
from modalens.matching.pairs import seller_offer
from modalens.matching.review import ReviewQueue

playwright_api = require_browser()


class Server:
    """`python -m modalens.cli.match_cmd review DB` as a real process that can be stopped and started again."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "modalens.cli.match_cmd", "review", str(self.db), "--port", str(self.port)]
        env = {**os.environ, "MODALENS_READ_REQUIRES_KEY": "1"}  # photos and stats need the key too: the page sends it
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.proc.stdout.read().decode())
                time.sleep(0.1)
        raise RuntimeError("review server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # no clean shutdown: as if the machine stopped mid-review
            self.proc.wait(10)
            self.proc = None


@pytest.fixture()
def queue_db(tmp_path, mini_products):
    db = tmp_path / "reviews.sqlite"
    items = []
    for p in mini_products[:4]:
        new, _ = seller_offer(p, "web", 0, views=("seller-1",))
        listed = Offer.from_product(p)
        listed.price = 1999.0
        items.append((new, listed, 0.83, 0.6, "doubtful: score between thresholds"))
    with ReviewQueue(db) as q:
        q.add_pairs(items)
    return db


@pytest.fixture()
def ann_key(queue_db) -> str:
    with ReviewQueue(queue_db) as q:
        return q.add_reviewer("ann")


def test_reviewer_decides_with_the_keyboard_and_a_restart_loses_nothing(queue_db, ann_key, tmp_path):
    server = Server(queue_db)
    server.start()
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/review/")
            page.fill("[data-testid=key]", ann_key)
            page.press("[data-testid=key]", "Enter")
            page.wait_for_selector("[data-testid=pair]:not([hidden])")
            assert page.inner_text("[data-testid=reviewer]") == "signed in as ann"
            page.wait_for_function("[...document.querySelectorAll('#left img, #right img')].every(i => i.complete && i.naturalWidth > 0)")
            first = page.get_attribute("[data-testid=pair]", "data-pair-id")
            assert "1,999" in page.inner_text("[data-testid=right]") and page.inner_text("[data-testid=score]") == "0.830"
            shot = tmp_path / "review.png"
            page.screenshot(path=str(shot))
            shutil.copy(shot, Path(os.environ.get("MODALENS_SCREENSHOTS", tmp_path)) / "review-page.png")

            def press(key: str, before: str) -> str:
                page.keyboard.press(key)
                page.wait_for_function(f"document.querySelector('[data-testid=pair]').dataset.pairId !== {before!r}")
                return page.get_attribute("[data-testid=pair]", "data-pair-id")

            second = press("a", first)
            assert "Saved: same product" in page.inner_text("[data-testid=status]")
            third = press("r", second)
            fourth = press("r", third)
            assert press("u", fourth) == third  # undo brings the last one back...
            press("a", third)  # ...and she corrects it
            assert "decided 3" in page.inner_text("[data-testid=stats]")
            assert not errors
            browser.close()
    finally:
        server.kill()

    with ReviewQueue(queue_db) as q:  # the server is gone: everything answered is in the database
        decisions = [(r["pair_id"], r["decision"], r["undone"]) for r in q.decisions()]
        assert decisions == [(first, "match", 0), (second, "no-match", 0), (third, "no-match", 1), (third, "match", 0)]
        assert {r["reviewer"] for r in q.decisions()} == {"ann"}
        assert q.stats()["decided"] == 3 and q.get(fourth).leased_by == "ann"

    server.start()  # and a restarted server carries on from there
    try:
        request = urllib.request.Request(server.url + "/review/api/next", headers={"X-API-Key": ann_key})
        with urllib.request.urlopen(request) as r:
            import json

            data = json.loads(r.read())
        assert data["pair"]["id"] == fourth and data["stats"]["decided"] == 3
    finally:
        server.kill()


def test_review_page_stacks_on_a_phone_and_names_each_side(queue_db, ann_key, tmp_path):
    server = Server(queue_db)
    server.start()
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(server.url + "/review/")
            page.fill("[data-testid=key]", ann_key)
            page.press("[data-testid=key]", "Enter")
            page.wait_for_selector("[data-testid=pair]:not([hidden])")
            page.wait_for_function("[...document.querySelectorAll('#left img, #right img')].every(i => i.complete && i.naturalWidth > 0)")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing spills sideways
            left, right = page.locator("[data-testid=left]").bounding_box(), page.locator("[data-testid=right]").bounding_box()
            assert right["y"] >= left["y"] + left["height"] and right["x"] + right["width"] <= 390  # stacked, inside the screen
            for button in ("accept", "reject", "skip", "undo"):
                box = page.locator(f"[data-testid={button}]").bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= 390, button
            sources = [page.text_content(f"[data-testid={side}] [data-testid=source]") for side in ("left", "right")]
            assert sources[1] == "from catalogue" and sources[0].startswith("from seller-")  # not "catalogue" twice
            shot = tmp_path / "review-phone.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("MODALENS_SCREENSHOTS"):
                shutil.copy(shot, Path(os.environ["MODALENS_SCREENSHOTS"]) / "review-phone.png")
            browser.close()
    finally:
        server.kill()


def test_review_page_shows_the_audited_precision_and_npv_and_alarms(tmp_path, mini_products):
    """Answered audit items give the page a running precision / NPV with intervals; a precision below target alarms."""
    db = tmp_path / "audited.sqlite"
    p = mini_products[0]
    with ReviewQueue(db) as q:
        key = q.add_reviewer("ann")
        for kind, n, wrong in (("accept", 100, 5), ("reject", 40, 0)):
            for i in range(n):
                q.add_pairs([(Offer(f"{kind}{i}a", title="x"), Offer(f"{kind}{i}b", title="x"), 0.9, 0.99, "score 0.900 (p=0.99)")],
                            source=f"audit:{kind}|test", priority=0.1)
        truth = {f"accept{i}a": i >= 5 for i in range(100)} | {f"reject{i}a": False for i in range(40)}
        while (pair := q.lease("bob")) is not None:  # bob answered every audit item: 95 of 100 accepts were right
            q.decide(pair.id, "bob", "match" if truth[pair.left.id] else "no-match")
        q.add_pairs([(seller_offer(p, "web", 0, views=("seller-1",))[0], Offer.from_product(p), 0.8, 0.6, "score 0.800 (p=0.60)")])
    server = Server(db)
    server.start()
    try:
        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(server.url + "/review/")
            assert page.is_hidden("[data-testid=audit]")  # nothing shown before the key
            page.fill("[data-testid=key]", key)
            page.press("[data-testid=key]", "Enter")
            page.wait_for_selector("[data-testid=audit]:not([hidden])")
            precision = page.inner_text("[data-testid=audit-precision]")
            # 95 of 100: the exact interval (scipy's beta quantiles: 89.77% – 98.01%) lies below 99%: an alarm
            low, high = (f"{100 * beta.ppf(q, a, b):.2f}%" for q, a, b in ((0.05, 95, 6), (0.95, 96, 5)))
            assert "95.00% of 100 audited" in precision and f"{low} – {high}" in precision and "alarm" in precision
            npv = page.inner_text("[data-testid=audit-npv]")
            assert "100.00% of 40 audited" in npv and "unproven" in npv  # 40 right cannot show 99% yet
            alarm = page.inner_text("[data-testid=audit-alarm]")
            assert "auto-accept precision below target" in alarm and "NPV" not in alarm
            page.wait_for_selector("[data-testid=pair]:not([hidden])")  # the review itself goes on
            browser.close()
    finally:
        server.kill()
